//! Samples a SQLite query's key: one scan counts rows and NULL keys, a
//! second draws a random sample of keys in key order.

use ferry_common::errors::DbFailure;
use ferry_common::proto::{KeyColumn, KeyTuple, KeyValue};
use sqlx::sqlite::SqliteConnection;
use sqlx::{AssertSqlSafe, Row, TypeInfo, ValueRef};

use super::errors::classify;
use super::sql::quote_ident;
use crate::sample::{sample_fraction, KeySample};

/// Counts the query's rows.
pub async fn count_rows(conn: &mut SqliteConnection, query: &str) -> Result<u64, DbFailure> {
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM ({query}) AS src"
    )))
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| classify(&e).context("cannot count the source rows"))?;
    Ok(n.max(0) as u64)
}

/// Samples the key of `query` for chunks of about `chunk_size` rows.
pub async fn sample_keys(
    conn: &mut SqliteConnection,
    query: &str,
    key: &KeyColumn,
    chunk_size: u64,
) -> Result<KeySample, DbFailure> {
    let k = format!("src.{}", quote_ident(&key.name));
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT count(*), count(*) - count({k}) FROM ({query}) AS src"
    )))
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| classify(&e).context("cannot count the source rows"))?;
    let rows = row.get::<i64, _>(0).max(0) as u64;
    let null_rows = row.get::<i64, _>(1).max(0) as u64;
    // random() is uniform over 64-bit integers: keep a share of them
    let threshold = (sample_fraction(rows, chunk_size) * 2f64.powi(63)) as i64;
    let sample = sqlx::query(AssertSqlSafe(format!(
        "SELECT {k} FROM ({query}) AS src WHERE {k} IS NOT NULL AND abs(random()) <= ? ORDER BY {k}"
    )))
    .bind(threshold)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| classify(&e).context("cannot sample the key column"))?;
    let mut keys = Vec::with_capacity(sample.len());
    for r in sample {
        let raw = r.try_get_raw(0).map_err(|e| classify(&e))?;
        let integer = raw.type_info().name().eq_ignore_ascii_case("INTEGER");
        let value = if integer {
            KeyValue::from_int(r.try_get::<i64, _>(0).map_err(|e| classify(&e))?)
        } else {
            KeyValue::from_text(
                r.try_get_unchecked::<String, _>(0)
                    .map_err(|e| classify(&e))?,
            )
        };
        keys.push(KeyTuple::of(vec![value]));
    }
    Ok(KeySample {
        rows,
        non_null_rows: rows - null_rows,
        null_rows,
        keys,
        widths: Vec::new(),
        how: "every row read, rows counted".into(),
    })
}

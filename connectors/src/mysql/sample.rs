//! Samples a MySQL query's key so the planner can cut equal-row chunks:
//! one scan counts the rows and NULL keys, a second draws a random sample of
//! keys in key order (integers as integers, anything else as MySQL's text
//! form of the value).

use ferry_common::errors::DbFailure;
use ferry_common::proto::{KeyColumn, KeyTuple, KeyValue};
use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Row};

use super::errors::classify;
use super::sql::quote_ident;
use super::types::ferry_type;
use crate::sample::{sample_fraction, KeySample};
use crate::types::FerryType;

/// Counts the query's rows.
pub async fn count_rows(conn: &mut MySqlConnection, query: &str) -> Result<u64, DbFailure> {
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM ({query}) AS src"
    )))
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| classify(&e).context("cannot count the source rows"))?;
    Ok(n.max(0) as u64)
}

/// Samples the key of `query` for chunks of about `chunk_size` rows.
pub async fn sample_keys(
    conn: &mut MySqlConnection,
    query: &str,
    key: &KeyColumn,
    chunk_size: u64,
) -> Result<KeySample, DbFailure> {
    let k = format!("src.{}", quote_ident(&key.name));
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT COUNT(*), COUNT(*) - COUNT({k}) FROM ({query}) AS src"
    )))
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| classify(&e).context("cannot count the source rows"))?;
    let rows = row.get::<i64, _>(0).max(0) as u64;
    let null_rows = row.get::<i64, _>(1).max(0) as u64;
    let fraction = sample_fraction(rows, chunk_size);
    let integer = matches!(
        ferry_type(&key.r#type),
        FerryType::Int {
            unsigned: false,
            ..
        }
    );
    let select = if integer {
        k.clone()
    } else {
        format!("CAST({k} AS CHAR)")
    };
    let sample = sqlx::query(AssertSqlSafe(format!(
        "SELECT {select} FROM ({query}) AS src WHERE {k} IS NOT NULL AND RAND() < ? ORDER BY {k}"
    )))
    .bind(fraction)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| classify(&e).context("cannot sample the key column"))?;
    let mut keys = Vec::with_capacity(sample.len());
    for r in sample {
        let value = if integer {
            KeyValue::from_int(r.try_get::<i64, _>(0).map_err(|e| classify(&e))?)
        } else {
            KeyValue::from_text(r.try_get::<String, _>(0).map_err(|e| classify(&e))?)
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

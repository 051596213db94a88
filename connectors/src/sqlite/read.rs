//! Reads a chunk from SQLite as values, by each value's storage class
//! (SQLite types values, not columns): integers, reals, text and blobs come
//! as they are stored and are converted to the target's types afterwards.

use ferry_common::errors::{DbFailure, ErrorClass};
use futures::TryStreamExt;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{AssertSqlSafe, Row, TypeInfo, ValueRef};

use super::errors::classify;
use super::session::exec;
use crate::bounds::Bind;
use crate::rows::{BatchSender, Batcher};
use crate::value::Value;

/// Decodes column `i` of `row` by its storage class.
pub fn decode(row: &SqliteRow, i: usize) -> Result<Value, DbFailure> {
    let raw = row.try_get_raw(i).map_err(|e| classify(&e))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let info = raw.type_info();
    let class = info.name();
    let fail = |e: sqlx::Error| DbFailure {
        class: ErrorClass::Data,
        sqlstate: Some("22000".into()),
        message: format!("cannot read column {} of a source row: {e}", i + 1),
    };
    let is = |name: &str| class.eq_ignore_ascii_case(name);
    Ok(if is("INTEGER") || is("BOOLEAN") || is("INT4") {
        Value::Int(row.try_get_unchecked::<i64, _>(i).map_err(fail)?)
    } else if is("REAL") {
        Value::Float(row.try_get_unchecked::<f64, _>(i).map_err(fail)?)
    } else if is("BLOB") {
        Value::Bytes(row.try_get_unchecked::<Vec<u8>, _>(i).map_err(fail)?)
    } else {
        Value::Text(row.try_get_unchecked::<String, _>(i).map_err(fail)?)
    })
}

/// Binds the chunk's bounds.
pub fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    binds: &[Bind],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    for b in binds {
        q = match b {
            Bind::Int(i) => q.bind(*i),
            Bind::Text(t) => q.bind(t.clone()),
        };
    }
    q
}

/// Streams the rows of `select` (with `binds`) as batches of values, in a
/// read transaction (one snapshot of the file); returns the rows read.
pub async fn read_chunk(
    conn: &mut SqliteConnection,
    select: &str,
    binds: &[Bind],
    columns: usize,
    tx: BatchSender,
) -> Result<u64, DbFailure> {
    let mut batcher = Batcher::new(tx);
    exec(conn, "BEGIN").await?;
    let read = async {
        let q = bind_all(sqlx::query(AssertSqlSafe(select.to_string())), binds);
        let mut rows = q.fetch(&mut *conn);
        while let Some(row) = rows.try_next().await.map_err(|e| classify(&e))? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(decode(&row, i)?);
            }
            if !batcher.push(values).await {
                return Ok(());
            }
        }
        Ok::<_, DbFailure>(())
    }
    .await;
    let end = exec(conn, "COMMIT").await;
    match read {
        Ok(()) => {
            end?;
            Ok(batcher.finish().await)
        }
        Err(f) => {
            batcher.fail(f.clone()).await;
            Err(f)
        }
    }
}

//! Reads a chunk from MySQL as typed values: the chunk's SELECT runs in a
//! read-only transaction with a consistent snapshot, rows stream from the
//! server and are decoded by each column's Ferry type.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use ferry_common::errors::{DbFailure, ErrorClass};
use futures::TryStreamExt;
use sqlx::mysql::{MySqlConnection, MySqlRow};
use sqlx::{AssertSqlSafe, Row, ValueRef};
use tracing::instrument::WithSubscriber;
use tracing::subscriber::NoSubscriber;

use super::errors::classify;
use super::select::Bind;
use super::session::exec;
use crate::rows::{BatchSender, Batcher};
use crate::types::FerryType;
use crate::value::{into_canonical_decimal, parse_uuid, Value};

fn decode_failure(i: usize, e: impl std::fmt::Display) -> DbFailure {
    DbFailure {
        class: ErrorClass::Data,
        sqlstate: Some("22000".into()),
        message: format!("cannot read column {} of a source row: {e}", i + 1),
    }
}

/// Decodes column `i` of `row` as a value of type `ty`.
pub fn decode(row: &MySqlRow, i: usize, ty: &FerryType) -> Result<Value, DbFailure> {
    let raw = row.try_get_raw(i).map_err(|e| decode_failure(i, e))?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let fail = |e: sqlx::Error| decode_failure(i, e);
    Ok(match ty {
        FerryType::Bool => Value::Bool(row.try_get_unchecked::<i64, _>(i).map_err(fail)? != 0),
        FerryType::Int { unsigned: true, .. } => {
            let u = row.try_get_unchecked::<u64, _>(i).map_err(fail)?;
            i64::try_from(u).map(Value::Int).unwrap_or(Value::UInt(u))
        }
        FerryType::Int { .. } => Value::Int(row.try_get_unchecked::<i64, _>(i).map_err(fail)?),
        FerryType::Float { bits: 32 } => {
            Value::Float(f64::from(row.try_get_unchecked::<f32, _>(i).map_err(fail)?))
        }
        FerryType::Float { .. } => Value::Float(row.try_get_unchecked::<f64, _>(i).map_err(fail)?),
        FerryType::Decimal { .. } => {
            let t = row.try_get_unchecked::<String, _>(i).map_err(fail)?;
            Value::Decimal(into_canonical_decimal(t))
        }
        FerryType::Text { .. } | FerryType::Other(_) => {
            Value::Text(row.try_get_unchecked::<String, _>(i).map_err(fail)?)
        }
        FerryType::Json => Value::Json(row.try_get_unchecked::<String, _>(i).map_err(fail)?),
        FerryType::Bytes { .. } => {
            Value::Bytes(row.try_get_unchecked::<Vec<u8>, _>(i).map_err(fail)?)
        }
        FerryType::Date => Value::Date(row.try_get_unchecked::<NaiveDate, _>(i).map_err(fail)?),
        FerryType::Time => Value::Time(row.try_get_unchecked::<NaiveTime, _>(i).map_err(fail)?),
        FerryType::Timestamp => {
            Value::Timestamp(row.try_get_unchecked::<NaiveDateTime, _>(i).map_err(fail)?)
        }
        FerryType::TimestampTz => {
            Value::TimestampTz(row.try_get_unchecked::<DateTime<Utc>, _>(i).map_err(fail)?)
        }
        FerryType::Uuid => {
            let t = row.try_get_unchecked::<String, _>(i).map_err(fail)?;
            match parse_uuid(&t) {
                Some(u) => Value::Uuid(u),
                None => Value::Text(t),
            }
        }
    })
}

/// Binds values to a query.
pub fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments>,
    binds: &[Bind],
) -> sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments> {
    for b in binds {
        q = match b {
            Bind::Int(i) => q.bind(*i),
            Bind::Text(t) => q.bind(t.clone()),
        };
    }
    q
}

/// Streams the rows of `select` (with `binds`) as batches of values typed by
/// `types`, inside a read-only transaction with a consistent snapshot;
/// returns the rows read. The connection is left outside any transaction.
pub async fn read_chunk(
    conn: &mut MySqlConnection,
    select: &str,
    binds: &[Bind],
    types: &[FerryType],
    tx: BatchSender,
) -> Result<u64, DbFailure> {
    let mut batcher = Batcher::new(tx);
    exec(
        conn,
        "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
    )
    .await?;
    let read = async {
        let q = bind_all(sqlx::query(AssertSqlSafe(select.to_string())), binds);
        let mut rows = q.fetch(&mut *conn);
        while let Some(row) = rows.try_next().await.map_err(|e| classify(&e))? {
            let mut values = Vec::with_capacity(types.len());
            for (i, ty) in types.iter().enumerate() {
                values.push(decode(&row, i, ty)?);
            }
            if !batcher.push(values).await {
                return Ok(false);
            }
        }
        Ok::<_, DbFailure>(true)
    }
    // sqlx wraps its row streams in the span current when they are made and
    // enters and leaves it for every row; polled with no subscriber there is
    // no span to enter (it was a tenth of a worker's CPU reading MySQL). The
    // loop logs nothing itself; its failure is logged by the caller.
    .with_subscriber(NoSubscriber::default())
    .await;
    let end = exec(conn, "COMMIT").await;
    match read {
        Ok(_) => {
            end?;
            Ok(batcher.finish().await)
        }
        Err(f) => {
            batcher.fail(f.clone()).await;
            Err(f)
        }
    }
}

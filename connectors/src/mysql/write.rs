//! Writes rows into MySQL with multi-row `INSERT`s: up to 1,000 rows per
//! statement, within MySQL's 65,535 placeholders and half the server's
//! `max_allowed_packet`; with an upsert key, `ON DUPLICATE KEY UPDATE`.

use chrono::{DateTime, Utc};
use ferry_common::errors::{DbFailure, ErrorClass};
use ferry_common::proto::TableRef;
use sqlx::mysql::{MySqlArguments, MySqlConnection};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, MySql};

use super::errors::classify;
use super::sql::{quote_ident, quote_list, quote_table};
use crate::rows::{value_size, Row};
use crate::value::Value;

/// Most placeholders in one MySQL statement.
const MAX_PLACEHOLDERS: usize = 65_535;
/// Most rows in one statement: MariaDB took 1,000-row statements faster
/// than statements filling the placeholders (bench/RESULTS-connectors.md).
const MAX_ROWS_PER_STATEMENT: usize = 1_000;

/// The server's `max_allowed_packet`: the most bytes one statement may take.
pub async fn max_allowed_packet(conn: &mut MySqlConnection) -> Result<usize, DbFailure> {
    let n: i64 = sqlx::query_scalar("SELECT CAST(@@max_allowed_packet AS SIGNED)")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| classify(&e))?;
    Ok(usize::try_from(n).unwrap_or(1 << 20))
}

/// How rows of one chunk are inserted.
#[derive(Debug, Clone)]
pub struct Insert {
    /// `INSERT INTO t (cols) VALUES `.
    head: String,
    /// `(?, ?, …)`.
    row: String,
    /// ` ON DUPLICATE KEY UPDATE …` (upsert), or empty.
    tail: String,
    columns: usize,
    /// Most bytes of values per statement.
    max_bytes: usize,
    /// Which columns are MySQL `TIMESTAMP`s (1970–2038 only).
    timestamps: Vec<bool>,
}

/// The instants a MySQL `TIMESTAMP` holds: 1970-01-01 00:00:01 to
/// 2038-01-19 03:14:07.999999 UTC.
fn fits_timestamp(t: &DateTime<Utc>) -> bool {
    let micros = t.timestamp_micros();
    (1_000_000..=2_147_483_647_999_999).contains(&micros)
}

/// Refuses a row holding an instant a `TIMESTAMP` column cannot hold, as a
/// data error (22008) so the row is rejected: MariaDB stores such a bound
/// value as NULL without an error, even in strict mode.
fn check_timestamps(timestamps: &[bool], rows: &[Row]) -> Result<(), DbFailure> {
    for row in rows {
        for (v, is_ts) in row.iter().zip(timestamps) {
            if let (true, Value::TimestampTz(t)) = (is_ts, v) {
                if !fits_timestamp(t) {
                    return Err(DbFailure {
                        class: ErrorClass::Data,
                        sqlstate: Some("22008".into()),
                        message: format!(
                            "value {} is out of range for a MySQL TIMESTAMP column (1970-01-01 00:00:01 to 2038-01-19 03:14:07 UTC): use DATETIME",
                            t.format("%Y-%m-%d %H:%M:%S%.f+00")
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

impl Insert {
    /// Inserts into `table`'s `columns`; with `upsert_key`, rows whose key
    /// exists update the other columns. `max_allowed_packet` bounds a
    /// statement's size; `column_types` are the columns' MySQL types.
    pub fn new(
        table: &TableRef,
        columns: &[&str],
        column_types: &[String],
        upsert_key: &[String],
        max_allowed_packet: usize,
    ) -> Self {
        let head = format!(
            "INSERT INTO {} ({}) VALUES ",
            quote_table(table),
            quote_list(columns.iter().copied())
        );
        let row = format!("({})", vec!["?"; columns.len()].join(", "));
        let tail = if upsert_key.is_empty() {
            String::new()
        } else {
            let updates: Vec<String> = columns
                .iter()
                .filter(|c| !upsert_key.iter().any(|k| k == *c))
                .map(|c| format!("{q} = VALUES({q})", q = quote_ident(c)))
                .collect();
            if updates.is_empty() {
                // nothing to update: keep the existing row
                let k = quote_ident(&upsert_key[0]);
                format!(" ON DUPLICATE KEY UPDATE {k} = {k}")
            } else {
                format!(" ON DUPLICATE KEY UPDATE {}", updates.join(", "))
            }
        };
        Self {
            head,
            row,
            tail,
            columns: columns.len().max(1),
            max_bytes: (max_allowed_packet / 2).max(64 * 1024),
            timestamps: column_types
                .iter()
                .map(|t| t.trim().to_ascii_lowercase().starts_with("timestamp"))
                .collect(),
        }
    }

    /// Inserts `rows` (already converted to the table's types) in as few
    /// statements as fit; returns the rows inserted. A statement that fails
    /// fails the call (the caller isolates the refused row).
    pub async fn rows(&self, conn: &mut MySqlConnection, rows: &[Row]) -> Result<u64, DbFailure> {
        let per_statement = (MAX_PLACEHOLDERS / self.columns).clamp(1, MAX_ROWS_PER_STATEMENT);
        let mut done = 0u64;
        let mut start = 0;
        while start < rows.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < rows.len() && end - start < per_statement {
                let size: usize = rows[end].iter().map(value_size).sum();
                if end > start && bytes + size > self.max_bytes {
                    break;
                }
                bytes += size;
                end += 1;
            }
            let mut sql =
                String::with_capacity(self.head.len() + (end - start) * (self.row.len() + 2));
            sql.push_str(&self.head);
            for i in start..end {
                if i > start {
                    sql.push_str(", ");
                }
                sql.push_str(&self.row);
            }
            sql.push_str(&self.tail);
            check_timestamps(&self.timestamps, &rows[start..end])?;
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for row in &rows[start..end] {
                for v in row {
                    q = bind_value(q, v);
                }
            }
            q.execute(&mut *conn).await.map_err(|e| classify(&e))?;
            done += (end - start) as u64;
            start = end;
        }
        Ok(done)
    }
}

/// Binds one value as MySQL takes it (text and bytes by reference: the
/// arguments encode them at once, with no copy in between).
pub fn bind_value<'q>(
    q: Query<'q, MySql, MySqlArguments>,
    v: &Value,
) -> Query<'q, MySql, MySqlArguments> {
    match v {
        Value::Null => q.bind(Option::<String>::None),
        Value::Bool(b) => q.bind(*b),
        Value::Int(i) => q.bind(*i),
        Value::UInt(u) => q.bind(*u),
        Value::Float(f) => q.bind(*f),
        Value::Decimal(t) | Value::Text(t) | Value::Json(t) => q.bind(t.as_str()),
        Value::Bytes(b) => q.bind(b.as_slice()),
        Value::Date(d) => q.bind(*d),
        Value::Time(t) => q.bind(*t),
        Value::Timestamp(t) => q.bind(*t),
        Value::TimestampTz(t) => q.bind(*t),
        Value::Uuid(u) => q.bind(crate::value::uuid_text(u)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamps_outside_1970_to_2038_are_refused() {
        let at = |y, mo, d, h, mi, s| {
            Value::TimestampTz(Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap())
        };
        let ok = vec![
            vec![at(2038, 1, 19, 3, 14, 7)],
            vec![at(1970, 1, 1, 0, 0, 1)],
        ];
        assert!(check_timestamps(&[true], &ok).is_ok());
        for bad in [
            at(2040, 1, 1, 0, 0, 0),
            at(1970, 1, 1, 0, 0, 0),
            at(1, 1, 1, 0, 0, 0),
        ] {
            let f = check_timestamps(&[true], &[vec![bad]]).unwrap_err();
            assert_eq!(
                (f.class, f.sqlstate.as_deref()),
                (ErrorClass::Data, Some("22008"))
            );
        }
        // a DATETIME column takes them
        assert!(check_timestamps(&[false], &[vec![at(2040, 1, 1, 0, 0, 0)]]).is_ok());
    }
}

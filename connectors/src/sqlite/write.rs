//! Writes rows into SQLite with prepared multi-row `INSERT`s (at most 32,766
//! bound values each, SQLite's limit); with an upsert key, `ON CONFLICT DO
//! UPDATE`. Values are bound in the forms SQLite stores without loss:
//! decimals as text (NUMERIC affinity keeps them exactly up to 15 digits),
//! times as ISO text, booleans as 0/1.

use ferry_common::errors::DbFailure;
use ferry_common::proto::TableRef;
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteConnection};
use sqlx::{AssertSqlSafe, Sqlite};

use super::errors::classify;
use super::sql::{quote_ident, quote_list, quote_table};
use crate::iso;
use crate::rows::Row;
use crate::value::Value;

/// Most bound values in one SQLite statement.
const MAX_VARIABLES: usize = 32_766;

/// How rows of one chunk are inserted.
#[derive(Debug, Clone)]
pub struct Insert {
    head: String,
    row: String,
    tail: String,
    columns: usize,
}

impl Insert {
    /// Inserts into `table`'s `columns`; with `upsert_key`, rows whose key
    /// exists update the other columns.
    pub fn new(table: &TableRef, columns: &[&str], upsert_key: &[String]) -> Self {
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
                .filter(|c| !upsert_key.iter().any(|k| k.eq_ignore_ascii_case(c)))
                .map(|c| format!("{q} = excluded.{q}", q = quote_ident(c)))
                .collect();
            let keys = quote_list(upsert_key.iter().map(String::as_str));
            if updates.is_empty() {
                format!(" ON CONFLICT ({keys}) DO NOTHING")
            } else {
                format!(" ON CONFLICT ({keys}) DO UPDATE SET {}", updates.join(", "))
            }
        };
        Self {
            head,
            row,
            tail,
            columns: columns.len().max(1),
        }
    }

    /// Inserts `rows`; returns the rows inserted.
    pub async fn rows(&self, conn: &mut SqliteConnection, rows: &[Row]) -> Result<u64, DbFailure> {
        let per_statement = (MAX_VARIABLES / self.columns).clamp(1, 500);
        let mut done = 0u64;
        for part in rows.chunks(per_statement) {
            let mut sql = self.head.clone();
            for i in 0..part.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&self.row);
            }
            sql.push_str(&self.tail);
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for row in part {
                for v in row {
                    q = bind_value(q, v);
                }
            }
            q.execute(&mut *conn).await.map_err(|e| classify(&e))?;
            done += part.len() as u64;
        }
        Ok(done)
    }
}

/// Binds one value as SQLite stores it without loss.
pub fn bind_value<'q>(
    q: Query<'q, Sqlite, SqliteArguments>,
    v: &Value,
) -> Query<'q, Sqlite, SqliteArguments> {
    match v {
        Value::Null => q.bind(Option::<String>::None),
        Value::Bool(b) => q.bind(i64::from(*b)),
        Value::Int(i) => q.bind(*i),
        Value::UInt(u) => q.bind(u.to_string()),
        Value::Float(f) => q.bind(*f),
        Value::Decimal(t) | Value::Text(t) | Value::Json(t) => q.bind(t.clone()),
        Value::Bytes(b) => q.bind(b.clone()),
        Value::Date(d) => q.bind(iso::format_date(d)),
        Value::Time(t) => q.bind(iso::format_time(t)),
        Value::Timestamp(t) => q.bind(iso::format_timestamp(t, "")),
        Value::TimestampTz(t) => q.bind(iso::format_timestamp(&t.naive_utc(), "+00:00")),
        Value::Uuid(u) => q.bind(crate::value::uuid_text(u)),
    }
}

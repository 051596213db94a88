//! Writes rows into MySQL with multi-row `INSERT`s: as many rows per
//! statement as fit MySQL's 65,535 placeholders and half the server's
//! `max_allowed_packet`; with an upsert key, `ON DUPLICATE KEY UPDATE`.

use ferry_common::errors::DbFailure;
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
}

impl Insert {
    /// Inserts into `table`'s `columns`; with `upsert_key`, rows whose key
    /// exists update the other columns. `max_allowed_packet` bounds a
    /// statement's size.
    pub fn new(
        table: &TableRef,
        columns: &[&str],
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
        }
    }

    /// Inserts `rows` (already converted to the table's types) in as few
    /// statements as fit; returns the rows inserted. A statement that fails
    /// fails the call (the caller isolates the refused row).
    pub async fn rows(&self, conn: &mut MySqlConnection, rows: &[Row]) -> Result<u64, DbFailure> {
        let per_statement = (MAX_PLACEHOLDERS / self.columns).max(1);
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

/// Binds one value as MySQL takes it.
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
        Value::Decimal(t) | Value::Text(t) | Value::Json(t) => q.bind(t.clone()),
        Value::Bytes(b) => q.bind(b.clone()),
        Value::Date(d) => q.bind(*d),
        Value::Time(t) => q.bind(*t),
        Value::Timestamp(t) => q.bind(*t),
        Value::TimestampTz(t) => q.bind(*t),
        Value::Uuid(u) => q.bind(crate::value::uuid_text(u)),
    }
}

//! Writes rows into SQLite with prepared multi-row `INSERT`s (at most 32,766
//! bound values each, SQLite's limit), bound through SQLite's C API
//! (`raw.rs`); with an upsert key, `ON CONFLICT DO UPDATE`. Values are bound in the forms SQLite stores without loss:
//! decimals as text (NUMERIC affinity keeps them exactly up to 15 digits),
//! times as ISO text, booleans as 0/1.

use ferry_common::errors::DbFailure;
use ferry_common::proto::TableRef;
use sqlx::sqlite::SqliteConnection;

use super::errors::classify;
use super::raw::{Handle, Stmt};
use super::sql::{quote_ident, quote_list, quote_table};
use crate::rows::Row;

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

    /// The statement inserting `n` rows.
    fn sql(&self, n: usize) -> String {
        let mut sql = self.head.clone();
        for i in 0..n {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&self.row);
        }
        sql.push_str(&self.tail);
        sql
    }

    /// Inserts `rows` in the connection's open transaction, through
    /// SQLite's C API on sqlx's own handle (`raw.rs`); returns the rows
    /// inserted.
    pub async fn rows(&self, conn: &mut SqliteConnection, rows: &[Row]) -> Result<u64, DbFailure> {
        let mut locked = conn.lock_handle().await.map_err(|e| classify(&e))?;
        // SAFETY: the lock keeps sqlx's thread off the handle until it drops,
        // after the last use of `handle` and its statements below.
        let handle = unsafe { Handle::borrowed(locked.as_raw_handle()) };
        let per_statement = (MAX_VARIABLES / self.columns).clamp(1, 500);
        blocking(|| {
            // the full-size statement serves every part but a shorter last one
            let mut full = if rows.len() >= per_statement {
                Some(handle.prepare(&self.sql(per_statement))?)
            } else {
                None
            };
            let mut done = 0u64;
            for part in rows.chunks(per_statement) {
                let mut last: Stmt<'_>;
                let stmt = match full.as_mut() {
                    Some(s) if part.len() == per_statement => s,
                    _ => {
                        last = handle.prepare(&self.sql(part.len()))?;
                        &mut last
                    }
                };
                let mut at = 0;
                for row in part {
                    for v in row {
                        at += 1;
                        if let Err(f) = stmt.bind_value(at, v) {
                            stmt.done();
                            return Err(f);
                        }
                    }
                }
                stmt.run()?;
                done += part.len() as u64;
            }
            Ok(done)
        })
    }
}

/// Runs `f`, which blocks on SQLite, off the async scheduler's way where
/// the runtime allows it (a multi-threaded runtime hands this thread's
/// other tasks to another thread meanwhile).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;

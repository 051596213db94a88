//! The ledger inside a SQLite target file: tables `<schema>_ledger` and
//! `<schema>_rejects` (default `ferry_ledger`, `ferry_rejects`), written in
//! the chunk's transaction. SQLite has one writer per file: a chunk's
//! transaction takes the write lock first (`BEGIN IMMEDIATE`), and another
//! attempt waits for it (the busy timeout) instead of racing.

use ferry_common::errors::DbFailure;
use sqlx::sqlite::SqliteConnection;
use sqlx::{AssertSqlSafe, Row};

use super::errors::classify;
use super::session::exec;
use super::sql::quote_ident;
use crate::isolate::Rejected;
pub use crate::postgres::ledger::Claim;
use crate::postgres::rejects::StoredReject;

/// The name of one of Ferry's tables in a SQLite file (`ferry_ledger`).
pub fn table(schema: &str, what: &str) -> String {
    quote_ident(&format!("{schema}_{what}"))
}

/// Creates Ferry's tables in the file when missing.
pub async fn ensure(conn: &mut SqliteConnection, schema: &str) -> Result<(), DbFailure> {
    let ddl = format!(
        "CREATE TABLE IF NOT EXISTS {l} (
             job_id TEXT NOT NULL, chunk_no INTEGER NOT NULL, attempt INTEGER NOT NULL,
             fencing_token INTEGER NOT NULL, worker TEXT NOT NULL,
             rows_written INTEGER NOT NULL DEFAULT 0, rows_rejected INTEGER NOT NULL DEFAULT 0,
             committed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
             PRIMARY KEY (job_id, chunk_no));
         CREATE TABLE IF NOT EXISTS {r} (
             id INTEGER PRIMARY KEY, job_id TEXT NOT NULL, chunk_no INTEGER NOT NULL,
             key TEXT, row_text TEXT NOT NULL, sqlstate TEXT NOT NULL, message TEXT NOT NULL,
             rejected_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')));
         CREATE INDEX IF NOT EXISTS {ix} ON {r0} (job_id, chunk_no);",
        l = table(schema, "ledger"),
        r = table(schema, "rejects"),
        r0 = table(schema, "rejects"),
        ix = quote_ident(&format!("{schema}_rejects_job_idx")),
    );
    exec(conn, &format!("BEGIN IMMEDIATE; {ddl} COMMIT"))
        .await
        .map_err(|f| f.context("cannot create Ferry's tables in the SQLite file"))
}

/// One attempt of one chunk.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    /// Prefix of Ferry's tables.
    pub schema: &'a str,
    /// Job id.
    pub job_id: &'a str,
    /// Chunk number.
    pub chunk_no: u32,
    /// Attempt number.
    pub attempt: u32,
    /// Fencing token.
    pub token: u64,
    /// Worker id.
    pub worker: &'a str,
    /// A repair replaces the chunk's earlier ledger row.
    pub repair: bool,
}

impl Attempt<'_> {
    /// Takes the file's write lock, opening the chunk's transaction, and
    /// claims its ledger row.
    pub async fn claim(&self, conn: &mut SqliteConnection) -> Result<Claim, DbFailure> {
        exec(conn, "BEGIN IMMEDIATE").await?;
        let conflict = if self.repair {
            " ON CONFLICT (job_id, chunk_no) DO UPDATE SET attempt = excluded.attempt,
                 fencing_token = excluded.fencing_token, worker = excluded.worker
               WHERE fencing_token < excluded.fencing_token"
        } else {
            " ON CONFLICT (job_id, chunk_no) DO NOTHING"
        };
        let done = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (job_id, chunk_no, attempt, fencing_token, worker) VALUES (?, ?, ?, ?, ?){conflict}",
            table(self.schema, "ledger")
        )))
        .bind(self.job_id)
        .bind(self.chunk_no)
        .bind(self.attempt)
        .bind(self.token as i64)
        .bind(self.worker)
        .execute(&mut *conn)
        .await;
        match done {
            Ok(d) if d.rows_affected() > 0 => Ok(Claim::Claimed),
            Ok(_) => {
                let row = sqlx::query(AssertSqlSafe(format!(
                    "SELECT rows_written, rows_rejected FROM {} WHERE job_id = ? AND chunk_no = ?",
                    table(self.schema, "ledger")
                )))
                .bind(self.job_id)
                .bind(self.chunk_no)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| classify(&e));
                let _ = exec(conn, "ROLLBACK").await;
                let row = row?;
                Ok(Claim::AlreadyCommitted {
                    rows_written: row.get::<i64, _>(0).max(0) as u64,
                    rows_rejected: row.get::<i64, _>(1).max(0) as u64,
                })
            }
            Err(e) => {
                let _ = exec(conn, "ROLLBACK").await;
                Err(classify(&e))
            }
        }
    }

    /// Records the chunk's counts in its claimed ledger row.
    pub async fn record_counts(
        &self,
        conn: &mut SqliteConnection,
        rows_written: u64,
        rows_rejected: u64,
    ) -> Result<(), DbFailure> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET rows_written = ?, rows_rejected = ?, committed_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
              WHERE job_id = ? AND chunk_no = ?",
            table(self.schema, "ledger")
        )))
        .bind(rows_written as i64)
        .bind(rows_rejected as i64)
        .bind(self.job_id)
        .bind(self.chunk_no)
        .execute(&mut *conn)
        .await
        .map_err(|e| classify(&e))?;
        Ok(())
    }

    /// Forgets an earlier attempt's refused rows (repair).
    pub async fn forget_rejects(&self, conn: &mut SqliteConnection) -> Result<(), DbFailure> {
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {} WHERE job_id = ? AND chunk_no = ?",
            table(self.schema, "rejects")
        )))
        .bind(self.job_id)
        .bind(self.chunk_no)
        .execute(&mut *conn)
        .await
        .map_err(|e| classify(&e))?;
        Ok(())
    }

    /// Records refused rows in the chunk's transaction.
    pub async fn record_rejects(
        &self,
        conn: &mut SqliteConnection,
        rejected: &[Rejected],
    ) -> Result<(), DbFailure> {
        for r in rejected {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {} (job_id, chunk_no, key, row_text, sqlstate, message) VALUES (?, ?, ?, ?, ?, ?)",
                table(self.schema, "rejects")
            )))
            .bind(self.job_id)
            .bind(self.chunk_no)
            .bind(r.key.clone())
            .bind(r.row.clone())
            .bind(r.sqlstate.clone())
            .bind(r.message.clone())
            .execute(&mut *conn)
            .await
            .map_err(|e| classify(&e))?;
        }
        Ok(())
    }
}

/// The rows a job's target refused (at most `limit`) and their total.
pub async fn list_rejects(
    conn: &mut SqliteConnection,
    schema: &str,
    job_id: &str,
    limit: u32,
) -> Result<(Vec<StoredReject>, u64), DbFailure> {
    let t = table(schema, "rejects");
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT chunk_no, coalesce(key, ''), row_text, sqlstate, message FROM {t}
          WHERE job_id = ? ORDER BY chunk_no, id LIMIT ?"
    )))
    .bind(job_id)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| classify(&e).context("cannot read the rejects table"))?;
    let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM {t} WHERE job_id = ?"
    )))
    .bind(job_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| classify(&e))?;
    Ok((
        rows.into_iter()
            .map(|r| StoredReject {
                chunk_no: r.get::<i64, _>(0).max(0) as u32,
                key: r.get(1),
                row: r.get(2),
                sqlstate: r.get(3),
                message: r.get(4),
            })
            .collect(),
        total.max(0) as u64,
    ))
}

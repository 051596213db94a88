//! The ledger on a MySQL target: Ferry's tables live in a database of their
//! own on the same server (default `ferry`), so one InnoDB transaction spans
//! the chunk's rows and its ledger row. MySQL has no `application_name`, so
//! each attempt records its `CONNECTION_ID()` (committed before the chunk's
//! transaction); a new attempt blocked by a stalled older one `KILL`s the
//! older attempts' connections of the same chunk, and only those.

use ferry_common::errors::{DbFailure, ErrorClass};
use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Row};

use super::errors::classify;
use super::session::{exec, exec_each, has_column};
use super::sql::quote_ident;
use crate::isolate::Rejected;

/// How long a claim waits on another attempt's claim, in seconds, before
/// ending older attempts (InnoDB counts whole seconds).
const CLAIM_LOCK_WAIT_S: u32 = 2;
/// The lock wait after the claim (InnoDB's default).
const WORK_LOCK_WAIT_S: u32 = 50;
/// How many times a blocked claim ends older attempts and tries again.
const CLAIM_TRIES: usize = 4;

/// Creates Ferry's database and tables when missing, once at a time (under
/// a named lock).
pub async fn ensure(conn: &mut MySqlConnection, schema: &str) -> Result<(), DbFailure> {
    let s = quote_ident(schema);
    let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 30)")
        .bind(format!("ferry:ledger:{schema}"))
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| classify(&e))?;
    if got != Some(1) {
        return Err(DbFailure::transient(
            "another process is creating Ferry's tables (named lock busy)",
        ));
    }
    let ddl = [
        format!("CREATE DATABASE IF NOT EXISTS {s}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.ledger (
             job_id varchar(64) NOT NULL, chunk_no int NOT NULL, attempt int NOT NULL,
             fencing_token bigint NOT NULL, worker varchar(128) NOT NULL,
             rows_written bigint NOT NULL DEFAULT 0, rows_rejected bigint NOT NULL DEFAULT 0,
             committed_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
             PRIMARY KEY (job_id, chunk_no)) ENGINE=InnoDB"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.rejects (
             id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY, job_id varchar(64) NOT NULL,
             chunk_no int NOT NULL, `key` longtext, row_text longtext NOT NULL,
             `sqlstate` varchar(5) NOT NULL, message text NOT NULL,
             rejected_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
             KEY rejects_job_idx (job_id, chunk_no)) ENGINE=InnoDB"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.attempts (
             job_id varchar(64) NOT NULL, chunk_no int NOT NULL, attempt int NOT NULL,
             connection_id bigint unsigned NOT NULL,
             {RECORDED_AT},
             PRIMARY KEY (job_id, chunk_no, attempt)) ENGINE=InnoDB"
        ),
    ];
    let ddl: Vec<&str> = ddl.iter().map(String::as_str).collect();
    let made = match exec_each(conn, &ddl).await {
        Ok(()) => add_recorded_at(conn, schema).await,
        failed => failed,
    };
    let _ = sqlx::query("SELECT RELEASE_LOCK(?)")
        .bind(format!("ferry:ledger:{schema}"))
        .execute(&mut *conn)
        .await;
    made.map_err(|f| f.context(format!("cannot create Ferry's tables in database {s}")))
}

/// The `attempts` column that dates a row, so `ferry gc` can remove the rows
/// of jobs that never committed a chunk (they have no ledger row to date them).
const RECORDED_AT: &str = "recorded_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)";

/// Adds `recorded_at` to an `attempts` table made before it existed (its
/// rows are dated now). MySQL 8 has no `ADD COLUMN IF NOT EXISTS`, so the
/// catalog is asked first; the caller holds the ledger's named lock.
async fn add_recorded_at(conn: &mut MySqlConnection, schema: &str) -> Result<(), DbFailure> {
    if attempts_dated(conn, schema).await? {
        return Ok(());
    }
    exec(
        conn,
        &format!(
            "ALTER TABLE {}.attempts ADD COLUMN {RECORDED_AT}",
            quote_ident(schema)
        ),
    )
    .await
}

/// Whether Ferry's `attempts` table in `schema` has `recorded_at` (one made
/// by an older Ferry lacks it until a job is next planned there).
pub(super) async fn attempts_dated(
    conn: &mut MySqlConnection,
    schema: &str,
) -> Result<bool, DbFailure> {
    let what = "the attempts table's recorded_at column";
    has_column(conn, schema, "attempts", "recorded_at", what).await
}

/// One attempt of one chunk.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    /// Ferry's database on the server.
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

pub use crate::postgres::ledger::Claim;

impl Attempt<'_> {
    fn table(&self, t: &str) -> String {
        format!("{}.{}", quote_ident(self.schema), quote_ident(t))
    }

    /// Records this attempt's connection, then opens the chunk's transaction
    /// and claims its ledger row; ends stalled older attempts when blocked.
    pub async fn claim(&self, conn: &mut MySqlConnection) -> Result<Claim, DbFailure> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (job_id, chunk_no, attempt, connection_id) VALUES (?, ?, ?, CONNECTION_ID())
             ON DUPLICATE KEY UPDATE connection_id = CONNECTION_ID()",
            self.table("attempts")
        )))
        .bind(self.job_id)
        .bind(self.chunk_no)
        .bind(self.attempt)
        .execute(&mut *conn)
        .await
        .map_err(|e| classify(&e))?;
        let upsert = if self.repair {
            " ON DUPLICATE KEY UPDATE attempt = IF(fencing_token < VALUES(fencing_token), VALUES(attempt), attempt),
                 worker = IF(fencing_token < VALUES(fencing_token), VALUES(worker), worker),
                 fencing_token = GREATEST(fencing_token, VALUES(fencing_token))"
        } else {
            ""
        };
        let insert = format!(
            "INSERT INTO {} (job_id, chunk_no, attempt, fencing_token, worker) VALUES (?, ?, ?, ?, ?){upsert}",
            self.table("ledger")
        );
        for _ in 0..CLAIM_TRIES {
            exec_each(
                conn,
                &[
                    &format!("SET SESSION innodb_lock_wait_timeout = {CLAIM_LOCK_WAIT_S}"),
                    "START TRANSACTION",
                ],
            )
            .await?;
            let r = sqlx::query(AssertSqlSafe(insert.clone()))
                .bind(self.job_id)
                .bind(self.chunk_no)
                .bind(self.attempt)
                .bind(self.token as i64)
                .bind(self.worker)
                .execute(&mut *conn)
                .await;
            match r {
                Ok(done) if !self.repair || done.rows_affected() > 0 => {
                    exec(
                        conn,
                        &format!("SET SESSION innodb_lock_wait_timeout = {WORK_LOCK_WAIT_S}"),
                    )
                    .await?;
                    return Ok(Claim::Claimed);
                }
                Ok(_) => return self.already(conn).await,
                Err(e) => {
                    let f = classify(&e);
                    let _ = exec(conn, "ROLLBACK").await;
                    match mysql_number(&e) {
                        Some(1062) => return self.already(conn).await,
                        Some(1205) => {
                            let killed = self.end_older(conn).await?;
                            tracing::warn!(job = %self.job_id, chunk = self.chunk_no, attempt = self.attempt, killed, "ledger claim blocked by another attempt; ended older attempts");
                        }
                        _ => return Err(f),
                    }
                }
            }
        }
        Err(DbFailure {
            class: ErrorClass::Transient,
            sqlstate: Some("HY000".into()),
            message: format!(
                "ledger claim of chunk {} stayed blocked by another attempt",
                self.chunk_no
            ),
        })
    }

    async fn already(&self, conn: &mut MySqlConnection) -> Result<Claim, DbFailure> {
        let _ = exec(conn, "ROLLBACK").await;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT rows_written, rows_rejected FROM {} WHERE job_id = ? AND chunk_no = ?",
            self.table("ledger")
        )))
        .bind(self.job_id)
        .bind(self.chunk_no)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| classify(&e))?;
        Ok(Claim::AlreadyCommitted {
            rows_written: row.get::<i64, _>(0).max(0) as u64,
            rows_rejected: row.get::<i64, _>(1).max(0) as u64,
        })
    }

    /// Kills the connections of older attempts of this chunk that are still
    /// connected as this user; returns how many.
    async fn end_older(&self, conn: &mut MySqlConnection) -> Result<u64, DbFailure> {
        let ids: Vec<u64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT a.connection_id FROM {} a
               JOIN information_schema.processlist p ON p.id = a.connection_id
              WHERE a.job_id = ? AND a.chunk_no = ? AND a.attempt < ? AND p.user = SUBSTRING_INDEX(CURRENT_USER(), '@', 1)
                AND a.connection_id <> CONNECTION_ID()",
            self.table("attempts")
        )))
        .bind(self.job_id)
        .bind(self.chunk_no)
        .bind(self.attempt)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| classify(&e))?;
        let mut killed = 0;
        for id in ids {
            // a connection id is an integer of the server's own; KILL takes no placeholder
            if exec(conn, &format!("KILL CONNECTION {id}")).await.is_ok() {
                killed += 1;
            }
        }
        Ok(killed)
    }

    /// Records the chunk's counts in its claimed ledger row.
    pub async fn record_counts(
        &self,
        conn: &mut MySqlConnection,
        rows_written: u64,
        rows_rejected: u64,
    ) -> Result<(), DbFailure> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {} SET rows_written = ?, rows_rejected = ?, committed_at = CURRENT_TIMESTAMP(6)
              WHERE job_id = ? AND chunk_no = ?",
            self.table("ledger")
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
    pub async fn forget_rejects(&self, conn: &mut MySqlConnection) -> Result<(), DbFailure> {
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {} WHERE job_id = ? AND chunk_no = ?",
            self.table("rejects")
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
        conn: &mut MySqlConnection,
        rejected: &[Rejected],
    ) -> Result<(), DbFailure> {
        for batch in rejected.chunks(500) {
            let holes = vec!["(?, ?, ?, ?, ?, ?)"; batch.len()].join(", ");
            let mut q = sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {} (job_id, chunk_no, `key`, row_text, `sqlstate`, message) VALUES {holes}",
                self.table("rejects")
            )));
            for r in batch {
                q = q
                    .bind(self.job_id)
                    .bind(self.chunk_no)
                    .bind(r.key.clone())
                    .bind(r.row.clone())
                    .bind(r.sqlstate.chars().take(5).collect::<String>())
                    .bind(r.message.clone());
            }
            q.execute(&mut *conn).await.map_err(|e| classify(&e))?;
        }
        Ok(())
    }
}

/// The MySQL error number of an sqlx error, if the server sent one.
pub fn mysql_number(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .map(|m| m.number()),
        _ => None,
    }
}

/// The rows a job's target refused (at most `limit`) and their total.
pub async fn list_rejects(
    conn: &mut MySqlConnection,
    schema: &str,
    job_id: &str,
    limit: u32,
) -> Result<(Vec<crate::postgres::rejects::StoredReject>, u64), DbFailure> {
    let table = format!("{}.{}", quote_ident(schema), quote_ident("rejects"));
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT chunk_no, COALESCE(`key`, ''), row_text, `sqlstate`, message FROM {table}
          WHERE job_id = ? ORDER BY chunk_no, id LIMIT ?"
    )))
    .bind(job_id)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| classify(&e).context("cannot read the rejects table"))?;
    let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {table} WHERE job_id = ?"
    )))
    .bind(job_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| classify(&e))?;
    let out = rows
        .into_iter()
        .map(|r| crate::postgres::rejects::StoredReject {
            chunk_no: r.get::<i32, _>(0).max(0) as u32,
            key: r.get(1),
            row: r.get(2),
            sqlstate: r.get(3),
            message: r.get(4),
        })
        .collect();
    Ok((out, total.max(0) as u64))
}

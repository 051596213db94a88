//! Removing the ledger rows of jobs long finished from a MySQL target's
//! Ferry database (`ferry gc`, and the leader on a schedule): a job's
//! `ledger` rows leave once its newest row is older than the retention,
//! unless the caller still holds the job, and its `attempts` rows with them
//! (they only name connections to end while a chunk may run again). A job
//! that never committed a chunk has `attempts` rows and no ledger row: those
//! leave once their newest is older than the retention (dated by
//! `recorded_at`). The job's `rejects` rows stay. Ages are computed by the
//! server, in the session's UTC.

use std::collections::HashSet;
use std::time::Duration;

use ferry_common::errors::DbFailure;
use sqlx::mysql::MySqlConnection;
use sqlx::AssertSqlSafe;

use super::errors::classify;
use super::session::{exec, has_table};
use super::sql::quote_ident;
use crate::db::ledger_gc::Collected;

/// Removes the ledger rows of every job whose newest row committed more than
/// `older_than` ago and that `keep` does not name, one transaction per job;
/// None when Ferry's database `schema` has no ledger table (nothing is
/// created). A job whose chunk commits while it is collected keeps its rows.
pub async fn collect(
    conn: &mut MySqlConnection,
    schema: &str,
    older_than: Duration,
    keep: &HashSet<String>,
) -> Result<Option<Collected>, DbFailure> {
    if !has_table(conn, schema, "ledger", "the ledger table").await? {
        return Ok(None);
    }
    let attempts = has_table(conn, schema, "attempts", "the attempts table").await?;
    let micros = i64::try_from(older_than.as_micros()).unwrap_or(i64::MAX);
    let old: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT job_id FROM {} GROUP BY job_id
          HAVING MAX(committed_at) < NOW(6) - INTERVAL ? MICROSECOND ORDER BY job_id",
        table(schema, "ledger")
    )))
    .bind(micros)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| classify(&e).context("cannot list the ledger's old jobs"))?;
    let mut out = Collected::default();
    for job in old {
        if keep.contains(&job) {
            continue;
        }
        let removed = remove_job(conn, schema, &job, micros, attempts)
            .await
            .map_err(|f| f.context(format!("cannot remove job {job}'s ledger rows")))?;
        out.add(job, removed);
    }
    if attempts {
        remove_unledgered_attempts(conn, schema, micros, keep).await?;
    }
    Ok(Some(out))
}

/// Removes the `attempts` rows older than `micros` of jobs that have no
/// ledger row, whose newest attempt is that old and that `keep` does not
/// name; skipped on an `attempts` table without `recorded_at` (made by an
/// older Ferry and not yet given the column by a new job's planning).
async fn remove_unledgered_attempts(
    conn: &mut MySqlConnection,
    schema: &str,
    micros: i64,
    keep: &HashSet<String>,
) -> Result<(), DbFailure> {
    if !super::ledger::attempts_dated(conn, schema).await? {
        return Ok(());
    }
    let (attempts, ledger) = (table(schema, "attempts"), table(schema, "ledger"));
    let jobs: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT a.job_id FROM {attempts} a
          WHERE NOT EXISTS (SELECT 1 FROM {ledger} l WHERE l.job_id = a.job_id)
          GROUP BY a.job_id
         HAVING MAX(a.recorded_at) < NOW(6) - INTERVAL ? MICROSECOND ORDER BY a.job_id"
    )))
    .bind(micros)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| classify(&e).context("cannot list the attempts of jobs without ledger rows"))?;
    for job in jobs.iter().filter(|j| !keep.contains(*j)) {
        // only rows that old: an attempt recorded since the listing stays
        let gone = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {attempts} WHERE job_id = ? AND recorded_at < NOW(6) - INTERVAL ? MICROSECOND"
        )))
        .bind(job)
        .bind(micros)
        .execute(&mut *conn)
        .await
        .map_err(|e| classify(&e).context(format!("cannot remove job {job}'s attempts rows")))?
        .rows_affected();
        tracing::info!(job = %job, rows = gone, "removed the attempts rows of a job that never committed a chunk");
    }
    Ok(())
}

/// `` `schema`.`name` ``.
fn table(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

/// Removes one job's rows older than `micros` in one transaction, and its
/// attempts rows when `attempts`; 0 (nothing removed) when a row of the job
/// is newer, read under lock after the delete.
async fn remove_job(
    conn: &mut MySqlConnection,
    schema: &str,
    job: &str,
    micros: i64,
    attempts: bool,
) -> Result<u64, DbFailure> {
    // REPEATABLE READ whatever the server's default: the locking reads below
    // also lock the gaps of the job's key range, so no row of the job can be
    // inserted until this transaction ends.
    exec(conn, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").await?;
    exec(conn, "START TRANSACTION").await?;
    match remove_locked(conn, schema, job, micros, attempts).await {
        Ok(Some(removed)) => {
            exec(conn, "COMMIT").await?;
            Ok(removed)
        }
        Ok(None) => {
            exec(conn, "ROLLBACK").await?;
            Ok(0)
        }
        Err(f) => {
            let _ = exec(conn, "ROLLBACK").await;
            Err(f)
        }
    }
}

/// The statements of `remove_job` inside its transaction: the rows removed,
/// or None when the job keeps them (the transaction is rolled back).
async fn remove_locked(
    conn: &mut MySqlConnection,
    schema: &str,
    job: &str,
    micros: i64,
    attempts: bool,
) -> Result<Option<u64>, DbFailure> {
    let ledger = table(schema, "ledger");
    let removed = sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM {ledger} WHERE job_id = ? AND committed_at < NOW(6) - INTERVAL ? MICROSECOND"
    )))
    .bind(job)
    .bind(micros)
    .execute(&mut *conn)
    .await
    .map_err(|e| classify(&e))?
    .rows_affected();
    let left: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {ledger} WHERE job_id = ? FOR UPDATE"
    )))
    .bind(job)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| classify(&e))?;
    if left > 0 {
        return Ok(None);
    }
    if attempts {
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {} WHERE job_id = ?",
            table(schema, "attempts")
        )))
        .bind(job)
        .execute(&mut *conn)
        .await
        .map_err(|e| classify(&e))?;
    }
    Ok(Some(removed))
}

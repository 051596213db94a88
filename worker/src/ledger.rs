//! The chunk's ledger claim in the target: the first statement of the chunk's
//! transaction, so a chunk commits at most once whatever the workers do.

use ferry_common::errors::{classify_pg, DbFailure, ErrorClass};
use ferry_common::ledger::application_name;
use ferry_common::proto::ChunkAssignment;
use ferry_common::sql::{quote_ident, quote_literal};
use ferry_common::timing::LEDGER_CLAIM_LOCK_TIMEOUT;
use tokio_postgres::Client;

/// How many times a blocked claim terminates older attempts and tries again.
const CLAIM_TRIES: usize = 4;

/// The result of claiming a chunk's ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The row is ours, inside an open transaction: copy, then commit.
    Claimed,
    /// An earlier attempt committed the chunk; the transaction is rolled back.
    AlreadyCommitted {
        /// Rows it landed.
        rows_written: u64,
        /// Rows it rejected.
        rows_rejected: u64,
    },
}

fn ledger(a: &ChunkAssignment) -> String {
    format!("{}.ledger", quote_ident(&a.ledger_schema))
}

/// Opens the chunk's transaction and claims its ledger row. When another
/// attempt holds the claim (a frozen zombie), terminates the sessions of
/// *older* attempts of this chunk and claims again.
pub async fn claim(
    target: &Client,
    a: &ChunkAssignment,
    worker_id: &str,
) -> Result<Claim, DbFailure> {
    let r = a.chunk.as_ref().ok_or_else(|| DbFailure {
        class: ErrorClass::Permanent,
        sqlstate: None,
        message: "assignment without chunk".into(),
    })?;
    let app = application_name(&r.job_id, r.chunk_no, a.attempt);
    let begin = format!(
        "SET application_name = {}; BEGIN; SET LOCAL lock_timeout = '{}ms'",
        quote_literal(&app),
        LEDGER_CLAIM_LOCK_TIMEOUT.as_millis()
    );
    // A repair replaces the chunk's earlier ledger row; a newer attempt's row wins.
    let on_conflict = if a.repair_delete.is_empty() {
        "DO NOTHING".to_string()
    } else {
        format!(
            "DO UPDATE SET attempt = EXCLUDED.attempt, fencing_token = EXCLUDED.fencing_token, worker = EXCLUDED.worker
             WHERE {}.fencing_token < EXCLUDED.fencing_token",
            ledger(a)
        )
    };
    let insert = format!(
        "INSERT INTO {} (job_id, chunk_no, attempt, fencing_token, worker) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (job_id, chunk_no) {on_conflict} RETURNING 1",
        ledger(a)
    );
    let chunk_no = r.chunk_no as i32;
    let attempt = a.attempt as i32;
    let token = r.fencing_token as i64;
    for _ in 0..CLAIM_TRIES {
        target
            .batch_execute(&begin)
            .await
            .map_err(|e| classify_pg(&e))?;
        match target
            .query_opt(
                &insert,
                &[&r.job_id, &chunk_no, &attempt, &token, &worker_id],
            )
            .await
        {
            Ok(Some(_)) => {
                target
                    .batch_execute("SET LOCAL lock_timeout = 0")
                    .await
                    .map_err(|e| classify_pg(&e))?;
                return Ok(Claim::Claimed);
            }
            Ok(None) => {
                let row = target
                    .query_one(
                        &format!("SELECT rows_written, rows_rejected FROM {} WHERE job_id = $1 AND chunk_no = $2", ledger(a)),
                        &[&r.job_id, &chunk_no],
                    )
                    .await
                    .map_err(|e| classify_pg(&e))?;
                let _ = target.batch_execute("ROLLBACK").await;
                return Ok(Claim::AlreadyCommitted {
                    rows_written: row.get::<_, i64>(0).max(0) as u64,
                    rows_rejected: row.get::<_, i64>(1).max(0) as u64,
                });
            }
            Err(e) => {
                let f = classify_pg(&e);
                let _ = target.batch_execute("ROLLBACK").await;
                if f.sqlstate.as_deref() != Some("55P03") {
                    return Err(f);
                }
                let killed =
                    terminate_older_attempts(target, &r.job_id, r.chunk_no, a.attempt).await?;
                tracing::warn!(job = %r.job_id, chunk = r.chunk_no, attempt = a.attempt, killed, "ledger claim blocked by another attempt; terminated older attempts");
            }
        }
    }
    Err(DbFailure {
        class: ErrorClass::Transient,
        sqlstate: Some("55P03".into()),
        message: format!(
            "ledger claim of chunk {} stayed blocked by another attempt",
            r.chunk_no
        ),
    })
}

/// Terminates target sessions of older attempts of the chunk that are inside a transaction.
async fn terminate_older_attempts(
    target: &Client,
    job_id: &str,
    chunk_no: u32,
    attempt: u32,
) -> Result<i64, DbFailure> {
    let pattern = format!("ferry:{job_id}:{chunk_no}:%");
    let row = target
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE application_name LIKE $1 AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
                AND split_part(application_name, ':', 4)::int < $2",
            &[&pattern, &(attempt as i32)],
        )
        .await
        .map_err(|e| classify_pg(&e))?;
    Ok(row.get(0))
}

/// Records the chunk's final counts in its (claimed) ledger row.
pub async fn record_counts(
    target: &Client,
    a: &ChunkAssignment,
    rows_written: u64,
    rows_rejected: u64,
) -> Result<(), DbFailure> {
    let r = a.chunk.as_ref().ok_or_else(|| DbFailure {
        class: ErrorClass::Permanent,
        sqlstate: None,
        message: "assignment without chunk".into(),
    })?;
    target
        .execute(
            &format!(
                "UPDATE {} SET rows_written = $3, rows_rejected = $4, committed_at = now() WHERE job_id = $1 AND chunk_no = $2",
                ledger(a)
            ),
            &[&r.job_id, &(r.chunk_no as i32), &(rows_written as i64), &(rows_rejected as i64)],
        )
        .await
        .map_err(|e| classify_pg(&e))?;
    Ok(())
}

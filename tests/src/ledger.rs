//! What the target's `ferry.ledger` and `ferry.rejects` say about a job.

use std::collections::BTreeMap;

use tokio_postgres::Client;

/// What the target's `ferry.ledger` says about one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSummary {
    /// Ledger rows for the job.
    pub rows: i64,
    /// Distinct chunk numbers among them.
    pub distinct_chunks: i64,
    /// Sum of `rows_written`.
    pub rows_written: i64,
    /// Largest `rows_written` of any one chunk.
    pub max_rows_written: i64,
    /// Sum of `rows_rejected`.
    pub rows_rejected: i64,
}

/// Reads the ledger summary for `job` from the target database.
pub async fn ledger_summary(target: &Client, job: &str) -> LedgerSummary {
    let sql = "SELECT count(*), count(DISTINCT chunk_no), \
               coalesce(sum(rows_written), 0)::bigint, coalesce(max(rows_written), 0)::bigint, \
               coalesce(sum(rows_rejected), 0)::bigint \
               FROM ferry.ledger WHERE job_id = $1";
    let row = target
        .query_one(sql, &[&job])
        .await
        .unwrap_or_else(|e| panic!("reading ferry.ledger for job {job}: {e}"));
    LedgerSummary {
        rows: row.get(0),
        distinct_chunks: row.get(1),
        rows_written: row.get(2),
        max_rows_written: row.get(3),
        rows_rejected: row.get(4),
    }
}

/// One chunk's ledger row: which attempt committed it, when, and what it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    /// The attempt that committed.
    pub attempt: i32,
    /// Its fencing token.
    pub fencing_token: i64,
    /// `committed_at`, as text.
    pub committed_at: String,
    /// Rows it wrote.
    pub rows_written: i64,
}

/// Every ledger row of `job`, by chunk number.
pub async fn ledger_rows(target: &Client, job: &str) -> BTreeMap<i32, LedgerRow> {
    target
        .query(
            "SELECT chunk_no, attempt, fencing_token, committed_at::text, rows_written \
             FROM ferry.ledger WHERE job_id = $1",
            &[&job],
        )
        .await
        .unwrap_or_else(|e| panic!("reading ferry.ledger for job {job}: {e}"))
        .iter()
        .map(|r| {
            (
                r.get(0),
                LedgerRow {
                    attempt: r.get(1),
                    fencing_token: r.get(2),
                    committed_at: r.get(3),
                    rows_written: r.get(4),
                },
            )
        })
        .collect()
}

/// Rows of `job` in the target's `ferry.rejects`.
pub async fn rejects_count(target: &Client, job: &str) -> i64 {
    target
        .query_one(
            "SELECT count(*) FROM ferry.rejects WHERE job_id = $1",
            &[&job],
        )
        .await
        .unwrap_or_else(|e| panic!("counting ferry.rejects for job {job}: {e}"))
        .get(0)
}

//! The job history table (`<schema>.job_history`, the guide's DMS_PRCLOG):
//! one row per job, written when it starts and updated when it ends. Every
//! write is an idempotent upsert keyed by job id, so a new leader or a
//! repeated write never adds a row; a write about an older run, or a
//! RUNNING write arriving after its run's end, changes nothing.

use ferry_common::errors::{classify_pg, DbFailure};
use tokio_postgres::{Client, Row};

use super::ledger::create_once;
use super::session::failed;
use super::sql::quote_ident;

/// One job's history row.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    /// Job id (the primary key).
    pub job_id: String,
    /// Idempotency key it was submitted with, if any.
    pub request_id: String,
    /// Who submitted it.
    pub submitted_by: String,
    /// Source connection name.
    pub source: String,
    /// Target connection name.
    pub target: String,
    /// Target table as the job named it.
    pub target_table: String,
    /// The job's query.
    pub query: String,
    /// Write mode in lower case.
    pub mode: String,
    /// The job spec with defaults resolved (connection names, never URLs).
    pub spec: serde_json::Value,
    /// RUNNING, SUCCEEDED, FAILED or CANCELLED.
    pub state: String,
    /// Runs: 1, plus one per resume or repair.
    pub runs: i32,
    /// Unix milliseconds of submission.
    pub submitted_at_ms: i64,
    /// Unix milliseconds the latest run started (0: never ran).
    pub started_at_ms: i64,
    /// Unix milliseconds it ended (0: running).
    pub ended_at_ms: i64,
    /// Rows landed.
    pub rows_written: i64,
    /// Rows rejected.
    pub rows_rejected: i64,
    /// Rows the planner counted.
    pub rows_estimated: i64,
    /// Chunks planned.
    pub chunks_total: i32,
    /// Chunks landed.
    pub chunks_succeeded: i32,
    /// Chunks failed for good.
    pub chunks_failed: i32,
    /// Chunk retries.
    pub retries: i32,
    /// Why it failed or was cancelled.
    pub error: String,
    /// Planning strategy, for people.
    pub plan: String,
    /// The coordinator that wrote the row.
    pub coordinator: String,
}

fn table(schema: &str) -> String {
    format!("{}.job_history", quote_ident(schema))
}

/// Creates the history table in `schema` when missing, race-free like the ledger.
pub async fn ensure(client: &Client, schema: &str) -> Result<(), DbFailure> {
    if exists(client, schema).await? {
        return Ok(());
    }
    let s = quote_ident(schema);
    let ddl = format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.job_history (
             job_id text PRIMARY KEY,
             request_id text NOT NULL DEFAULT '',
             submitted_by text NOT NULL DEFAULT '',
             source text NOT NULL,
             target text NOT NULL,
             target_table text NOT NULL,
             query text NOT NULL,
             mode text NOT NULL,
             spec jsonb NOT NULL,
             state text NOT NULL,
             runs integer NOT NULL,
             submitted_at timestamptz NOT NULL,
             started_at timestamptz,
             ended_at timestamptz,
             rows_written bigint NOT NULL DEFAULT 0,
             rows_rejected bigint NOT NULL DEFAULT 0,
             rows_estimated bigint NOT NULL DEFAULT 0,
             chunks_total integer NOT NULL DEFAULT 0,
             chunks_succeeded integer NOT NULL DEFAULT 0,
             chunks_failed integer NOT NULL DEFAULT 0,
             retries integer NOT NULL DEFAULT 0,
             error text NOT NULL DEFAULT '',
             plan text NOT NULL DEFAULT '',
             coordinator text NOT NULL DEFAULT '',
             updated_at timestamptz NOT NULL DEFAULT now()
         );
         CREATE INDEX IF NOT EXISTS job_history_started_idx
             ON {s}.job_history (coalesce(started_at, submitted_at) DESC);"
    );
    create_once(client, &format!("ferry:history:{schema}"), &ddl)
        .await
        .map_err(|f| {
            f.context(format!(
                "cannot create the job history table {s}.job_history"
            ))
        })
}

/// Whether the history table exists in `schema`.
pub async fn exists(client: &Client, schema: &str) -> Result<bool, DbFailure> {
    client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table(schema)])
        .await
        .map(|r| r.get(0))
        .map_err(|e| failed("cannot look up the job history table", &e))
}

/// Writes a job's row: inserts it, or updates it unless the stored row is
/// about a later run, or about this run's end while `row` is not.
pub async fn upsert(client: &Client, schema: &str, row: &HistoryRow) -> Result<(), DbFailure> {
    let t = table(schema);
    let sql = format!(
        "INSERT INTO {t} AS h (job_id, request_id, submitted_by, source, target, target_table, query,
             mode, spec, state, runs, submitted_at, started_at, ended_at, rows_written, rows_rejected,
             rows_estimated, chunks_total, chunks_succeeded, chunks_failed, retries, error, plan,
             coordinator, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
             to_timestamp($12::bigint / 1000.0), to_timestamp(NULLIF($13::bigint, 0) / 1000.0),
             to_timestamp(NULLIF($14::bigint, 0) / 1000.0), $15, $16, $17, $18, $19, $20, $21, $22,
             $23, $24, now())
         ON CONFLICT (job_id) DO UPDATE SET
             request_id = EXCLUDED.request_id, submitted_by = EXCLUDED.submitted_by,
             source = EXCLUDED.source, target = EXCLUDED.target,
             target_table = EXCLUDED.target_table, query = EXCLUDED.query, mode = EXCLUDED.mode,
             spec = EXCLUDED.spec, state = EXCLUDED.state, runs = EXCLUDED.runs,
             submitted_at = EXCLUDED.submitted_at, started_at = EXCLUDED.started_at,
             ended_at = EXCLUDED.ended_at, rows_written = EXCLUDED.rows_written,
             rows_rejected = EXCLUDED.rows_rejected, rows_estimated = EXCLUDED.rows_estimated,
             chunks_total = EXCLUDED.chunks_total, chunks_succeeded = EXCLUDED.chunks_succeeded,
             chunks_failed = EXCLUDED.chunks_failed, retries = EXCLUDED.retries,
             error = EXCLUDED.error, plan = EXCLUDED.plan, coordinator = EXCLUDED.coordinator,
             updated_at = now()
         WHERE (EXCLUDED.runs, EXCLUDED.ended_at IS NOT NULL) >= (h.runs, h.ended_at IS NOT NULL)"
    );
    client
        .execute(
            &sql,
            &[
                &row.job_id,
                &row.request_id,
                &row.submitted_by,
                &row.source,
                &row.target,
                &row.target_table,
                &row.query,
                &row.mode,
                &row.spec,
                &row.state,
                &row.runs,
                &row.submitted_at_ms,
                &row.started_at_ms,
                &row.ended_at_ms,
                &row.rows_written,
                &row.rows_rejected,
                &row.rows_estimated,
                &row.chunks_total,
                &row.chunks_succeeded,
                &row.chunks_failed,
                &row.retries,
                &row.error,
                &row.plan,
                &row.coordinator,
            ],
        )
        .await
        .map_err(|e| classify_pg(&e).context("cannot write the job history row"))?;
    Ok(())
}

/// The columns `from_row` reads, in its order.
const COLUMNS: &str = "job_id, request_id, submitted_by, source, target, target_table, query, mode,
    spec, state, runs, (extract(epoch FROM submitted_at) * 1000)::bigint,
    coalesce((extract(epoch FROM started_at) * 1000)::bigint, 0),
    coalesce((extract(epoch FROM ended_at) * 1000)::bigint, 0), rows_written, rows_rejected,
    rows_estimated, chunks_total, chunks_succeeded, chunks_failed, retries, error, plan, coordinator";

fn from_row(r: &Row) -> HistoryRow {
    HistoryRow {
        job_id: r.get(0),
        request_id: r.get(1),
        submitted_by: r.get(2),
        source: r.get(3),
        target: r.get(4),
        target_table: r.get(5),
        query: r.get(6),
        mode: r.get(7),
        spec: r.get(8),
        state: r.get(9),
        runs: r.get(10),
        submitted_at_ms: r.get(11),
        started_at_ms: r.get(12),
        ended_at_ms: r.get(13),
        rows_written: r.get(14),
        rows_rejected: r.get(15),
        rows_estimated: r.get(16),
        chunks_total: r.get(17),
        chunks_succeeded: r.get(18),
        chunks_failed: r.get(19),
        retries: r.get(20),
        error: r.get(21),
        plan: r.get(22),
        coordinator: r.get(23),
    }
}

/// Up to `limit` rows, most recently started first, only in `state` when given.
pub async fn list(
    client: &Client,
    schema: &str,
    limit: i64,
    state: Option<&str>,
) -> Result<Vec<HistoryRow>, DbFailure> {
    let sql = format!(
        "SELECT {COLUMNS} FROM {} WHERE ($1::text IS NULL OR state = $1)
         ORDER BY coalesce(started_at, submitted_at) DESC, job_id LIMIT $2",
        table(schema)
    );
    let rows = client
        .query(&sql, &[&state, &limit])
        .await
        .map_err(|e| failed("cannot read the job history table", &e))?;
    Ok(rows.iter().map(from_row).collect())
}

/// The row of one job, if written.
pub async fn get(
    client: &Client,
    schema: &str,
    job_id: &str,
) -> Result<Option<HistoryRow>, DbFailure> {
    let sql = format!("SELECT {COLUMNS} FROM {} WHERE job_id = $1", table(schema));
    let row = client
        .query_opt(&sql, &[&job_id])
        .await
        .map_err(|e| failed("cannot read the job history table", &e))?;
    Ok(row.as_ref().map(from_row))
}

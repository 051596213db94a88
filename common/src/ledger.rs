//! The target-side ledger: one row per committed chunk, the truth about what landed.

use crate::sql::quote_ident;

/// Default schema of the ledger table in every target database.
pub const DEFAULT_LEDGER_SCHEMA: &str = "ferry";

/// Statements that create the ledger schema and table when missing.
pub fn create_ledger_sql(schema: &str) -> String {
    let s = quote_ident(schema);
    format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.ledger (
             job_id text NOT NULL,
             chunk_no integer NOT NULL,
             attempt integer NOT NULL,
             fencing_token bigint NOT NULL,
             worker text NOT NULL,
             rows_written bigint NOT NULL DEFAULT 0,
             rows_rejected bigint NOT NULL DEFAULT 0,
             committed_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (job_id, chunk_no)
         );
         CREATE TABLE IF NOT EXISTS {s}.rejects (
             id bigserial PRIMARY KEY,
             job_id text NOT NULL,
             chunk_no integer NOT NULL,
             key text,
             row_text text NOT NULL,
             sqlstate text NOT NULL,
             message text NOT NULL,
             rejected_at timestamptz NOT NULL DEFAULT now()
         );
         CREATE INDEX IF NOT EXISTS rejects_job_idx ON {s}.rejects (job_id, chunk_no);"
    )
}

/// The `application_name` a chunk attempt's target session carries, so a later
/// attempt can find and terminate a stalled older one.
pub fn application_name(job_id: &str, chunk_no: u32, attempt: u32) -> String {
    format!("ferry:{job_id}:{chunk_no}:{attempt}")
}

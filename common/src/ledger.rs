//! Names of the target-side ledger: its default schema, and the session name
//! a chunk attempt carries so a later attempt can find a stalled older one.

/// Default schema of the ledger table in every target database.
pub const DEFAULT_LEDGER_SCHEMA: &str = "ferry";

/// The `application_name` a chunk attempt's target session carries, so a later
/// attempt can find and terminate a stalled older one by exact match.
pub fn application_name(job_id: &str, chunk_no: u32, attempt: u32) -> String {
    format!("ferry:{job_id}:{chunk_no}:{attempt}")
}

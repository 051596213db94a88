//! Reading the job history: `ListHistory`, and `GetJob`/`WatchJob` for a
//! job that has left the coordinator's memory (past its retention).

use ferry_common::proto::{self, HistoryEntry, JobState};
use ferry_connectors::db::history as db_history;
use ferry_connectors::postgres::history::HistoryRow;

use super::{spec_json, History};

/// Rows returned when a request asks for none in particular.
const DEFAULT_LIMIT: u32 = 50;

fn state_of(label: &str) -> JobState {
    JobState::from_str_name(&format!("JOB_STATE_{label}")).unwrap_or(JobState::Unspecified)
}

/// A row as the API reports it.
pub fn to_entry(connection: &str, r: HistoryRow) -> HistoryEntry {
    HistoryEntry {
        state: state_of(&r.state) as i32,
        job_id: r.job_id,
        request_id: r.request_id,
        submitted_by: r.submitted_by,
        source: r.source,
        target: r.target,
        target_table: r.target_table,
        query: r.query,
        mode: r.mode,
        runs: r.runs.max(0) as u32,
        submitted_at_ms: r.submitted_at_ms,
        started_at_ms: r.started_at_ms,
        ended_at_ms: r.ended_at_ms,
        rows_written: r.rows_written.max(0) as u64,
        rows_rejected: r.rows_rejected.max(0) as u64,
        chunks_total: r.chunks_total.max(0) as u32,
        chunks_failed: r.chunks_failed.max(0) as u32,
        retries: r.retries.max(0) as u32,
        error: r.error,
        coordinator: r.coordinator,
        history_connection: connection.to_string(),
    }
}

/// A row as `GetJob` reports a job (without chunks: their outcomes stay in the ledger).
pub fn to_job(r: HistoryRow) -> proto::Job {
    proto::Job {
        spec: Some(spec_json::from_json(&r.spec)),
        state: state_of(&r.state) as i32,
        job_id: r.job_id,
        error: r.error,
        chunks_total: r.chunks_total.max(0) as u32,
        chunks_succeeded: r.chunks_succeeded.max(0) as u32,
        chunks_failed: r.chunks_failed.max(0) as u32,
        rows_written: r.rows_written.max(0) as u64,
        rows_rejected: r.rows_rejected.max(0) as u64,
        rows_estimated: r.rows_estimated.max(0) as u64,
        retries: r.retries.max(0) as u32,
        created_at_ms: r.submitted_at_ms,
        started_at_ms: r.started_at_ms,
        finished_at_ms: r.ended_at_ms,
        chunks: Vec::new(),
        plan: r.plan,
        ..Default::default()
    }
}

impl History {
    /// Up to `limit` rows (0: 50), most recently started first, from every
    /// database that may hold rows; databases that cannot be read are named
    /// in the warnings.
    pub async fn list(
        &self,
        limit: u32,
        state: Option<JobState>,
    ) -> (Vec<HistoryEntry>, Vec<String>) {
        let limit = if limit == 0 { DEFAULT_LIMIT } else { limit };
        let label = state.map(|s| s.label());
        let schema = self.config.schema.clone();
        let mut rows = Vec::new();
        let mut warnings = Vec::new();
        for conn in self.databases() {
            let read = self
                .with_client(&conn, async |c| {
                    if !db_history::exists(c, &schema).await? {
                        return Ok(Vec::new());
                    }
                    db_history::list(c, &schema, i64::from(limit), label).await
                })
                .await;
            match read {
                Ok(found) => rows.extend(found.into_iter().map(|r| (conn.clone(), r))),
                Err(e) => warnings.push(format!("connection '{conn}': {}", e.message)),
            }
        }
        rows.sort_by_key(|(_, r)| {
            std::cmp::Reverse((
                if r.started_at_ms > 0 {
                    r.started_at_ms
                } else {
                    r.submitted_at_ms
                },
                r.job_id.clone(),
            ))
        });
        rows.dedup_by(|a, b| a.1.job_id == b.1.job_id);
        rows.truncate(limit as usize);
        let entries = rows.into_iter().map(|(c, r)| to_entry(&c, r)).collect();
        (entries, warnings)
    }

    /// The row of `job_id`, from the first database that holds one.
    pub async fn find(&self, job_id: &str) -> Option<HistoryRow> {
        let schema = self.config.schema.clone();
        for conn in self.databases() {
            let found = self
                .with_client(&conn, async |c| {
                    if !db_history::exists(c, &schema).await? {
                        return Ok(None);
                    }
                    db_history::get(c, &schema, job_id).await
                })
                .await;
            match found {
                Ok(Some(row)) => return Some(row),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(connection = %conn, job = %job_id, error = %e.message, "cannot read the job history")
                }
            }
        }
        None
    }
}

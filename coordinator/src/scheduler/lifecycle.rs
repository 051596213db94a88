//! What follows a job's state changes besides scheduling: its history row
//! (written when it starts planning, starts running and ends), its job span
//! (exported when a run ends, under the id fixed when the run began), the
//! job-level metrics, and its retirement from memory and the store once
//! past the retention.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_common::proto::{self, JobRecord, JobState};
use ferry_common::telemetry::traces::{
    child_of, export_span, from_carrier, new_span_id, to_carrier, unix_ms, FinishedSpan,
};
use ferry_common::timing::{HISTORY_RETRY_MAX, HISTORY_RETRY_MIN};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::KeyValue;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::state::{now_ms, JobRuntime};
use super::Scheduler;
use crate::error::CoordinatorError;
use crate::history::{read, row_of};
use crate::metrics::{events, JobSeries, JobTable, CHUNK_STATES};

/// The trace context of a new job: the span it is submitted in (the
/// SubmitJob call) and the first run's job span, a child of it. Both empty
/// when traces are off.
pub(super) fn job_trace() -> (HashMap<String, String>, HashMap<String, String>) {
    let parent = tracing::Span::current().context();
    let run = child_of(&parent, new_span_id())
        .map(|c| to_carrier(&c))
        .unwrap_or_default();
    (to_carrier(&parent), run)
}

/// Gives `record` a new run's job span (resume, repair) in the same trace.
pub(super) fn new_run_trace(record: &mut JobRecord) {
    let parent = from_carrier(&record.trace_parent);
    record.trace_context = child_of(&parent, new_span_id())
        .map(|c| to_carrier(&c))
        .unwrap_or_default();
}

/// The context of `record`'s current run span: the parent of its plan and chunk spans.
pub(crate) fn job_context(record: &JobRecord) -> opentelemetry::Context {
    from_carrier(&record.trace_context)
}

impl Scheduler {
    /// A job started planning or running (or a new leader adopted it): its
    /// history row says RUNNING.
    pub(crate) fn job_started(&self, job: &JobRuntime) {
        self.write_history(job);
    }

    /// A job adopted from the store after a takeover: its row is written as
    /// it stands, in case the previous leader did not write it.
    pub(crate) fn adopt_history(&self, job: &JobRuntime) {
        self.write_history(job);
    }

    /// A run ended (SUCCEEDED, FAILED, CANCELLED): records its duration,
    /// exports its job span and writes its final history row.
    pub(crate) fn job_ended(&self, job: &JobRuntime) {
        let r = &job.record;
        let state = job.state();
        let start_ms = if r.runs > 1 && r.started_at_ms > 0 {
            r.started_at_ms
        } else {
            r.created_at_ms
        };
        let elapsed = Duration::from_millis((r.finished_at_ms - start_ms).max(0) as u64);
        events().job_ended(state, elapsed);
        self.ends.send_modify(|n| *n = n.wrapping_add(1));
        self.snapshots.release(&r.job_id);
        self.export_job_span(job, start_ms);
        self.write_history(job);
    }

    fn export_job_span(&self, job: &JobRuntime, start_ms: i64) {
        let r = &job.record;
        let run = job_context(r);
        let sc = run.span().span_context().clone();
        if !sc.is_valid() {
            return;
        }
        let parent = from_carrier(&r.trace_parent);
        let spec = r.spec.clone().unwrap_or_default();
        let v = job.view();
        let state = job.state();
        export_span(FinishedSpan {
            name: "ferry.job",
            span_id: sc.span_id(),
            parent: &parent,
            start: unix_ms(start_ms),
            end: unix_ms(r.finished_at_ms),
            attributes: vec![
                KeyValue::new("ferry.job_id", r.job_id.clone()),
                KeyValue::new("ferry.source", spec.source),
                KeyValue::new("ferry.target", spec.target),
                KeyValue::new("ferry.table", spec.table),
                KeyValue::new("ferry.run", i64::from(r.runs.max(1))),
                KeyValue::new("ferry.state", state.label()),
                KeyValue::new("ferry.rows", v.rows_written as i64),
                KeyValue::new("ferry.rows_rejected", v.rows_rejected as i64),
                KeyValue::new("ferry.chunks", i64::from(v.chunks_total)),
                KeyValue::new("ferry.chunks_failed", i64::from(v.chunks_failed)),
                KeyValue::new("ferry.retries", i64::from(v.retries)),
            ],
            error: (state == JobState::Failed).then_some("job failed"),
        });
    }

    /// Writes `job`'s history row in the background, again until it lands
    /// (or this scheduler's term ends); a final row, once written, is
    /// recorded in the job so retention may retire it.
    fn write_history(&self, job: &JobRuntime) {
        let Some(history) = self.config.lifecycle.history.clone() else {
            return;
        };
        let row = row_of(&job.view(), &history.config().coordinator);
        let Some(conn) = history.connection_for(&job.record) else {
            tracing::debug!(job = %job.record.job_id, "no job history row: the job has no spec");
            return;
        };
        let final_run = job.state().is_terminal().then_some(job.record.runs.max(1));
        let me = self.me.clone();
        self.history_pending.send_modify(|n| *n += 1);
        tokio::spawn(async move {
            let mut delay = HISTORY_RETRY_MIN;
            let mut written = true;
            while let Err(e) = history.write(&conn, &row).await {
                tracing::warn!(job = %row.job_id, connection = %conn, error = %e.message, "cannot write the job history row; trying again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(HISTORY_RETRY_MAX);
                if me.upgrade().is_none() {
                    written = false;
                    break;
                }
            }
            if let Some(s) = me.upgrade() {
                if let (true, Some(run)) = (written, final_run) {
                    s.history_written(&row.job_id, run).await;
                }
                s.history_pending.send_modify(|n| *n = n.saturating_sub(1));
            }
        });
    }

    /// Waits up to `timeout` for history rows still being written (a
    /// process about to exit, `ferry local`); false if some are not.
    pub async fn flush_history(&self, timeout: Duration) -> bool {
        let mut pending = self.history_pending.subscribe();
        let drained = async { pending.wait_for(|n| *n == 0).await.is_ok() };
        tokio::time::timeout(timeout, drained)
            .await
            .unwrap_or(false)
    }

    /// Notes that run `run`'s final history row is written.
    async fn history_written(&self, job_id: &str, run: u32) {
        let mut st = self.state.lock().await;
        let Some(job) = st.jobs.get_mut(job_id) else {
            return;
        };
        if job.record.history_run >= run || !job.state().is_terminal() {
            return;
        }
        job.record.history_run = run;
        if let Err(e) = self.store.update_job(&job.record).await {
            tracing::warn!(job = %job_id, error = %e, "cannot record that the job's history row is written");
        }
    }

    /// A job no longer in memory, as its history row describes it.
    pub(super) async fn job_from_history(
        &self,
        job_id: &str,
    ) -> Result<proto::Job, CoordinatorError> {
        let not_found = || CoordinatorError::JobNotFound(job_id.to_string());
        let history = self
            .config
            .lifecycle
            .history
            .as_ref()
            .ok_or_else(not_found)?;
        history
            .find(job_id)
            .await
            .map(read::to_job)
            .ok_or_else(not_found)
    }

    /// Rows of the job history (ListHistory).
    pub async fn history(
        &self,
        limit: u32,
        state: Option<JobState>,
    ) -> (Vec<proto::HistoryEntry>, Vec<String>) {
        match &self.config.lifecycle.history {
            Some(h) => h.list(limit, state).await,
            None => (
                Vec::new(),
                vec!["this coordinator keeps no job history".into()],
            ),
        }
    }

    /// Deletes finished jobs past the retention from the store and memory,
    /// once their final history row is written.
    pub(super) async fn retire_expired(self: &Arc<Self>) {
        let Some(retention) = self.config.lifecycle.retention else {
            return;
        };
        let history = self.config.lifecycle.history.clone();
        let cutoff = now_ms() - retention.as_millis() as i64;
        let expired: Vec<JobRecord> = {
            let mut st = self.state.lock().await;
            let mut out = Vec::new();
            for job in st.jobs.values_mut() {
                let done = job.state().is_terminal()
                    && job.record.finished_at_ms > 0
                    && job.record.finished_at_ms <= cutoff
                    && job.live.is_empty()
                    && job.writing == 0
                    && !job.finalizing
                    && !job.retiring;
                if !done {
                    continue;
                }
                let has_row = history
                    .as_ref()
                    .is_some_and(|h| h.connection_for(&job.record).is_some());
                if has_row && job.record.history_run < job.record.runs.max(1) {
                    // its final row was never confirmed: write it (again) first
                    self.write_history(job);
                    continue;
                }
                job.retiring = true;
                out.push(job.record.clone());
            }
            out
        };
        for record in expired {
            let id = record.job_id.clone();
            let deleted = self.store.delete_job(&record).await;
            let mut st = self.state.lock().await;
            match deleted {
                Ok(()) => {
                    if let Some(job) = st.jobs.remove(&id) {
                        super::budget_gate::release_job(self.budget(), &job);
                    }
                    st.order.retain(|j| j != &id);
                    tracing::info!(job = %id, retention_s = retention.as_secs(), "finished job retired from memory and the store; its history row remains");
                }
                Err(e) => {
                    if let Some(job) = st.jobs.get_mut(&id) {
                        job.retiring = false;
                    }
                    tracing::warn!(job = %id, error = %e, "cannot retire a finished job; trying again later");
                }
            }
        }
    }

    /// The job table as metrics read it; None when the state is busy (the
    /// caller serves its last snapshot instead of waiting).
    pub(crate) fn metrics_snapshot(&self) -> Option<JobTable> {
        let st = self.state.try_lock().ok()?;
        let jobs = st
            .order
            .iter()
            .filter_map(|id| st.jobs.get(id))
            .map(|j| {
                let spec = j.record.spec.as_ref();
                let mut chunks = [0u64; 6];
                for c in &j.chunks {
                    if let Some(i) = CHUNK_STATES
                        .iter()
                        .position(|s| *s as i32 == c.record.state)
                    {
                        chunks[i] += 1;
                    }
                }
                JobSeries {
                    job_id: j.record.job_id.clone(),
                    state: j.state(),
                    source: spec.map(|s| s.source.clone()).unwrap_or_default(),
                    target: spec.map(|s| s.target.clone()).unwrap_or_default(),
                    rows_written: j.rows_so_far(),
                    rows_rejected: j.totals.rows_rejected,
                    chunks,
                    concurrency: j
                        .concurrency
                        .as_ref()
                        .map_or_else(|| j.max_in_flight(), |c| c.limit()),
                }
            })
            .collect();
        Some(JobTable {
            jobs,
            workers: st.workers.len() as u64,
        })
    }
}

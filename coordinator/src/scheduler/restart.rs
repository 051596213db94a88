//! Copying a keyless job over from the start: a job split on `ctid` block
//! ranges cannot repair a chunk (the target's rows cannot be mapped back to
//! source blocks), so `repair` starts it over when its mode empties the
//! target anyway (truncate, replace) and its target is PostgreSQL: the
//! target (a replace job's swapped-in table) is emptied and the job's ledger
//! rows forgotten in one transaction, then every chunk is copied again. The
//! same emptying serves a job whose source snapshot was lost (`snapshot`).

use std::sync::Arc;
use std::time::Instant;

use ferry_common::errors::ErrorClass;
use ferry_common::proto::{self, ChunkState, JobRecord, JobSpec, JobState, TableRef, WriteMode};
use ferry_connectors::kind::DbKind;
use ferry_connectors::postgres::start_over::start_over;
use tokio::sync::MutexGuard;

use super::consistency::{split_on_ctid, wants_snapshot};
use super::state::{now_ms, JobRuntime, State};
use super::transitions::{After, Transition};
use super::Scheduler;
use crate::error::CoordinatorError;
use crate::planner::{open_target, PlanError};

/// Whether `repair` of this job copies it over from the start: it is split
/// on `ctid` into several chunks, its mode empties the target (truncate,
/// replace) and its target is PostgreSQL.
pub(super) fn repair_starts_over(record: &JobRecord, chunks: usize, target_is_pg: bool) -> bool {
    let mode = record
        .spec
        .as_ref()
        .and_then(|s| WriteMode::try_from(s.mode).ok())
        .unwrap_or(WriteMode::Append);
    split_on_ctid(record)
        && chunks > 1
        && target_is_pg
        && matches!(mode, WriteMode::Truncate | WriteMode::Replace)
}

/// Whether the job's target connection is PostgreSQL.
pub(super) fn target_is_postgres(s: &Scheduler, spec: &JobSpec) -> bool {
    s.config
        .connections
        .url(&spec.target)
        .ok()
        .and_then(|u| DbKind::of_url(&spec.target, u).ok())
        == Some(DbKind::Postgres)
}

/// The writes that make every chunk of a job starting over PENDING again
/// with nothing landed (chunks already so are left alone); the chunks stay
/// off the ready list until the target is emptied.
pub(super) fn start_over_transitions(job_id: &str, job: &JobRuntime) -> Vec<Transition> {
    let mut transitions = Vec::new();
    for c in &job.chunks {
        if c.record.state == ChunkState::Pending as i32 && c.record.rows_written == 0 {
            continue;
        }
        let mut new = c.record.clone();
        new.state = ChunkState::Pending as i32;
        new.retries = 0;
        new.rows_written = 0;
        new.rows_rejected = 0;
        new.retry_at_ms = 0;
        new.repair = false;
        new.last_error.clear();
        transitions.push(Transition {
            job_id: job_id.to_string(),
            n: c.record.chunk_no,
            old: c.record.clone(),
            version: c.version,
            new,
            after: After::Stay,
        });
    }
    transitions
}

/// Once the target is emptied: every chunk of a job starting over is ready
/// to lease, in key order, and the job's clock starts again.
pub(super) fn ready_all(job: &mut JobRuntime) {
    job.ready = (1..=job.chunks.len() as u32).collect();
    job.recount();
    job.started = Some(Instant::now());
}

impl Scheduler {
    /// Repairs a keyless job by starting it over: every chunk PENDING and
    /// held, the job RUNNING, then (in the background) the target emptied
    /// and every chunk copied again.
    pub(super) async fn repair_by_starting_over(
        self: &Arc<Self>,
        st: MutexGuard<'_, State>,
        job_id: &str,
    ) -> Result<proto::Job, CoordinatorError> {
        let mut st = st;
        let Some(job) = st.jobs.get_mut(job_id) else {
            return Err(CoordinatorError::JobNotFound(job_id.to_string()));
        };
        job.record.error.clear();
        job.record.finished_at_ms = 0;
        job.record.runs = job.record.runs.max(1) + 1;
        super::lifecycle::new_run_trace(&mut job.record);
        let transitions = start_over_transitions(job_id, job);
        job.ready.clear();
        job.delayed.clear();
        for t in &transitions {
            job.hold(t);
        }
        job.record.state = JobState::Running as i32;
        job.record.started_at_ms = now_ms();
        job.started = Some(Instant::now());
        // no chunk is leased until the target is emptied
        job.snapshot_pending = true;
        self.store.update_job(&job.record).await?;
        self.job_started(job);
        tracing::info!(job = %job_id, chunks = job.chunks.len(), "job repair: the job is split on ctid block ranges, so it starts over");
        let (st, result) = self.write_transitions(st, transitions).await;
        result?;
        drop(st);
        tokio::spawn(Arc::clone(self).restart_for_repair(job_id.to_string()));
        self.changed();
        self.get_job(job_id).await
    }

    /// Empties `table` and forgets the job's ledger and rejects rows, trying
    /// a transient failure again under the job's retry settings; Ok(false)
    /// when the job stopped running meanwhile, Err with the reason otherwise.
    pub(super) async fn empty_target(
        &self,
        job_id: &str,
        spec: &JobSpec,
        table: &TableRef,
    ) -> Result<bool, PlanError> {
        let retry = {
            let st = self.state.lock().await;
            match st.jobs.get(job_id) {
                Some(job) => job.retry(),
                None => return Ok(false),
            }
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = async {
                let conn = open_target(&self.config.connections, spec, job_id).await?;
                let Some(client) = conn.postgres() else {
                    return Err(PlanError::invalid("the target is not PostgreSQL"));
                };
                start_over(client, table, &self.config.ledger_schema, job_id)
                    .await
                    .map_err(PlanError::from)
            }
            .await;
            match result {
                Ok(()) => return Ok(true),
                Err(e)
                    if e.class == ErrorClass::Transient && attempt <= retry.allowed_retries() =>
                {
                    tracing::warn!(job = %job_id, error = %e, "cannot empty the target to start over; trying again");
                    let delay = retry.delay(attempt, &mut rand::rng());
                    tokio::time::sleep(delay).await;
                    if !self.job_running(job_id).await {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The second half of a keyless job's repair by starting over: its
    /// chunks were made PENDING and held (`snapshot_pending`); empties the
    /// target, then lets every chunk run, in a new source snapshot when the
    /// job reads in one.
    pub(super) async fn restart_for_repair(self: Arc<Self>, job_id: String) {
        let (spec, table) = {
            let st = self.state.lock().await;
            let Some(job) = st.jobs.get(&job_id) else {
                return;
            };
            let table = job
                .record
                .load
                .clone()
                .or_else(|| job.record.target.clone());
            (job.record.spec.clone().unwrap_or_default(), table)
        };
        let emptied = match table {
            Some(t) => self.empty_target(&job_id, &spec, &t).await,
            None => Err(PlanError::invalid("the job has no target table")),
        };
        match emptied {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                self.fail_for_snapshot(
                    &job_id,
                    format!("repair of a job split on ctid starts it over, but the target cannot be emptied: {e}"),
                )
                .await;
                return;
            }
        }
        let snapshot = {
            let mut st = self.state.lock().await;
            let Some(job) = st.jobs.get_mut(&job_id) else {
                return;
            };
            if job.state().is_terminal() {
                return;
            }
            super::restart::ready_all(job);
            tracing::warn!(job = %job_id, chunks = job.chunks.len(), "job started over for repair: the job is split on ctid block ranges, which the target's rows cannot be mapped back to, so the target was emptied and every chunk is copied again");
            let snapshot = wants_snapshot(&job.record);
            if !snapshot {
                job.snapshot_pending = false;
            }
            snapshot
        };
        if snapshot {
            // nothing has landed since the target was emptied: no instant to keep
            Arc::clone(&self)
                .replace_snapshot(job_id, String::new())
                .await;
        } else {
            self.ready.notify_waiters();
            self.changed();
        }
    }
}

//! Runs the planner for a submitted job, retrying transient failures, then
//! stores its chunks, runs the one-time truncate and starts the job.

use std::sync::Arc;
use std::time::Instant;

use ferry_common::errors::ErrorClass;
use ferry_common::plan::STORE_FORMAT;
use ferry_common::proto::{ChunkRecord, ChunkState, JobState, WriteMode};
use ferry_connectors::db::target as db_target;
use ferry_connectors::postgres::sql::show_table;

use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::lifecycle::job_context;
use super::progress;
use super::state::{now_ms, ChunkRt};
use super::Scheduler;
use crate::error::CoordinatorError;
use crate::planner::prepare::plan_for_run;
use crate::planner::{open_target, prepare_target, Plan, PlanError};

impl Scheduler {
    /// Starts planning `job_id` in the background.
    pub(crate) fn spawn_planning(self: &Arc<Self>, job_id: String) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let span = tracing::info_span!("ferry.plan", ferry.job_id = %job_id);
            if let Some(cx) = me.job_trace_context(&job_id).await {
                let _ = span.set_parent(cx);
            }
            if let Err(e) = me.plan_and_start(&job_id).instrument(span).await {
                tracing::error!(job = %job_id, error = %e, "planning failed in the state store");
            }
        });
    }

    /// The context of a job's current run span, if traced.
    async fn job_trace_context(&self, job_id: &str) -> Option<opentelemetry::Context> {
        let st = self.state.lock().await;
        let job = st.jobs.get(job_id)?;
        (!job.record.trace_context.is_empty()).then(|| job_context(&job.record))
    }

    async fn set_state(&self, job_id: &str, state: JobState) -> Result<bool, CoordinatorError> {
        let mut st = self.state.lock().await;
        let Some(job) = st.jobs.get_mut(job_id) else {
            return Ok(false);
        };
        if job.state().is_terminal() {
            return Ok(false);
        }
        job.record.state = state as i32;
        if job.record.runs == 0 {
            job.record.runs = 1;
        }
        self.store.update_job(&job.record).await?;
        self.job_started(job);
        self.changed();
        Ok(true)
    }

    async fn plan_and_start(self: &Arc<Self>, job_id: &str) -> Result<(), CoordinatorError> {
        if !self.set_state(job_id, JobState::Planning).await? {
            return Ok(());
        }
        let (spec, retry) = {
            let st = self.state.lock().await;
            let Some(job) = st.jobs.get(job_id) else {
                return Ok(());
            };
            (job.record.spec.clone().unwrap_or_default(), job.retry())
        };
        let mut attempt = 0;
        let planning = Instant::now();
        let plan = loop {
            attempt += 1;
            // a SNAPSHOT job plans in the snapshot its chunks read in (its
            // session is counted first, so the planner's never wait on it)
            let held = self.hold_snapshot(job_id).await;
            // the planner's source and target sessions, for this attempt
            let sessions = self
                .reserve_for(job_id, &[&spec.source, &spec.target])
                .await;
            let result = match held {
                // plan_job writes nothing; plan_for_run creates the table and ledger around it
                Ok(snapshot) => {
                    plan_for_run(
                        &spec,
                        job_id,
                        &self.config.connections,
                        &self.config.ledger_schema,
                        snapshot.as_ref(),
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            let result = match result {
                Ok(plan) if spec.mode == WriteMode::Truncate as i32 => {
                    self.truncate_once(job_id, &spec, &plan).await.map(|_| plan)
                }
                other => other,
            };
            let result = match result {
                Ok(plan) => prepare_target(&spec, job_id, &self.config.connections, &plan)
                    .await
                    .map(|prep| (plan, prep)),
                Err(e) => Err(e),
            };
            drop(sessions);
            match result {
                Ok((plan, prep)) => {
                    let mut st = self.state.lock().await;
                    if let Some(job) = st.jobs.get_mut(job_id) {
                        job.record.load = Some(prep.load);
                        job.record.upsert_key = prep.upsert_key;
                    }
                    break plan;
                }
                Err(e)
                    if e.class == ErrorClass::Transient && attempt <= retry.allowed_retries() =>
                {
                    let delay = retry.delay(attempt, &mut rand::rng());
                    tracing::warn!(job = %job_id, "Planning failed with exception: {}, will retry ({attempt}/{})", e.message, retry.allowed_retries());
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    crate::metrics::events()
                        .planning_duration
                        .record(planning.elapsed().as_secs_f64(), &[]);
                    let mut st = self.state.lock().await;
                    if let Some(job) = st.jobs.get_mut(job_id) {
                        self.fail_job(job, format!("planning failed: {}", e.message))
                            .await?;
                    }
                    return Ok(());
                }
            }
        };
        crate::metrics::events()
            .planning_duration
            .record(planning.elapsed().as_secs_f64(), &[]);
        self.start(job_id, plan).await
    }

    /// Truncates the target once per job; the fact is stored so a new leader never repeats it.
    async fn truncate_once(
        &self,
        job_id: &str,
        spec: &ferry_common::proto::JobSpec,
        plan: &Plan,
    ) -> Result<(), PlanError> {
        {
            let st = self.state.lock().await;
            if st.jobs.get(job_id).is_none_or(|j| j.record.truncated) {
                return Ok(());
            }
        }
        let mut conn = open_target(&self.config.connections, spec, job_id).await?;
        db_target::truncate(&mut conn, &plan.target).await?;
        let mut st = self.state.lock().await;
        if let Some(job) = st.jobs.get_mut(job_id) {
            job.record.truncated = true;
            self.store
                .update_job(&job.record)
                .await
                .map_err(|e| PlanError {
                    class: ErrorClass::Transient,
                    message: e.to_string(),
                })?;
        }
        tracing::info!(job = %job_id, table = %show_table(&plan.target), "target table truncated (mode truncate)");
        Ok(())
    }

    pub(crate) async fn start(
        self: &Arc<Self>,
        job_id: &str,
        plan: Plan,
    ) -> Result<(), CoordinatorError> {
        let records: Vec<ChunkRecord> = plan
            .chunks
            .iter()
            .enumerate()
            .map(|(i, bounds)| ChunkRecord {
                job_id: job_id.to_string(),
                chunk_no: i as u32 + 1,
                // `range` is shown from the bounds when asked for (`to_proto`)
                bounds: Some(bounds.clone()),
                state: ChunkState::Pending as i32,
                ..Default::default()
            })
            .collect();
        // the store batches the plan into transactions of its own size
        let versions = self.store.put_chunks(&records).await?;
        let mut st = self.state.lock().await;
        let slots: u32 = st.workers.values().map(|w| w.concurrency).sum();
        let Some(job) = st.jobs.get_mut(job_id) else {
            return Ok(());
        };
        if job.state().is_terminal() {
            return Ok(());
        }
        job.record.rows_estimated = plan.rows;
        let consistency = job.record.spec.as_ref().map_or(0, |s| s.consistency);
        job.record.plan = format!("{}; {}", plan.strategy, super::plan_note(consistency));
        job.record.format = STORE_FORMAT;
        job.record.target = Some(plan.target.clone());
        job.record.columns = plan.columns.clone();
        job.record.key = plan.key.clone();
        job.record.source_query = plan.source_query.clone();
        job.record.source_bitmap_scan = plan.source_bitmap_scan;
        if let (Some(cap), Some(spec)) = (plan.max_in_flight, job.record.spec.as_mut()) {
            spec.max_workers = Some(spec.max_workers.map_or(cap, |n| n.min(cap)));
        }
        if job.record.load.is_none() {
            job.record.load = Some(plan.target.clone());
        }
        job.record.chunks_total = records.len() as u32;
        job.record.state = JobState::Running as i32;
        job.record.started_at_ms = now_ms();
        job.record.runs = job.record.runs.max(1);
        self.store.update_job(&job.record).await?;
        job.chunks = records
            .into_iter()
            .zip(versions)
            .map(|(record, version)| ChunkRt { record, version })
            .collect();
        job.recount();
        job.ready = (1..=job.chunks.len() as u32).collect();
        job.started = Some(Instant::now());
        let mut workers = job.max_in_flight().min(job.chunks.len() as u32);
        if slots > 0 {
            workers = workers.min(slots);
        }
        self.job_started(job);
        tracing::info!(job = %job_id, rows = plan.rows, plan = %job.record.plan, "job planned");
        progress::log_start(job_id, workers, job.chunks.len() as u32);
        drop(st);
        self.ready.notify_waiters();
        self.changed();
        Ok(())
    }
}

//! `ferry.v1.JobService`: submit, inspect, watch and cancel jobs.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use ferry_common::proto::job_service_server::JobService;
use ferry_common::proto::{
    CancelJobRequest, CollectGarbageRequest, CollectGarbageResponse, GetJobRequest, Job, JobEvent,
    JobState, ListHistoryRequest, ListHistoryResponse, ListJobsRequest, ListJobsResponse,
    ListRejectsRequest, ListRejectsResponse, PlanJobRequest, PlanJobResponse, RepairJobRequest,
    ResumeJobRequest, SubmitJobRequest, SubmitJobResponse, VerifyJobRequest, VerifyJobResponse,
    WatchJobRequest,
};
use ferry_common::telemetry::traces;
use ferry_common::timing::{WATCH_IDLE, WATCH_INTERVAL};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::error::{CoordinatorError, Reason};
use crate::gate::Gate;
use crate::security::audit::{self, Action};

/// The JobService implementation.
pub struct JobApi {
    gate: Arc<Gate>,
}

impl JobApi {
    /// A JobService behind `gate`.
    pub fn new(gate: Arc<Gate>) -> Self {
        Self { gate }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<JobEvent, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl JobService for JobApi {
    async fn submit_job(
        &self,
        request: Request<SubmitJobRequest>,
    ) -> Result<Response<SubmitJobResponse>, Status> {
        let caller = audit::caller(&request);
        // the caller's `traceparent` (an Airflow task's trace) is the parent of the job's trace
        let span = tracing::info_span!("ferry.submit");
        let _ = span.set_parent(traces::from_metadata(request.metadata()));
        let req = request.into_inner();
        let spec = req.spec.ok_or_else(|| {
            CoordinatorError::invalid("spec", Reason::MissingField, "the request has no job spec")
        })?;
        crate::scheduler::spec_limits::check_request_id(&req.request_id)
            .map_err(|e| CoordinatorError::invalid(e.field, Reason::InvalidValue, e.to_string()))?;
        let scheduler = self.gate.scheduler()?;
        // The submission runs on its own task: when the client's deadline
        // (grpc-timeout) expires, tonic drops this handler, and the job must
        // then be stored and planned in full or not at all, never stored but
        // left unplanned (a retry with the same request_id finds it).
        let by = caller.name.clone();
        let submitted = tokio::spawn(
            async move { scheduler.submit_by(req.request_id, spec, by).await }
                .instrument(span.clone()),
        );
        let submitted = match submitted.await {
            Ok(r) => r,
            Err(e) => return Err(Status::internal(format!("submission task failed: {e}"))),
        };
        let (job_id, created) = audited(&caller, Action::Submit, "", submitted, |r| &r.0)?;
        span.set_attribute("ferry.job_id", job_id.clone());
        Ok(Response::new(SubmitJobResponse { job_id, created }))
    }

    async fn get_job(&self, request: Request<GetJobRequest>) -> Result<Response<Job>, Status> {
        Ok(Response::new(
            self.gate
                .scheduler()?
                .get_job(&request.into_inner().job_id)
                .await?,
        ))
    }

    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        let jobs = self
            .gate
            .scheduler()?
            .list_jobs(request.into_inner().limit as usize)
            .await;
        Ok(Response::new(ListJobsResponse { jobs }))
    }

    type WatchJobStream = EventStream;

    async fn watch_job(
        &self,
        request: Request<WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let job_id = request.into_inner().job_id;
        let first = self.gate.scheduler()?.get_job(&job_id).await?;
        let stream = job_events(Arc::clone(&self.gate), job_id, first);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn resume_job(
        &self,
        request: Request<ResumeJobRequest>,
    ) -> Result<Response<Job>, Status> {
        let caller = audit::caller(&request);
        let job_id = request.into_inner().job_id;
        let resumed = self.gate.scheduler()?.resume(&job_id).await;
        Ok(Response::new(audited(
            &caller,
            Action::Resume,
            &job_id,
            resumed,
            |j| &j.job_id,
        )?))
    }

    async fn list_rejects(
        &self,
        request: Request<ListRejectsRequest>,
    ) -> Result<Response<ListRejectsResponse>, Status> {
        let r = request.into_inner();
        let (rejects, total) = self.gate.scheduler()?.rejects(&r.job_id, r.limit).await?;
        Ok(Response::new(ListRejectsResponse { rejects, total }))
    }

    async fn verify_job(
        &self,
        request: Request<VerifyJobRequest>,
    ) -> Result<Response<VerifyJobResponse>, Status> {
        let chunks = self
            .gate
            .scheduler()?
            .verify(&request.into_inner().job_id)
            .await?;
        Ok(Response::new(VerifyJobResponse { chunks }))
    }

    async fn repair_job(
        &self,
        request: Request<RepairJobRequest>,
    ) -> Result<Response<Job>, Status> {
        let caller = audit::caller(&request);
        let r = request.into_inner();
        let repaired = self.gate.scheduler()?.repair(&r.job_id, r.chunks).await;
        Ok(Response::new(audited(
            &caller,
            Action::Repair,
            &r.job_id,
            repaired,
            |j| &j.job_id,
        )?))
    }

    async fn list_history(
        &self,
        request: Request<ListHistoryRequest>,
    ) -> Result<Response<ListHistoryResponse>, Status> {
        let r = request.into_inner();
        let state = match JobState::try_from(r.state) {
            Ok(JobState::Unspecified) => None,
            Ok(s) => Some(s),
            Err(_) => {
                return Err(CoordinatorError::invalid(
                    "state",
                    Reason::InvalidValue,
                    format!(
                        "unknown job state {}: ask for RUNNING, SUCCEEDED, FAILED or CANCELLED",
                        r.state
                    ),
                )
                .into())
            }
        };
        let (entries, warnings) = self.gate.scheduler()?.history(r.limit, state).await;
        Ok(Response::new(ListHistoryResponse { entries, warnings }))
    }

    async fn collect_garbage(
        &self,
        request: Request<CollectGarbageRequest>,
    ) -> Result<Response<CollectGarbageResponse>, Status> {
        let caller = audit::caller(&request);
        let r = request.into_inner();
        let scheduler = self.gate.scheduler()?;
        let older_than = match (
            r.older_than_ms,
            scheduler.config().lifecycle.ledger_retention,
        ) {
            (0, Some(d)) => d,
            (0, None) => {
                let e = CoordinatorError::invalid(
                    "older_than_ms",
                    Reason::MissingField,
                    "this coordinator keeps ledger rows forever (FERRY_LEDGER_RETENTION=0): say how old a job's rows must be (ferry gc --older-than 30d)",
                );
                audit::record(&caller, Action::CollectGarbage, "", Err(&e.to_string()));
                return Err(e.into());
            }
            (ms, _) => std::time::Duration::from_millis(ms),
        };
        let resp = scheduler.collect_ledgers(older_than).await;
        audit::record(&caller, Action::CollectGarbage, "", Ok(()));
        Ok(Response::new(resp))
    }

    async fn plan_job(
        &self,
        request: Request<PlanJobRequest>,
    ) -> Result<Response<PlanJobResponse>, Status> {
        let spec = request.into_inner().spec.ok_or_else(|| {
            CoordinatorError::invalid("spec", Reason::MissingField, "the request has no job spec")
        })?;
        Ok(Response::new(self.gate.scheduler()?.plan_dry(spec).await?))
    }

    async fn cancel_job(
        &self,
        request: Request<CancelJobRequest>,
    ) -> Result<Response<Job>, Status> {
        let caller = audit::caller(&request);
        let job_id = request.into_inner().job_id;
        let cancelled = self.gate.scheduler()?.cancel(&job_id).await;
        Ok(Response::new(audited(
            &caller,
            Action::Cancel,
            &job_id,
            cancelled,
            |j| &j.job_id,
        )?))
    }
}

/// Writes the audit line of a job change and passes its outcome on; `job_of`
/// names the job from the answer (a submit learns its id only then).
fn audited<T>(
    caller: &crate::security::roles::Caller,
    action: Action,
    job: &str,
    outcome: Result<T, CoordinatorError>,
    job_of: impl Fn(&T) -> &String,
) -> Result<T, Status> {
    match outcome {
        Ok(answer) => {
            audit::record(caller, action, job_of(&answer), Ok(()));
            Ok(answer)
        }
        Err(e) => {
            audit::record(caller, action, job, Err(&e.to_string()));
            Err(e.into())
        }
    }
}

/// Sends the job now, then whenever it changes (at most every watch interval),
/// ending after the terminal state has been sent; events are numbered from 1.
/// Ends with UNAVAILABLE when this coordinator stops leading, so the client
/// moves to the new leader and re-opens the watch.
fn job_events(
    gate: Arc<Gate>,
    job_id: String,
    first: Job,
) -> impl Stream<Item = Result<JobEvent, Status>> + Send + 'static {
    let mut sequence = 0u64;
    job_states(gate, job_id, first).map(move |job| {
        job.map(|job| {
            sequence += 1;
            JobEvent {
                job: Some(job),
                sequence,
            }
        })
    })
}

/// Where a watch stands: the job as last sent, and when it was sent.
struct Watching {
    gate: Arc<Gate>,
    job_id: String,
    last: Job,
    /// `last` is still to be sent (the first event).
    send_last: bool,
    changes: Option<tokio::sync::watch::Receiver<u64>>,
    /// Signals a job's end (`Scheduler::subscribe_ends`).
    ends: Option<tokio::sync::watch::Receiver<u64>>,
    sent_at: Instant,
}

impl Watching {
    /// Waits for the scheduler to signal a change (re-checking now and then,
    /// since leadership may move), or a watch interval without a signal.
    async fn next_signal(&mut self) {
        match self.changes.as_mut() {
            Some(rx) => {
                if let Ok(Err(_)) = tokio::time::timeout(WATCH_IDLE, rx.changed()).await {
                    // this scheduler is gone: look again every interval
                    self.changes = None;
                }
            }
            None => tokio::time::sleep(WATCH_INTERVAL).await,
        }
    }

    /// Waits for some job's end; never returns once this scheduler is gone
    /// (the caller bounds the wait).
    async fn next_end(&mut self) {
        if let Some(rx) = self.ends.as_mut() {
            if rx.changed().await.is_ok() {
                return;
            }
            self.ends = None;
        }
        std::future::pending::<()>().await
    }

    /// The job as the scheduler now holds it.
    async fn current(&self) -> Result<Job, Status> {
        match self.gate.scheduler() {
            Ok(s) => s.job_summary(&self.job_id).await.map_err(Status::from),
            Err(e) => Err(Status::from(e)),
        }
    }
}

/// Whether `job` differs from `last` in what a watcher is shown.
fn shows_change(job: &Job, last: &Job) -> bool {
    job.state != last.state
        || job.rows_written != last.rows_written
        || job.chunks_succeeded != last.chunks_succeeded
        || job.chunks_total != last.chunks_total
}

fn is_terminal(job: &Job) -> bool {
    JobState::try_from(job.state).is_ok_and(|s| s.is_terminal())
}

/// The job now, then each change, ending after the terminal state. Progress
/// is sent at most once per watch interval; the terminal state as soon as
/// the scheduler signals it (also while progress waits out its interval),
/// so a client waiting on the job is not held back.
fn job_states(
    gate: Arc<Gate>,
    job_id: String,
    first: Job,
) -> impl Stream<Item = Result<Job, Status>> + Send + 'static {
    let changes = gate.scheduler().ok().map(|s| s.subscribe());
    let ends = gate.scheduler().ok().map(|s| s.subscribe_ends());
    let start = Watching {
        gate,
        job_id,
        last: first,
        send_last: true,
        changes,
        ends,
        sent_at: Instant::now(),
    };
    futures::stream::unfold(Some(start), |state| async move {
        let mut w = state?;
        if w.send_last {
            w.send_last = false;
            let last = w.last.clone();
            let next = (!is_terminal(&last)).then_some(w);
            return Some((Ok(last), next));
        }
        loop {
            w.next_signal().await;
            let mut job = match w.current().await {
                Ok(job) => job,
                Err(e) => return Some((Err(e), None)),
            };
            if !shows_change(&job, &w.last) {
                continue;
            }
            // progress waits out the interval, listening for job ends only
            // (rare, unlike progress): this job's, if it comes, goes at once
            let due = w.sent_at + WATCH_INTERVAL;
            while !is_terminal(&job) && Instant::now() < due {
                let _ = tokio::time::timeout_at(due.into(), w.next_end()).await;
                match w.current().await {
                    Ok(now) => job = now,
                    Err(e) => return Some((Err(e), None)),
                }
            }
            w.sent_at = Instant::now();
            w.last = job.clone();
            let next = (!is_terminal(&job)).then_some(w);
            return Some((Ok(job), next));
        }
    })
}

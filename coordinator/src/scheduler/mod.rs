//! The scheduler (the guide's ParallelProcessor): owns every job's chunks,
//! leases them to workers, renews leases on heartbeats, requeues expired ones,
//! and retries failed chunks with backoff.

mod budget_gate;
mod concurrency;
mod consistency;
mod dry_run;
mod grant;
mod leases;
mod ledger_gc;
mod lifecycle;
mod outcomes;
mod planning;
pub mod progress;
mod recovery;
mod resplit;
mod restart;
mod resume;
mod snapshot;
mod spec;
pub mod spec_limits;
mod state;
mod transitions;

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use ferry_common::config::JobDefaults;
use ferry_common::connections::ConnectionRegistry;
use ferry_common::proto::{self, ChunkState, JobRecord, JobSpec, JobState};
use ferry_common::timing::{Timings, PROGRESS_LOG_INTERVAL, RETENTION_SWEEP, SCHEDULER_TICK};
use tokio::sync::{Mutex, Notify};

use crate::error::CoordinatorError;
use crate::history::History;
use crate::store::StateStore;

pub use consistency::{plan_note, split_on_ctid};
pub use recovery::RecoverySummary;
pub use spec::resolve_spec;
pub(crate) use state::JobView;
use state::{now_ms, JobRuntime, State};
use transitions::{After, Transition};

/// Settings of one scheduler.
#[derive(Clone)]
pub struct SchedulerConfig {
    /// Defaults for job fields a spec leaves unset.
    pub defaults: JobDefaults,
    /// Named connections the planner may open.
    pub connections: ConnectionRegistry,
    /// Lease timings.
    pub timings: Timings,
    /// Schema of the ledger table in targets.
    pub ledger_schema: String,
    /// What happens to jobs as they start and end: history rows, retention.
    pub lifecycle: JobLifecycle,
}

/// What happens to jobs beyond running them; the default writes no history
/// and keeps finished jobs forever.
#[derive(Clone, Default)]
pub struct JobLifecycle {
    /// Where job history rows are written (None: no history).
    pub history: Option<Arc<History>>,
    /// How long a finished job stays in memory and the store (None: forever).
    pub retention: Option<Duration>,
    /// How long a job's ledger rows stay in its target after its last
    /// chunk committed, once this leader no longer holds the job (None:
    /// forever; `ledger_gc.rs`).
    pub ledger_retention: Option<Duration>,
    /// The connection budget leases and coordinator sessions take from
    /// (default: no limits).
    pub budget: Arc<crate::budget::Budget>,
}

/// The scheduler; cheap to share behind an `Arc`.
pub struct Scheduler {
    /// This scheduler, for work it spawns (history writes).
    me: Weak<Scheduler>,
    store: Arc<dyn StateStore>,
    config: SchedulerConfig,
    state: Mutex<State>,
    /// Woken when chunks become ready to lease.
    ready: Notify,
    /// Bumped whenever a job's progress or state changes (WatchJob follows it).
    changes: tokio::sync::watch::Sender<u64>,
    /// Bumped whenever a job reaches a terminal state (WatchJob sends it at once).
    ends: tokio::sync::watch::Sender<u64>,
    /// History rows being written in the background.
    history_pending: tokio::sync::watch::Sender<usize>,
    /// Source snapshots held for SNAPSHOT jobs (`snapshot.rs`).
    snapshots: snapshot::Holds,
    /// Set once AcquireChunk may no longer wait (`leases::close_long_polls`).
    polls_closed: std::sync::atomic::AtomicBool,
    /// When this scheduler (this term) began, ms since the Unix epoch.
    started_ms: i64,
}

impl Scheduler {
    /// When this scheduler (this leader's term) began, ms since the Unix
    /// epoch: a job created earlier was a previous leader's.
    pub fn started_ms(&self) -> i64 {
        self.started_ms
    }

    /// A scheduler over `store`, empty until `recover` or `submit`.
    pub fn new(store: Arc<dyn StateStore>, config: SchedulerConfig) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            store,
            config,
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            changes: tokio::sync::watch::channel(0).0,
            ends: tokio::sync::watch::Sender::new(0),
            history_pending: tokio::sync::watch::Sender::new(0),
            snapshots: snapshot::Holds::default(),
            polls_closed: std::sync::atomic::AtomicBool::new(false),
            started_ms: state::now_ms(),
        })
    }

    /// The scheduler's settings.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Runs the periodic work (lease expiry, backoff expiry, progress lines) until dropped.
    pub fn spawn_ticker(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(SCHEDULER_TICK);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut swept = Instant::now();
            let mut ledgers = ledger_gc::Schedule::new(Instant::now());
            loop {
                interval.tick().await;
                let Some(s) = weak.upgrade() else { return };
                if let Err(e) = s.tick().await {
                    tracing::warn!(error = %e, "scheduler tick failed");
                }
                if swept.elapsed() >= RETENTION_SWEEP {
                    swept = Instant::now();
                    s.retire_expired().await;
                }
                ledgers.poll(&s, Instant::now());
            }
        })
    }

    /// Submits a job: validates it, stores it (once per request id) and starts planning.
    pub async fn submit(
        self: &Arc<Self>,
        request_id: String,
        spec: JobSpec,
    ) -> Result<(String, bool), CoordinatorError> {
        self.submit_by(request_id, spec, String::new()).await
    }

    /// Like `submit`, recording who submitted the job (`JobRecord.submitted_by`:
    /// the caller's name in the tokens file; empty without authentication).
    pub async fn submit_by(
        self: &Arc<Self>,
        request_id: String,
        spec: JobSpec,
        submitted_by: String,
    ) -> Result<(String, bool), CoordinatorError> {
        let (job_id, created) = self
            .create(request_id, spec, JobState::Pending, submitted_by)
            .await?;
        if created {
            self.spawn_planning(job_id.clone());
        }
        Ok((job_id, created))
    }

    /// Submits a job whose chunks are already planned (benchmarks, tests,
    /// tools that split work themselves): no database is read; the job starts
    /// running at once.
    pub async fn submit_planned(
        self: &Arc<Self>,
        request_id: String,
        spec: JobSpec,
        plan: crate::planner::Plan,
    ) -> Result<String, CoordinatorError> {
        let (job_id, created) = self
            .create(request_id, spec, JobState::Planning, String::new())
            .await?;
        if created {
            self.start(&job_id, plan).await?;
        }
        Ok(job_id)
    }

    /// Validates and stores a new job (or finds the one stored under `request_id`).
    async fn create(
        &self,
        request_id: String,
        spec: JobSpec,
        state: JobState,
        submitted_by: String,
    ) -> Result<(String, bool), CoordinatorError> {
        let spec = resolve_spec(spec, &self.config.defaults, &self.config.connections)
            .map_err(CoordinatorError::InvalidArgument)?;
        budget_gate::check_spec(self.budget(), &spec).map_err(CoordinatorError::InvalidArgument)?;
        let (trace_parent, trace_context) = lifecycle::job_trace();
        let record = JobRecord {
            job_id: new_job_id(),
            request_id,
            spec: Some(spec),
            state: state as i32,
            created_at_ms: now_ms(),
            submitted_by,
            trace_parent,
            trace_context,
            ..Default::default()
        };
        let mut st = self.state.lock().await;
        let (stored, created) = self.store.create_job(&record).await?;
        if created {
            st.order.push(stored.job_id.clone());
            st.jobs
                .insert(stored.job_id.clone(), JobRuntime::new(stored.clone()));
            tracing::info!(job = %stored.job_id, table = %record.spec.as_ref().map(|s| s.table.as_str()).unwrap_or(""), "job submitted");
        }
        Ok((stored.job_id, created))
    }

    /// A receiver that changes whenever any job progresses or changes state.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// A receiver that changes whenever a job ends (succeeds, fails or is
    /// cancelled): rarer than `subscribe`'s, so a watcher may wait on it.
    pub fn subscribe_ends(&self) -> tokio::sync::watch::Receiver<u64> {
        self.ends.subscribe()
    }

    /// Tells watchers that something changed.
    pub(crate) fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// One job without its chunks (cheap, for progress); a job past its
    /// retention is answered from the history.
    pub async fn job_summary(&self, job_id: &str) -> Result<proto::Job, CoordinatorError> {
        let found = self
            .state
            .lock()
            .await
            .jobs
            .get(job_id)
            .map(|j| j.to_proto(false));
        match found {
            Some(job) => Ok(job),
            None => self.job_from_history(job_id).await,
        }
    }

    /// One job with its chunks; a job past its retention is answered from
    /// the history (without chunks).
    pub async fn get_job(&self, job_id: &str) -> Result<proto::Job, CoordinatorError> {
        let found = self
            .state
            .lock()
            .await
            .jobs
            .get(job_id)
            .map(|j| j.to_proto(true));
        match found {
            Some(job) => Ok(job),
            None => self.job_from_history(job_id).await,
        }
    }

    /// Jobs, newest first, without chunks.
    pub async fn list_jobs(&self, limit: usize) -> Vec<proto::Job> {
        let st = self.state.lock().await;
        let it = st
            .order
            .iter()
            .rev()
            .filter_map(|id| st.jobs.get(id))
            .map(|j| j.to_proto(false));
        if limit == 0 {
            it.collect()
        } else {
            it.take(limit).collect()
        }
    }

    /// Cancels a job: no chunk starts any more, chunks in flight are told to
    /// roll back at their next heartbeat. Waiting chunks are marked CANCELLED
    /// in bulk, without holding the lock across their writes.
    pub async fn cancel(&self, job_id: &str) -> Result<proto::Job, CoordinatorError> {
        let mut st = self.state.lock().await;
        let job = st
            .jobs
            .get_mut(job_id)
            .ok_or_else(|| CoordinatorError::JobNotFound(job_id.to_string()))?;
        if job.state().is_terminal() || job.retiring {
            return Ok(job.to_proto(false));
        }
        job.record.state = JobState::Cancelled as i32;
        job.record.error = "cancelled by request".into();
        job.record.finished_at_ms = now_ms();
        self.store.update_job(&job.record).await?;
        self.job_ended(job);
        job.ready.clear();
        job.delayed.clear();
        let mut transitions = Vec::new();
        for c in &job.chunks {
            let s = c.record.state;
            if s == ChunkState::Pending as i32 || s == ChunkState::RetryWait as i32 {
                let mut new = c.record.clone();
                new.state = ChunkState::Cancelled as i32;
                transitions.push(Transition {
                    job_id: job_id.to_string(),
                    n: c.record.chunk_no,
                    old: c.record.clone(),
                    version: c.version,
                    new,
                    after: After::Stay,
                });
            }
        }
        for t in &transitions {
            job.hold(t);
        }
        tracing::warn!(job = %job_id, in_flight = job.live.len(), waiting = transitions.len(), "job cancelled; chunks in flight roll back");
        self.changed();
        let (st, result) = self.write_transitions(st, transitions).await;
        result?;
        st.jobs
            .get(job_id)
            .map(|j| j.to_proto(false))
            .ok_or_else(|| CoordinatorError::JobNotFound(job_id.to_string()))
    }

    async fn tick(self: &Arc<Self>) -> Result<(), CoordinatorError> {
        let now = Instant::now();
        self.expire_workers(now).await?;
        let mut st = self.state.lock().await;
        // the counts are kept as leases start and end; a full count checks them
        let off = budget_gate::sync(self.budget(), &st, now);
        if off > 0 {
            tracing::warn!(
                chunks = off,
                "connection budget disagreed with the leases in flight; recounted"
            );
        }
        self.resolve_budget();
        let now_unix = now_ms();
        let mut woke = false;
        for job in st.jobs.values_mut() {
            if job.state() != JobState::Running {
                continue;
            }
            // chunks whose retry is due go ahead of the queue, in chunk
            // order: they are already late, and queued behind every chunk
            // not yet run they would make the job's tail
            let mut due = Vec::new();
            let mut i = 0;
            while i < job.delayed.len() {
                if job.delayed[i].0 <= now_unix {
                    due.push(job.delayed.swap_remove(i).1);
                } else {
                    i += 1;
                }
            }
            due.sort_unstable_by(|a, b| b.cmp(a));
            for n in due {
                job.ready.push_front(n);
                woke = true;
            }
            let due = job
                .last_progress_log
                .is_none_or(|t| now - t >= PROGRESS_LOG_INTERVAL);
            if due {
                if let Some(started) = job.started {
                    progress::log_progress(
                        &job.record.job_id,
                        job.succeeded(),
                        job.chunks.len() as u32,
                        job.rows_so_far(),
                        now - started,
                    );
                    job.last_progress_log = Some(now);
                }
            }
        }
        drop(st);
        if woke {
            self.ready.notify_waiters();
            self.changed();
        }
        Ok(())
    }
}

fn new_job_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("j{}", &id[..11])
}

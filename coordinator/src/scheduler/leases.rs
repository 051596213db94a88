//! Worker registration, heartbeats and chunk leases: a chunk is leased by one
//! store write whose revision is its fencing token; a worker that stops
//! heartbeating loses its chunks once its lease runs out.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use ferry_common::errors::ErrorClass;
use ferry_common::plan::OLDEST_WORKER_PROTOCOL;
use ferry_common::proto::{
    ChunkAssignment, ChunkRef, ChunkState, HeldChunk, JobState, RegisterWorkerResponse,
};
use ferry_common::timing::{ACQUIRE_LONG_POLL, RPC_TIMEOUT};

use super::outcomes::failure_transition;
use super::state::{HeldReport, LiveChunk, State, WorkerEntry};
use super::transitions::Transition;
use super::Scheduler;
use crate::error::CoordinatorError;

impl Scheduler {
    /// Registers a worker (or re-registers one that kept its id) under a
    /// fresh lease. A worker speaking a protocol older than
    /// `OLDEST_WORKER_PROTOCOL` is refused: it could not read the chunks this
    /// coordinator leases.
    pub async fn register_worker(
        &self,
        worker_id: String,
        hostname: String,
        concurrency: u32,
        protocol: u32,
    ) -> Result<RegisterWorkerResponse, CoordinatorError> {
        if protocol < OLDEST_WORKER_PROTOCOL {
            return Err(CoordinatorError::OutdatedWorker {
                hostname,
                protocol,
                needed: OLDEST_WORKER_PROTOCOL,
            });
        }
        let id = if worker_id.is_empty() {
            let u = uuid::Uuid::new_v4().simple().to_string();
            format!("w{}", &u[..11])
        } else {
            worker_id
        };
        let ttl = self.config.timings.lease_ttl;
        self.store
            .register_worker(&id, ttl.as_millis() as u64)
            .await?;
        let mut st = self.state.lock().await;
        let fresh = st
            .workers
            .insert(
                id.clone(),
                WorkerEntry {
                    deadline: Instant::now() + ttl,
                    hostname: hostname.clone(),
                    concurrency,
                    protocol,
                    held: None,
                },
            )
            .is_none();
        if fresh {
            tracing::info!(worker = %id, host = %hostname, "worker registered");
        }
        Ok(RegisterWorkerResponse {
            worker_id: id,
            lease_ttl_ms: ttl.as_millis() as u64,
            heartbeat_interval_ms: self.config.timings.heartbeat_interval().as_millis() as u64,
            // the gRPC adapter issues the session and fills it in
            session_secret: String::new(),
            pool_idle_timeout_ms: self
                .budget()
                .pool_idle()
                .map_or(0, |d| d.as_millis() as u64),
        })
    }

    /// Ends the session of a worker that stopped gracefully (its drain is
    /// over): it is dropped now and its store lease revoked, so it is never
    /// reported later as a lease that ran out. A chunk still leased to it
    /// was never received (a lease response lost in a takeover or with a
    /// dropped call: a drain hands back what it holds): it is leased again
    /// at once, without counting a retry, instead of when its lease runs out.
    pub async fn leave(&self, worker_id: &str) -> Result<(), CoordinatorError> {
        let mut st = self.state.lock().await;
        let Some(w) = st.workers.remove(worker_id) else {
            return Err(CoordinatorError::UnknownWorker(worker_id.to_string()));
        };
        tracing::info!(worker = %worker_id, host = %w.hostname, "worker left (stopped gracefully); its session ended");
        let lost = leased_to(&st, worker_id);
        if !lost.is_empty() {
            tracing::warn!(worker = %worker_id, chunks = lost.len(), "worker left without chunks leased to it (lease responses it never received); leasing them again");
        }
        let transitions = hold_failures(&mut st, self.budget(), lost, |_, n| {
            (
                ErrorClass::Transient,
                format!("worker {worker_id} left without chunk {n} (its lease response was lost)"),
                true,
            )
        });
        let (st, result) = self.write_transitions(st, transitions).await;
        drop(st);
        self.store.remove_worker(worker_id).await?;
        self.ready.notify_waiters();
        self.changed();
        result
    }

    /// Renews a worker's lease, records its progress, and returns the held
    /// chunks it must abort (cancelled job, or a token no longer current).
    /// What a full heartbeat (not `partial`) lists is kept: the next tick
    /// leases again the chunks the worker should hold but does not list.
    pub async fn heartbeat(
        &self,
        worker_id: &str,
        held: Vec<HeldChunk>,
        partial: bool,
    ) -> Result<Vec<ChunkRef>, CoordinatorError> {
        {
            let st = self.state.lock().await;
            if !st.workers.contains_key(worker_id) {
                return Err(CoordinatorError::UnknownWorker(worker_id.to_string()));
            }
        }
        if !self.store.keepalive_worker(worker_id).await? {
            self.state.lock().await.workers.remove(worker_id);
            return Err(CoordinatorError::UnknownWorker(worker_id.to_string()));
        }
        let mut st = self.state.lock().await;
        let ttl = self.config.timings.lease_ttl;
        let now = Instant::now();
        let report = (!partial).then(|| HeldReport {
            at: now,
            chunks: held
                .iter()
                .filter_map(|h| h.chunk.as_ref())
                .map(|r| (r.job_id.clone(), r.chunk_no))
                .collect(),
        });
        match st.workers.get_mut(worker_id) {
            Some(w) => {
                w.deadline = now + ttl;
                if report.is_some() {
                    w.held = report;
                }
            }
            None => return Err(CoordinatorError::UnknownWorker(worker_id.to_string())),
        }
        let mut abort = Vec::new();
        for h in held {
            let Some(r) = h.chunk else { continue };
            let current = st.jobs.get_mut(&r.job_id).and_then(|job| {
                let running = job.state() == JobState::Running;
                let c = job.chunk(r.chunk_no)?;
                let ok = running
                    && c.record.state == ChunkState::Leased as i32
                    && c.record.fencing_token == r.fencing_token
                    && c.record.worker_id == worker_id;
                if ok {
                    let live = job.live.entry(r.chunk_no).or_insert(LiveChunk {
                        rows: 0,
                        leased_at: Instant::now(),
                    });
                    live.rows = h.rows_so_far;
                }
                Some(ok)
            });
            if current != Some(true) {
                abort.push(r);
            }
        }
        drop(st);
        self.changed();
        Ok(abort)
    }

    /// Leases up to `slots` chunks to a worker, waiting up to the long-poll
    /// time when none is ready. Runs to the end once it has claimed a chunk:
    /// a caller that may be cancelled runs it in a task of its own (the gRPC
    /// API does), or a chunk could stay claimed with its write unapplied.
    pub async fn acquire(
        self: &Arc<Self>,
        worker_id: &str,
        slots: u32,
    ) -> Result<Vec<ChunkAssignment>, CoordinatorError> {
        let deadline = tokio::time::Instant::now() + ACQUIRE_LONG_POLL;
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let out = self.lease_now(worker_id, slots.max(1)).await?;
            if !out.is_empty() || self.polls_closed.load(Ordering::SeqCst) {
                return Ok(out);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    /// Ends every AcquireChunk long poll now, and lets none wait from now
    /// on (a poll still leases what is ready): for a coordinator that has
    /// nothing more to lease, `ferry local` once its one job has ended, so
    /// its workers stop at once instead of when their poll times out.
    pub fn close_long_polls(&self) {
        self.polls_closed.store(true, Ordering::SeqCst);
        self.ready.notify_waiters();
    }

    /// Drops workers whose lease ran out and requeues their chunks; also
    /// requeues chunks adopted after a takeover that no live worker claimed,
    /// and chunks a worker's last full heartbeat did not list although their
    /// lease was older than the grace time then (the lease response never
    /// reached it: say, the leader died while answering). One pass over the
    /// chunks in flight, whatever the number of workers; the chunks are
    /// written in bulk, without holding the lock (a worker may have held
    /// many: see `transitions`).
    pub(crate) async fn expire_workers(
        self: &Arc<Self>,
        now: Instant,
    ) -> Result<(), CoordinatorError> {
        let ttl = self.config.timings.lease_ttl;
        let grace = self.config.timings.heartbeat_interval() * 2 + RPC_TIMEOUT;
        let mut st = self.state.lock().await;
        let expired: HashSet<String> = st
            .workers
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            if let Some(w) = st.workers.remove(id) {
                tracing::warn!(worker = %id, host = %w.hostname, "worker lease expired; its chunks will be leased again");
            }
        }
        let mut lost = Vec::new();
        let mut why = std::collections::HashMap::new();
        for (job_id, job) in st.jobs.iter() {
            for (n, live) in &job.live {
                let Some(c) = job.chunk(*n) else { continue };
                // a write still in flight (token CLAIMED) is not lost yet
                if !c.leased_out() {
                    continue;
                }
                let worker = &c.record.worker_id;
                let owner = st.workers.get(worker);
                // its worker expired now, or it was adopted after a takeover
                // and no live worker claimed it within the lease
                let reason = if expired.contains(worker)
                    || (owner.is_none() && live.leased_at + ttl <= now)
                {
                    Lost::Expired
                } else if owner
                    .and_then(|w| w.held.as_ref())
                    .is_some_and(|h| h.omits(job_id, *n, live.leased_at, grace))
                {
                    Lost::NotHeld
                } else {
                    continue;
                };
                lost.push((job_id.clone(), *n, c.record.fencing_token));
                why.insert((job_id.clone(), *n), (worker.clone(), reason));
            }
        }
        if !lost.is_empty() {
            crate::metrics::events()
                .lease_expiries
                .add(lost.len() as u64, &[]);
        }
        let transitions = hold_failures(&mut st, self.budget(), lost, |job_id, n| {
            let (worker, reason) = why
                .get(&(job_id.to_string(), n))
                .map(|(w, r)| (w.as_str(), *r))
                .unwrap_or(("?", Lost::Expired));
            match reason {
                Lost::Expired => (
                    ErrorClass::Transient,
                    format!("worker {worker} stopped heartbeating (lease expired)"),
                    false,
                ),
                Lost::NotHeld => {
                    tracing::warn!(job = %job_id, chunk = n, worker = %worker, "leased chunk not held by its worker; leasing it again");
                    (
                        ErrorClass::Transient,
                        format!(
                            "worker {worker} does not hold chunk {n} (its lease response was lost)"
                        ),
                        true,
                    )
                }
            }
        });
        let (st, result) = self.write_transitions(st, transitions).await;
        drop(st);
        for id in &expired {
            self.store.remove_worker(id).await?;
        }
        result
    }
}

/// Why the tick takes a chunk back from its worker.
#[derive(Debug, Clone, Copy)]
enum Lost {
    /// The worker's lease ran out (or no live worker holds an adopted chunk).
    Expired,
    /// The worker's last full heartbeat did not list it.
    NotHeld,
}

/// The `(job, chunk, token)` of every chunk leased to `worker` whose write
/// is not in flight (token CLAIMED: this leader's own write decides it).
fn leased_to(st: &State, worker: &str) -> Vec<(String, u32, u64)> {
    let mut out = Vec::new();
    for (job_id, job) in &st.jobs {
        for n in job.live.keys() {
            let Some(c) = job.chunk(*n) else { continue };
            if c.leased_out() && c.record.worker_id == worker {
                out.push((job_id.clone(), *n, c.record.fencing_token));
            }
        }
    }
    out
}

/// Plans and holds the failure of each `(job, chunk, token)` in `lost`, with
/// the class, message and aborted flag `why` gives; returns the transitions
/// to write.
fn hold_failures(
    st: &mut State,
    budget: &crate::budget::Budget,
    lost: Vec<(String, u32, u64)>,
    why: impl Fn(&str, u32) -> (ErrorClass, String, bool),
) -> Vec<Transition> {
    let mut out = Vec::with_capacity(lost.len());
    for (job_id, n, token) in lost {
        let Some(job) = st.jobs.get_mut(&job_id) else {
            continue;
        };
        let (class, message, aborted) = why(&job_id, n);
        if let Some(t) = failure_transition(job, n, token, class, &message, aborted) {
            super::budget_gate::release(budget, &job_id, n);
            job.hold(&t);
            out.push(t);
        }
    }
    out
}

impl Scheduler {
    /// An assignment key vanished (the etcd lease of a worker an earlier
    /// version registered expired): requeues the chunk if that attempt still
    /// holds it.
    pub async fn assignment_lost(
        self: &Arc<Self>,
        job_id: &str,
        chunk_no: u32,
        worker: &str,
        attempt: u32,
    ) {
        let mut st = self.state.lock().await;
        let token = st
            .jobs
            .get(job_id)
            .and_then(|j| j.chunk(chunk_no))
            .and_then(|c| {
                // CLAIMED: this leader's own write of the chunk is in flight
                // (a completion deletes the assignment too); it decides
                let held =
                    c.leased_out() && c.record.worker_id == worker && c.record.attempt == attempt;
                held.then_some(c.record.fencing_token)
            });
        let Some(token) = token else { return };
        crate::metrics::events().lease_expiries.add(1, &[]);
        let msg = format!("worker {worker} lease expired in etcd");
        let class = ErrorClass::Transient;
        if let Err(e) = self
            .record_failure(&mut st, job_id, chunk_no, token, class, &msg, false)
            .await
        {
            tracing::warn!(error = %e, "cannot requeue a chunk whose assignment vanished");
        }
        drop(st);
        self.ready.notify_waiters();
        self.changed();
    }

    /// After a re-list: chunks LEASED in memory whose assignment key is gone
    /// and whose worker is not alive here are requeued.
    pub async fn reconcile_assignments(
        self: &Arc<Self>,
        live: &std::collections::HashSet<(String, u32)>,
    ) {
        let st = self.state.lock().await;
        let mut lost = Vec::new();
        for (job_id, job) in &st.jobs {
            for c in &job.chunks {
                let key = (job_id.clone(), c.record.chunk_no);
                if c.leased_out()
                    && !live.contains(&key)
                    && !st.workers.contains_key(&c.record.worker_id)
                {
                    lost.push((key, c.record.worker_id.clone(), c.record.attempt));
                }
            }
        }
        drop(st);
        for ((job, n), worker, attempt) in lost {
            self.assignment_lost(&job, n, &worker, attempt).await;
        }
    }
}

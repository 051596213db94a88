//! Granting leases. Ready chunks are claimed in memory (LEASED with the
//! token `CLAIMED`, which no report carries), written to the store, then
//! applied with the write's revision as their fencing token, or put back in
//! the queue when the write failed. With a store whose writes wait on the
//! network (etcd) the state lock is released during the write, so concurrent
//! leases reach the store together; with one that does not (memory) the lock
//! is simply kept.

use std::time::Instant;

use ferry_common::plan::SNAPSHOT_WORKER_PROTOCOL;
use ferry_common::proto::{ChunkAssignment, ChunkRecord, ChunkRef, ChunkState, JobState};

use super::budget_gate;
use super::state::{JobRuntime, LiveChunk, State, CLAIMED};
use super::Scheduler;
use crate::budget::Budget;
use crate::error::CoordinatorError;
use crate::store::StoreError;

/// A chunk claimed for a lease whose store write has not been applied yet.
pub(super) struct Claim {
    job_id: String,
    n: u32,
    /// The LEASED record being written (token `CLAIMED` until applied).
    record: ChunkRecord,
    /// What to restore when the write fails.
    old_record: ChunkRecord,
    old_version: u64,
}

/// Takes up to `slots` ready chunks for `worker_id` and marks them LEASED in
/// memory with the token `CLAIMED` until their write is applied; a chunk
/// whose connections the budget cannot give stays first in its queue.
pub(super) fn claim_ready(
    st: &mut State,
    budget: &Budget,
    worker_id: &str,
    slots: u32,
) -> Vec<Claim> {
    let mut out = Vec::new();
    let now = Instant::now();
    // a worker of an earlier version reads outside the job's snapshot
    let protocol = st.workers.get(worker_id).map_or(0, |w| w.protocol);
    let outside_snapshot = protocol != 0 && protocol < SNAPSHOT_WORKER_PROTOCOL;
    let State { jobs, order, .. } = st;
    for job_id in order.iter() {
        let Some(job) = jobs.get_mut(job_id) else {
            continue;
        };
        if job.state() != JobState::Running || job.snapshot_pending {
            continue;
        }
        let limit = job.in_flight_limit();
        while (out.len() as u32) < slots && (job.live.len() as u32) < limit {
            let Some(n) = job.ready.pop_front() else {
                break;
            };
            let Some(c) = job.chunk(n) else { continue };
            let ready = c.record.state == ChunkState::Pending as i32
                || c.record.state == ChunkState::RetryWait as i32;
            if !ready {
                continue;
            }
            if !budget_gate::admit(budget, job, n, worker_id, now) {
                job.ready.push_front(n);
                break;
            }
            if outside_snapshot {
                mark_read_outside_snapshot(job, worker_id, protocol, n);
            }
            let Some(c) = job.chunk(n) else { continue };
            let old_record = c.record.clone();
            let old_version = c.version;
            let mut rec = old_record.clone();
            rec.state = ChunkState::Leased as i32;
            rec.attempt += 1;
            rec.worker_id = worker_id.to_string();
            rec.retry_at_ms = 0;
            rec.fencing_token = CLAIMED;
            job.set_chunk(n, rec.clone(), old_version);
            job.live.insert(
                n,
                LiveChunk {
                    rows: 0,
                    leased_at: Instant::now(),
                },
            );
            let in_flight = job.live.len() as u32;
            if let Some(c) = job.concurrency.as_mut() {
                c.leased(n, in_flight);
            }
            out.push(Claim {
                job_id: job_id.clone(),
                n,
                record: rec,
                old_record,
                old_version,
            });
        }
        if out.len() as u32 >= slots {
            break;
        }
    }
    out
}

/// Records that chunk `n` of a SNAPSHOT job goes to a worker of protocol
/// `protocol`, which reads it as the source is now: the job is no longer of
/// one instant (said once, in a log line and `consistency_lost`).
fn mark_read_outside_snapshot(job: &mut JobRuntime, worker_id: &str, protocol: u32, n: u32) {
    if job.record.snapshot_id.is_empty() || !job.record.consistency_lost.is_empty() {
        return;
    }
    let why = format!(
        "worker {worker_id} speaks worker protocol {protocol} (an earlier version, without snapshots) and read chunk {n} outside the job's snapshot; upgrade every worker to keep SNAPSHOT jobs consistent"
    );
    tracing::warn!(job = %job.record.job_id, worker = %worker_id, chunk = n, "consistency lost: {why}");
    job.record.consistency_lost = why;
}

impl Scheduler {
    /// Leases up to `slots` ready chunks to a registered worker without
    /// waiting for more to become ready; empty when none is.
    ///
    /// Once it has claimed a chunk it must run to the end (see `acquire`).
    pub(super) async fn lease_now(
        &self,
        worker_id: &str,
        slots: u32,
    ) -> Result<Vec<ChunkAssignment>, CoordinatorError> {
        let mut st = self.state.lock().await;
        if !st.workers.contains_key(worker_id) {
            return Err(CoordinatorError::UnknownWorker(worker_id.to_string()));
        }
        let claims = claim_ready(&mut st, self.budget(), worker_id, slots);
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        if !self.store.writes_wait() {
            let mut written = Vec::with_capacity(claims.len());
            for c in &claims {
                written.push(self.store.lease_chunk(&c.record, c.old_version).await);
            }
            return self.apply_leases(&mut st, claims, written);
        }
        drop(st);
        let written = self.write_leases(&claims).await;
        let mut st = self.state.lock().await;
        self.apply_leases(&mut st, claims, written)
    }

    /// Leases up to `slots` ready chunks to a worker that has just reported
    /// one (CompleteChunk's `want_next`): the same claim, write and fencing
    /// token as `acquire`, but no waiting when none is ready. A failure is
    /// logged and answered with no chunk: the report it follows stands, and
    /// the worker asks again with AcquireChunk.
    pub async fn lease_next(&self, worker_id: &str, slots: u32) -> Vec<ChunkAssignment> {
        match self.lease_now(worker_id, slots).await {
            Ok(out) => out,
            Err(e @ CoordinatorError::UnknownWorker(_)) => {
                // it learns to register again from its next AcquireChunk
                tracing::debug!(worker = %worker_id, error = %e, "no next chunk for an unknown worker");
                Vec::new()
            }
            Err(e) => {
                tracing::warn!(worker = %worker_id, error = %e, "cannot lease the next chunk with a completion");
                Vec::new()
            }
        }
    }

    /// Writes claimed leases (concurrently, so a group-committing store can
    /// put them in one transaction with other writes).
    pub(super) async fn write_leases(&self, claims: &[Claim]) -> Vec<Result<u64, StoreError>> {
        futures::future::join_all(
            claims
                .iter()
                .map(|c| self.store.lease_chunk(&c.record, c.old_version)),
        )
        .await
    }

    /// Applies the outcome of claimed leases' writes: a written lease gets its
    /// token, a failed one goes back to the front of the queue. Fails only when
    /// no lease was written.
    pub(super) fn apply_leases(
        &self,
        st: &mut State,
        claims: Vec<Claim>,
        written: Vec<Result<u64, StoreError>>,
    ) -> Result<Vec<ChunkAssignment>, CoordinatorError> {
        let mut out = Vec::with_capacity(claims.len());
        let mut failed = None;
        for (c, w) in claims.into_iter().zip(written) {
            let Some(job) = st.jobs.get_mut(&c.job_id) else {
                continue;
            };
            match w {
                Ok(token) => {
                    if !job.first_leased {
                        job.first_leased = true;
                        let waited = super::state::now_ms() - job.record.created_at_ms;
                        crate::metrics::events()
                            .first_lease
                            .record(waited.max(0) as f64 / 1000.0, &[]);
                    }
                    let mut rec = c.record;
                    rec.fencing_token = token;
                    out.push(self.assignment(job, &c.job_id, c.n, &rec));
                    job.set_chunk(c.n, rec, token);
                }
                Err(e) => {
                    job.set_chunk(c.n, c.old_record, c.old_version);
                    job.live.remove(&c.n);
                    budget_gate::release(self.budget(), &c.job_id, c.n);
                    job.ready.push_front(c.n);
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) if out.is_empty() => {
                self.ready.notify_waiters();
                Err(e.into())
            }
            Some(_) => {
                self.ready.notify_waiters();
                Ok(out)
            }
            None => Ok(out),
        }
    }

    /// What a worker needs to copy chunk `n` of `job` under `rec`'s token:
    /// typed names, key and bounds, from which the worker builds its SQL.
    fn assignment(
        &self,
        job: &JobRuntime,
        job_id: &str,
        n: u32,
        rec: &ChunkRecord,
    ) -> ChunkAssignment {
        let spec = job.record.spec.clone().unwrap_or_default();
        ChunkAssignment {
            chunk: Some(ChunkRef {
                job_id: job_id.to_string(),
                chunk_no: n,
                fencing_token: rec.fencing_token,
            }),
            attempt: rec.attempt,
            source: spec.source,
            target: spec.target,
            // the planner's query (with its split column) when it wrote one
            query: if job.record.source_query.is_empty() {
                crate::planner::bare_query(&spec.query).to_string()
            } else {
                job.record.source_query.clone()
            },
            columns: job.record.columns.clone(),
            key: job.record.key.clone(),
            bounds: rec.bounds.clone(),
            table: job
                .record
                .load
                .clone()
                .or_else(|| job.record.target.clone()),
            mode: spec.mode,
            upsert_key: job.record.upsert_key.clone(),
            repair: rec.repair,
            source_bitmap_scan: job.record.source_bitmap_scan,
            ledger_schema: self.config.ledger_schema.clone(),
            chunks_total: job.chunks.len() as u32,
            trace_context: job.record.trace_context.clone(),
            snapshot: job.record.snapshot_id.clone(),
        }
    }
}

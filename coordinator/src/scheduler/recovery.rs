//! Takeover: a new leader rebuilds its view from the store. Chunks in flight
//! get a fresh deadline (unknown is not dead): their workers re-attach with
//! their fencing tokens at the next heartbeat, or the chunks are leased again
//! after a lease time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_common::plan::{OLDEST_STORE_FORMAT, STORE_FORMAT};
use ferry_common::proto::{ChunkState, JobState};

use super::state::{now_ms, ChunkRt, JobRuntime, LiveChunk, WorkerEntry};
use super::Scheduler;
use crate::store::Snapshot;

/// What a takeover found.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecoverySummary {
    /// Jobs loaded.
    pub jobs: usize,
    /// Jobs still running.
    pub running: usize,
    /// Chunks in flight, given a fresh deadline.
    pub in_flight: usize,
}

impl Scheduler {
    /// Rebuilds jobs, chunks and workers from a store snapshot; restarts
    /// planning for jobs that were not planned yet.
    pub async fn recover(self: &Arc<Self>, snapshot: Snapshot) -> RecoverySummary {
        let now = Instant::now();
        let now_unix = now_ms();
        let ttl = self.config.timings.lease_ttl;
        let mut summary = RecoverySummary::default();
        let mut replan = Vec::new();
        let mut legacy = Vec::new();
        let mut damaged = Vec::new();
        let mut st = self.state.lock().await;
        let adopted = snapshot.workers.len();
        for id in snapshot.workers {
            st.workers.insert(
                id,
                WorkerEntry {
                    deadline: now + ttl,
                    hostname: "(before takeover)".into(),
                    concurrency: 0,
                    protocol: 0,
                    held: None,
                },
            );
        }
        let mut jobs = snapshot.jobs;
        jobs.sort_by_key(|(j, _)| j.created_at_ms);
        for (record, chunks) in jobs {
            let mut job = JobRuntime::new(record);
            let total = job.record.chunks_total as usize;
            let state = job.state();
            summary.jobs += 1;
            if job.record.format > STORE_FORMAT {
                // written by a newer Ferry: never guess at it, never write it
                tracing::error!(job = %job.record.job_id, format = job.record.format, "job stored by a newer Ferry (store format {}); this version reads formats {OLDEST_STORE_FORMAT} to {STORE_FORMAT} and leaves it alone: run the newer coordinator", job.record.format);
                continue;
            }
            if matches!(state, JobState::Pending | JobState::Planning) {
                replan.push(job.record.job_id.clone());
            } else if job.record.format < OLDEST_STORE_FORMAT {
                // planned by a version that stored SQL text: never guess at it
                if !state.is_terminal() {
                    legacy.push(job.record.job_id.clone());
                }
            } else {
                job.chunks = chunks
                    .into_iter()
                    .filter(|c| (c.record.chunk_no as usize) <= total && c.record.chunk_no > 0)
                    .map(|c| {
                        let mut record = c.record;
                        if record.state == ChunkState::Leased as i32 {
                            // the lease write's revision is the token
                            record.fencing_token = c.version;
                        }
                        ChunkRt {
                            record,
                            version: c.version,
                        }
                    })
                    .collect();
                job.chunks.sort_by_key(|c| c.record.chunk_no);
                job.recount();
                let numbered = job
                    .chunks
                    .iter()
                    .enumerate()
                    .all(|(i, c)| c.record.chunk_no as usize == i + 1);
                if (job.chunks.len() != total || !numbered) && !state.is_terminal() {
                    // never run (or finish) a job whose stored plan lost chunks
                    damaged.push((job.record.job_id.clone(), job.chunks.len()));
                    job.chunks.clear();
                    job.recount();
                    st.order.push(job.record.job_id.clone());
                    st.jobs.insert(job.record.job_id.clone(), job);
                    continue;
                }
                if state == JobState::Running {
                    summary.running += 1;
                    // a chunk may have been leased before: the first lease is not measured again
                    job.first_leased = true;
                    let elapsed =
                        Duration::from_millis((now_unix - job.record.started_at_ms).max(0) as u64);
                    job.started = Some(now.checked_sub(elapsed).unwrap_or(now));
                    for c in &job.chunks {
                        let n = c.record.chunk_no;
                        match ChunkState::try_from(c.record.state) {
                            Ok(ChunkState::Pending) => job.ready.push_back(n),
                            Ok(ChunkState::RetryWait) => {
                                job.delayed.push((c.record.retry_at_ms, n))
                            }
                            Ok(ChunkState::Leased) => {
                                job.live.insert(
                                    n,
                                    LiveChunk {
                                        rows: 0,
                                        leased_at: now,
                                    },
                                );
                                summary.in_flight += 1;
                            }
                            _ => {}
                        }
                    }
                } else {
                    // a terminal job may still hear from workers that were mid-chunk
                    for c in &job.chunks {
                        if c.record.state == ChunkState::Leased as i32 {
                            job.live.insert(
                                c.record.chunk_no,
                                LiveChunk {
                                    rows: 0,
                                    leased_at: now,
                                },
                            );
                        }
                    }
                }
            }
            st.order.push(job.record.job_id.clone());
            st.jobs.insert(job.record.job_id.clone(), job);
        }
        for id in legacy {
            let Some(job) = st.jobs.get_mut(&id) else {
                continue;
            };
            let error = format!(
                "job {id} was planned by an older Ferry (store format {}, SQL text); this version (formats {OLDEST_STORE_FORMAT} to {STORE_FORMAT}, typed plans) cannot continue it: finish it with the older coordinator, or submit it again (chunks already landed are not known to the new job)",
                job.record.format
            );
            if let Err(e) = self.fail_job(job, error).await {
                tracing::warn!(job = %id, error = %e, "cannot mark a job of an older format failed");
            }
        }
        for (id, found) in damaged {
            let Some(job) = st.jobs.get_mut(&id) else {
                continue;
            };
            let error = format!(
                "job {id}'s plan in the state store holds {found} of its {} chunks (records were lost); it is not run further: check the store, then submit it again",
                job.record.chunks_total
            );
            if let Err(e) = self.fail_job(job, error).await {
                tracing::warn!(job = %id, error = %e, "cannot mark a job with lost chunk records failed");
            }
        }
        let running: Vec<String> = st
            .jobs
            .iter()
            .filter(|(_, j)| j.state() == JobState::Running)
            .map(|(id, _)| id.clone())
            .collect();
        // rows the previous leader may not have written: running jobs say
        // RUNNING, finished ones their end (idempotent upserts)
        for job in st.jobs.values() {
            let state = job.state();
            if state == JobState::Running
                || (state.is_terminal() && job.record.history_run < job.record.runs.max(1))
            {
                self.adopt_history(job);
            }
        }
        for id in running {
            // a job whose chunks all landed before the takeover (replace: not yet swapped) ends now
            if let Err(e) = self.maybe_finish(&mut st, &id).await {
                tracing::warn!(job = %id, error = %e, "cannot finish a recovered job");
            }
        }
        // the chunks the previous leader leased count from now on
        super::budget_gate::sync(self.budget(), &st, now);
        let snapshots = super::snapshot::recovered_jobs(&mut st);
        drop(st);
        for id in snapshots {
            let why = "the coordinator holding the job's source snapshot stopped (a new leader took over)";
            tokio::spawn(Arc::clone(self).replace_snapshot(id, why.to_string()));
        }
        for id in replan {
            self.spawn_planning(id);
        }
        if adopted > 0 {
            tokio::spawn(Arc::clone(self).renew_adopted(adopted));
        }
        self.ready.notify_waiters();
        summary
    }

    /// Renews, once, the stored registration of every worker the previous
    /// leader knew. Only that leader renewed them; a worker still finding the
    /// new leader (its connection to the dead one must fail first) would
    /// otherwise lose its registration, and its chunks in flight, in the
    /// seconds a takeover takes. A worker that is really gone expires one
    /// lease time later, as its in-memory entry does.
    async fn renew_adopted(self: Arc<Self>, workers: usize) {
        match self.store.renew_workers().await {
            Ok(renewed) => tracing::info!(
                workers,
                renewed,
                "renewed the leases of the workers the previous leader knew"
            ),
            Err(e) => tracing::warn!(
                workers,
                error = %e,
                "cannot renew the leases of the workers the previous leader knew now; the store retries"
            ),
        }
    }

    /// Stops this term's work: wakes long-polls so they return.
    pub fn shutdown(&self) {
        self.snapshots.close_all();
        self.ready.notify_waiters();
    }
}

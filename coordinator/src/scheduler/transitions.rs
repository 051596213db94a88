//! Chunk state changes that touch many chunks at once (cancel, resume,
//! repair, a worker's chunks after its lease expired) are written to the
//! store without holding the scheduler's lock across one write per chunk:
//! heartbeats and leases go on meanwhile, and a store that group-commits
//! (etcd) carries the writes in a few large transactions.
//!
//! Memory shows a chunk's new state at once, with its old store version, and
//! the job counts the writes in flight (`JobRuntime::writing`); what follows
//! from the new state (queueing it, failing the job) waits until the write
//! is applied. Nothing else writes such a chunk meanwhile: it is in no queue,
//! a report with its old token no longer matches it, and resume and repair
//! refuse a job with writes in flight.

use ferry_common::proto::ChunkRecord;
use tokio::sync::MutexGuard;

use super::state::{JobRuntime, State};
use super::Scheduler;
use crate::error::CoordinatorError;
use crate::store::StoreError;

/// What follows once a transition's write is applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum After {
    /// Nothing more.
    Stay,
    /// Queue the chunk for leasing (first when `front`).
    Ready {
        /// Ahead of the queue.
        front: bool,
    },
    /// Queue it once the Unix millisecond has passed.
    Delayed(i64),
    /// Fail the job with this error.
    FailJob(String),
}

/// One chunk's change of state, planned under the lock.
#[derive(Debug, Clone)]
pub(crate) struct Transition {
    pub job_id: String,
    pub n: u32,
    pub old: ChunkRecord,
    pub version: u64,
    pub new: ChunkRecord,
    pub after: After,
}

impl JobRuntime {
    /// Shows `t`'s new state in memory (with the old version) and counts its
    /// write as in flight.
    pub(crate) fn hold(&mut self, t: &Transition) {
        self.set_chunk(t.n, t.new.clone(), t.version);
        self.writing += 1;
    }
}

impl Scheduler {
    /// Writes transitions held in memory (see `JobRuntime::hold`) and applies
    /// them. With a store whose writes wait on the network, the lock is
    /// released while they are written, all at once; the guard is given back
    /// re-acquired. Fails with the first store error after applying the rest.
    pub(crate) async fn write_transitions<'a>(
        &'a self,
        st: MutexGuard<'a, State>,
        transitions: Vec<Transition>,
    ) -> (MutexGuard<'a, State>, Result<(), CoordinatorError>) {
        if transitions.is_empty() {
            return (st, Ok(()));
        }
        let (mut st, written) = if self.store.writes_wait() {
            drop(st);
            let written = futures::future::join_all(
                transitions
                    .iter()
                    .map(|t| self.store.update_chunk(&t.new, t.version)),
            )
            .await;
            (self.state.lock().await, written)
        } else {
            let mut written = Vec::with_capacity(transitions.len());
            for t in &transitions {
                written.push(self.store.update_chunk(&t.new, t.version).await);
            }
            (st, written)
        };
        let result = self.apply_transitions(&mut st, transitions, written).await;
        (st, result)
    }

    async fn apply_transitions(
        &self,
        st: &mut State,
        transitions: Vec<Transition>,
        written: Vec<Result<u64, StoreError>>,
    ) -> Result<(), CoordinatorError> {
        let mut first_error = None;
        for (t, w) in transitions.into_iter().zip(written) {
            let Some(job) = st.jobs.get_mut(&t.job_id) else {
                continue;
            };
            job.writing = job.writing.saturating_sub(1);
            match w {
                Ok(v) => {
                    job.set_chunk(t.n, t.new, v);
                    match t.after {
                        After::Stay => {}
                        After::Ready { front: true } => job.ready.push_front(t.n),
                        After::Ready { front: false } => job.ready.push_back(t.n),
                        After::Delayed(at) => job.delayed.push((at, t.n)),
                        After::FailJob(error) => {
                            if let Err(e) = self.fail_job(job, error).await {
                                first_error.get_or_insert(e);
                            }
                        }
                    }
                }
                Err(e) => {
                    job.set_chunk(t.n, t.old, t.version);
                    first_error.get_or_insert(e.into());
                }
            }
        }
        self.ready.notify_waiters();
        self.changed();
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

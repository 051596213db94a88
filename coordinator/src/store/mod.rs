//! Where the coordinator keeps jobs, chunks and worker registrations: a domain
//! trait with an in-memory backend (single coordinator, tests) and an etcd
//! backend (failover).

mod commit_pace;
mod etcd;
mod etcd_layout;
mod etcd_load;
mod etcd_resplit;
mod etcd_txn;
mod etcd_workers;
mod memory;
mod tripwire;

pub use etcd::{map_err as map_etcd_error, with_retry, EtcdStore, LeaderFence};
pub use etcd_txn::DEFAULT_MAX_TXN_OPS;
pub use memory::MemoryStore;
pub use tripwire::Tripwire;

use async_trait::async_trait;
use ferry_common::proto::{ChunkRecord, JobRecord};

/// A failure of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record changed since it was read (compare-and-swap failed).
    #[error("state changed concurrently: {0}")]
    Conflict(String),
    /// The call's outcome is unknown (timeout): reload from the store, never guess.
    #[error("outcome unknown, reload state: {0}")]
    OutcomeUnknown(String),
    /// The store cannot be reached.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// This coordinator is no longer the leader; its writes are refused.
    #[error("not the leader any more")]
    NotLeader,
    /// A stored record cannot be decoded.
    #[error("corrupt record {key}: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// What was wrong.
        reason: String,
    },
}

/// A chunk as loaded from the store, with the revision that last wrote it.
#[derive(Debug, Clone)]
pub struct StoredChunk {
    /// The record.
    pub record: ChunkRecord,
    /// Revision of its last write (compare against it to update).
    pub version: u64,
}

/// Everything a coordinator needs to rebuild its state after a restart or takeover.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Jobs with their chunks.
    pub jobs: Vec<(JobRecord, Vec<StoredChunk>)>,
    /// Chunks whose `assign/…` key still exists, i.e. whose worker's lease is alive.
    pub live_assignments: Vec<(String, u32)>,
    /// Workers whose registration (and lease) still exists.
    pub workers: Vec<String>,
}

/// The coordinator's state, in domain terms. Every chunk write compares the
/// chunk's version and returns the new one, which is the fencing token when
/// the write is a lease.
#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// Stores a new job unless `request_id` (when not empty) already names one;
    /// returns the job stored under that request and whether it is new.
    async fn create_job(&self, job: &JobRecord) -> Result<(JobRecord, bool), StoreError>;

    /// Overwrites a job record (state transitions, plan results).
    async fn update_job(&self, job: &JobRecord) -> Result<(), StoreError>;

    /// Stores a job's plan: all its chunks, numbered from 1, replacing any
    /// plan stored for the job before; returns their versions in order (0
    /// for a chunk that has no record of its own yet: its first write
    /// compares against that).
    async fn put_chunks(&self, chunks: &[ChunkRecord]) -> Result<Vec<u64>, StoreError>;

    /// Leases a chunk to `chunk.worker_id`: writes it as LEASED if its version is
    /// still `expected`, and records the assignment under the worker's lease.
    /// Returns the new version: the fencing token.
    async fn lease_chunk(&self, chunk: &ChunkRecord, expected: u64) -> Result<u64, StoreError>;

    /// Writes any other chunk transition if its version is still `expected`, and
    /// drops its assignment; returns the new version.
    async fn update_chunk(&self, chunk: &ChunkRecord, expected: u64) -> Result<u64, StoreError>;

    /// Re-splits the end of a job's plan (`--chunk-size auto`): replaces its
    /// chunks numbered `from` and up, none of which was ever leased (their
    /// versions are `expected`, in order), with `chunks` numbered from
    /// `from`, and writes `job` (its new chunk count) in the same atomic
    /// write, so a reader sees the old plan or the new one, never both.
    /// Conflict when one of them was written meanwhile (a lease won);
    /// Unavailable when the replacement cannot be one atomic write (nothing
    /// is written). Returns the new chunks' versions.
    async fn replace_unleased(
        &self,
        job: &JobRecord,
        from: u32,
        expected: &[u64],
        chunks: &[ChunkRecord],
    ) -> Result<Vec<u64>, StoreError> {
        let _ = (from, expected, chunks);
        Err(StoreError::Unavailable(format!(
            "{} cannot re-split job {}",
            self.describe(),
            job.job_id
        )))
    }

    /// Registers a worker whose lease (in the leader's memory) is `ttl_ms`.
    async fn register_worker(&self, worker_id: &str, ttl_ms: u64) -> Result<(), StoreError>;

    /// Whether a worker is still registered, asked at each heartbeat (false:
    /// its registration ran out; it must register again).
    async fn keepalive_worker(&self, worker_id: &str) -> Result<bool, StoreError>;

    /// Renews, now, whatever keeps stored registrations alive (EtcdStore: the
    /// etcd leases of workers an earlier version registered), for a new
    /// leader adopting its predecessor's workers; returns the workers still
    /// registered.
    async fn renew_workers(&self) -> Result<usize, StoreError>;

    /// Drops a worker's registration (its assignments go as its chunks are
    /// written again, which the scheduler does before it removes a worker).
    async fn remove_worker(&self, worker_id: &str) -> Result<(), StoreError>;

    /// Loads every job, chunk and live assignment.
    async fn load(&self) -> Result<Snapshot, StoreError>;

    /// Deletes a job and everything stored for it (its chunks, plan,
    /// assignments and idempotent-submit request key) in one write, so that
    /// a finished job leaves the store (job retention calls this).
    async fn delete_job(&self, job: &JobRecord) -> Result<(), StoreError>;

    /// A short description for start-up logs.
    fn describe(&self) -> String;

    /// Whether a write waits on I/O (a network round trip). When it does not,
    /// the scheduler keeps its state lock across chunk writes; when it does,
    /// the scheduler releases the lock meanwhile so that concurrent writes
    /// reach the store together.
    fn writes_wait(&self) -> bool;
}

//! A `StateStore` wrapper that trips when the store says this leader's view
//! can no longer be trusted (lost leadership, unknown outcome, conflicting
//! write), so the leader stops serving and rebuilds from the store.

use async_trait::async_trait;
use ferry_common::proto::{ChunkRecord, JobRecord};
use tokio_util::sync::CancellationToken;

use super::{Snapshot, StateStore, StoreError};

/// Forwards to `inner`; cancels `tripped` on errors that require a reload.
pub struct Tripwire<S> {
    inner: S,
    tripped: CancellationToken,
}

impl<S: StateStore> Tripwire<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, tripped: CancellationToken) -> Self {
        Self { inner, tripped }
    }

    fn watch<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &r {
            if matches!(
                e,
                StoreError::NotLeader | StoreError::OutcomeUnknown(_) | StoreError::Conflict(_)
            ) {
                if !self.tripped.is_cancelled() {
                    tracing::warn!(error = %e, "state store says this leader's view is stale: stepping down to reload from the store");
                }
                self.tripped.cancel();
            }
        }
        r
    }
}

#[async_trait]
impl<S: StateStore> StateStore for Tripwire<S> {
    async fn create_job(&self, job: &JobRecord) -> Result<(JobRecord, bool), StoreError> {
        self.watch(self.inner.create_job(job).await)
    }
    async fn update_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        self.watch(self.inner.update_job(job).await)
    }
    async fn put_chunks(&self, chunks: &[ChunkRecord]) -> Result<Vec<u64>, StoreError> {
        self.watch(self.inner.put_chunks(chunks).await)
    }
    async fn lease_chunk(&self, chunk: &ChunkRecord, expected: u64) -> Result<u64, StoreError> {
        self.watch(self.inner.lease_chunk(chunk, expected).await)
    }
    async fn update_chunk(&self, chunk: &ChunkRecord, expected: u64) -> Result<u64, StoreError> {
        self.watch(self.inner.update_chunk(chunk, expected).await)
    }
    async fn replace_unleased(
        &self,
        job: &JobRecord,
        from: u32,
        expected: &[u64],
        chunks: &[ChunkRecord],
    ) -> Result<Vec<u64>, StoreError> {
        self.watch(
            self.inner
                .replace_unleased(job, from, expected, chunks)
                .await,
        )
    }
    async fn register_worker(&self, worker_id: &str, ttl_ms: u64) -> Result<(), StoreError> {
        self.watch(self.inner.register_worker(worker_id, ttl_ms).await)
    }
    async fn keepalive_worker(&self, worker_id: &str) -> Result<bool, StoreError> {
        // a failed keepalive is about one worker, not this leader's view
        self.inner.keepalive_worker(worker_id).await
    }
    async fn renew_workers(&self) -> Result<usize, StoreError> {
        // a failed renewal is retried by the store; the leader's view stands
        self.inner.renew_workers().await
    }
    async fn remove_worker(&self, worker_id: &str) -> Result<(), StoreError> {
        self.inner.remove_worker(worker_id).await
    }
    async fn load(&self) -> Result<Snapshot, StoreError> {
        self.inner.load().await
    }
    async fn delete_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        self.watch(self.inner.delete_job(job).await)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn writes_wait(&self) -> bool {
        self.inner.writes_wait()
    }
}

//! `MemoryStore`: the state store for a single coordinator (`ferry local`, a
//! coordinator without `--etcd`) and for tests. Revisions count writes the way
//! etcd's do, so fencing tokens behave alike.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use ferry_common::proto::{ChunkRecord, JobRecord};
use tokio::sync::Mutex;

use super::{Snapshot, StateStore, StoreError, StoredChunk};

#[derive(Default)]
struct Inner {
    revision: u64,
    jobs: BTreeMap<String, JobRecord>,
    requests: HashMap<String, String>,
    chunks: BTreeMap<(String, u32), (ChunkRecord, u64)>,
    workers: HashSet<String>,
    assignments: HashMap<(String, u32), String>,
}

/// An in-memory `StateStore`; state is lost with the process.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

fn check_version(
    chunks: &BTreeMap<(String, u32), (ChunkRecord, u64)>,
    key: &(String, u32),
    expected: u64,
) -> Result<(), StoreError> {
    match chunks.get(key) {
        Some((_, v)) if *v == expected => Ok(()),
        Some((_, v)) => Err(StoreError::Conflict(format!(
            "chunk {}/{} is at version {v}, expected {expected}",
            key.0, key.1
        ))),
        None => Err(StoreError::Conflict(format!(
            "chunk {}/{} does not exist",
            key.0, key.1
        ))),
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn create_job(&self, job: &JobRecord) -> Result<(JobRecord, bool), StoreError> {
        let mut s = self.inner.lock().await;
        if !job.request_id.is_empty() {
            if let Some(existing) = s.requests.get(&job.request_id) {
                if let Some(j) = s.jobs.get(existing) {
                    return Ok((j.clone(), false));
                }
            }
            s.requests
                .insert(job.request_id.clone(), job.job_id.clone());
        }
        s.revision += 1;
        s.jobs.insert(job.job_id.clone(), job.clone());
        Ok((job.clone(), true))
    }

    async fn update_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        let mut s = self.inner.lock().await;
        s.revision += 1;
        s.jobs.insert(job.job_id.clone(), job.clone());
        Ok(())
    }

    async fn put_chunks(&self, chunks: &[ChunkRecord]) -> Result<Vec<u64>, StoreError> {
        let mut s = self.inner.lock().await;
        s.revision += 1;
        let rev = s.revision;
        for c in chunks {
            s.chunks
                .insert((c.job_id.clone(), c.chunk_no), (c.clone(), rev));
        }
        Ok(vec![rev; chunks.len()])
    }

    async fn lease_chunk(&self, chunk: &ChunkRecord, expected: u64) -> Result<u64, StoreError> {
        let mut s = self.inner.lock().await;
        let key = (chunk.job_id.clone(), chunk.chunk_no);
        check_version(&s.chunks, &key, expected)?;
        if !s.workers.contains(&chunk.worker_id) {
            return Err(StoreError::Conflict(format!(
                "worker {} has no lease",
                chunk.worker_id
            )));
        }
        s.revision += 1;
        let rev = s.revision;
        let mut stored = chunk.clone();
        stored.fencing_token = rev;
        s.chunks.insert(key.clone(), (stored, rev));
        s.assignments.insert(key, chunk.worker_id.clone());
        Ok(rev)
    }

    async fn update_chunk(&self, chunk: &ChunkRecord, expected: u64) -> Result<u64, StoreError> {
        let mut s = self.inner.lock().await;
        let key = (chunk.job_id.clone(), chunk.chunk_no);
        check_version(&s.chunks, &key, expected)?;
        s.revision += 1;
        let rev = s.revision;
        s.chunks.insert(key.clone(), (chunk.clone(), rev));
        s.assignments.remove(&key);
        Ok(rev)
    }

    async fn register_worker(&self, worker_id: &str, _ttl_ms: u64) -> Result<(), StoreError> {
        let mut s = self.inner.lock().await;
        s.workers.insert(worker_id.to_string());
        Ok(())
    }

    async fn keepalive_worker(&self, worker_id: &str) -> Result<bool, StoreError> {
        Ok(self.inner.lock().await.workers.contains(worker_id))
    }

    async fn remove_worker(&self, worker_id: &str) -> Result<(), StoreError> {
        let mut s = self.inner.lock().await;
        s.workers.remove(worker_id);
        s.assignments.retain(|_, w| w != worker_id);
        Ok(())
    }

    async fn delete_job(&self, job_id: &str, request_id: &str) -> Result<(), StoreError> {
        let mut s = self.inner.lock().await;
        s.revision += 1;
        s.jobs.remove(job_id);
        s.chunks.retain(|(j, _), _| j != job_id);
        s.assignments.retain(|(j, _), _| j != job_id);
        if s.requests.get(request_id).is_some_and(|j| j == job_id) {
            s.requests.remove(request_id);
        }
        Ok(())
    }

    async fn load(&self) -> Result<Snapshot, StoreError> {
        let s = self.inner.lock().await;
        let jobs = s
            .jobs
            .values()
            .map(|j| {
                let chunks = s
                    .chunks
                    .range((j.job_id.clone(), 0)..=(j.job_id.clone(), u32::MAX))
                    .map(|(_, (c, v))| StoredChunk {
                        record: c.clone(),
                        version: *v,
                    })
                    .collect();
                (j.clone(), chunks)
            })
            .collect();
        let live_assignments = s.assignments.keys().cloned().collect();
        let workers = s.workers.iter().cloned().collect();
        Ok(Snapshot {
            jobs,
            live_assignments,
            workers,
        })
    }

    fn describe(&self) -> String {
        "in-memory state (single coordinator, no failover)".into()
    }

    fn writes_wait(&self) -> bool {
        false
    }
}

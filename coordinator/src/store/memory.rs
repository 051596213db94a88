//! `MemoryStore`: the state store for a single coordinator (`ferry local`, a
//! coordinator without `--etcd`) and for tests. Revisions count writes the way
//! etcd's do, so fencing tokens behave alike.
//!
//! It shares the coordinator's memory with the scheduler, so chunks are kept
//! small: each job's chunks in a vector indexed by chunk number, each record
//! protobuf-encoded without its job id (about 100 bytes instead of 500 for a
//! decoded record under a `(String, u32)` key), and each worker's assignments
//! indexed so that removing a worker touches only its own.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use ferry_common::proto::{ChunkRecord, JobRecord};
use prost::Message;
use tokio::sync::Mutex;

use super::{Snapshot, StateStore, StoreError, StoredChunk};

/// A stored chunk: its record encoded without the job id, and the revision
/// that wrote it.
struct Slot {
    record: Box<[u8]>,
    version: u64,
}

#[derive(Default)]
struct Inner {
    revision: u64,
    jobs: BTreeMap<String, JobRecord>,
    requests: HashMap<String, String>,
    /// Each job's chunks by `chunk_no - 1`.
    chunks: HashMap<String, Vec<Option<Slot>>>,
    /// Registered workers and the chunks assigned to each.
    workers: HashMap<String, HashSet<(String, u32)>>,
    /// Chunk to the worker it is assigned to.
    assignments: HashMap<(String, u32), String>,
}

impl Inner {
    fn slot(&self, job: &str, n: u32) -> Option<&Slot> {
        let i = n.checked_sub(1)? as usize;
        self.chunks.get(job)?.get(i)?.as_ref()
    }

    fn check_version(&self, job: &str, n: u32, expected: u64) -> Result<(), StoreError> {
        match self.slot(job, n) {
            Some(s) if s.version == expected => Ok(()),
            Some(s) => Err(StoreError::Conflict(format!(
                "chunk {job}/{n} is at version {}, expected {expected}",
                s.version
            ))),
            None => Err(StoreError::Conflict(format!(
                "chunk {job}/{n} does not exist"
            ))),
        }
    }

    fn put(&mut self, chunk: &ChunkRecord, version: u64) {
        let Some(i) = chunk.chunk_no.checked_sub(1).map(|i| i as usize) else {
            return;
        };
        let slots = self.chunks.entry(chunk.job_id.clone()).or_default();
        if slots.len() <= i {
            slots.resize_with(i + 1, || None);
        }
        slots[i] = Some(Slot {
            record: encode(chunk),
            version,
        });
    }

    fn unassign(&mut self, key: &(String, u32)) {
        if let Some(w) = self.assignments.remove(key) {
            if let Some(held) = self.workers.get_mut(&w) {
                held.remove(key);
            }
        }
    }
}

/// A record as kept: encoded, without the job id (the job's map has it).
fn encode(chunk: &ChunkRecord) -> Box<[u8]> {
    let mut c = chunk.clone();
    c.job_id.clear();
    c.encode_to_vec().into_boxed_slice()
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
        if let Some(first) = chunks.first() {
            // a plan replaces the job's earlier one
            s.chunks.remove(&first.job_id);
        }
        for c in chunks {
            s.put(c, rev);
        }
        Ok(vec![rev; chunks.len()])
    }

    async fn lease_chunk(&self, chunk: &ChunkRecord, expected: u64) -> Result<u64, StoreError> {
        let mut s = self.inner.lock().await;
        s.check_version(&chunk.job_id, chunk.chunk_no, expected)?;
        let key = (chunk.job_id.clone(), chunk.chunk_no);
        let Some(held) = s.workers.get_mut(&chunk.worker_id) else {
            return Err(StoreError::Conflict(format!(
                "worker {} has no lease",
                chunk.worker_id
            )));
        };
        held.insert(key.clone());
        s.revision += 1;
        let rev = s.revision;
        let mut stored = chunk.clone();
        stored.fencing_token = rev;
        s.put(&stored, rev);
        if let Some(before) = s.assignments.insert(key.clone(), chunk.worker_id.clone()) {
            if before != chunk.worker_id {
                if let Some(h) = s.workers.get_mut(&before) {
                    h.remove(&key);
                }
            }
        }
        Ok(rev)
    }

    async fn update_chunk(&self, chunk: &ChunkRecord, expected: u64) -> Result<u64, StoreError> {
        let mut s = self.inner.lock().await;
        s.check_version(&chunk.job_id, chunk.chunk_no, expected)?;
        s.revision += 1;
        let rev = s.revision;
        s.put(chunk, rev);
        s.unassign(&(chunk.job_id.clone(), chunk.chunk_no));
        Ok(rev)
    }

    async fn replace_unleased(
        &self,
        job: &JobRecord,
        from: u32,
        expected: &[u64],
        chunks: &[ChunkRecord],
    ) -> Result<Vec<u64>, StoreError> {
        let mut s = self.inner.lock().await;
        let id = job.job_id.as_str();
        let start = from
            .checked_sub(1)
            .ok_or_else(|| StoreError::Conflict(format!("job {id}: chunks are numbered from 1")))?
            as usize;
        let planned = s.chunks.get(id).map_or(0, Vec::len);
        if start > planned || planned - start != expected.len() {
            return Err(StoreError::Conflict(format!(
                "job {id} has {planned} chunks, not {} from chunk {from}",
                expected.len()
            )));
        }
        for (n, v) in (from..).zip(expected) {
            s.check_version(id, n, *v)?;
            if s.assignments.contains_key(&(id.to_string(), n)) {
                return Err(StoreError::Conflict(format!("chunk {id}/{n} is assigned")));
            }
        }
        s.revision += 1;
        let rev = s.revision;
        if let Some(slots) = s.chunks.get_mut(id) {
            slots.truncate(start);
        }
        for c in chunks {
            s.put(c, rev);
        }
        s.jobs.insert(id.to_string(), job.clone());
        Ok(vec![rev; chunks.len()])
    }

    async fn register_worker(&self, worker_id: &str, _ttl_ms: u64) -> Result<(), StoreError> {
        let mut s = self.inner.lock().await;
        s.workers.entry(worker_id.to_string()).or_default();
        Ok(())
    }

    async fn keepalive_worker(&self, worker_id: &str) -> Result<bool, StoreError> {
        Ok(self.inner.lock().await.workers.contains_key(worker_id))
    }

    async fn renew_workers(&self) -> Result<usize, StoreError> {
        Ok(self.inner.lock().await.workers.len())
    }

    async fn remove_worker(&self, worker_id: &str) -> Result<(), StoreError> {
        let mut s = self.inner.lock().await;
        if let Some(held) = s.workers.remove(worker_id) {
            for key in held {
                s.assignments.remove(&key);
            }
        }
        Ok(())
    }

    async fn load(&self) -> Result<Snapshot, StoreError> {
        let s = self.inner.lock().await;
        let mut jobs = Vec::with_capacity(s.jobs.len());
        for j in s.jobs.values() {
            let mut chunks = Vec::new();
            for slot in s.chunks.get(&j.job_id).into_iter().flatten().flatten() {
                let mut record =
                    ChunkRecord::decode(&slot.record[..]).map_err(|e| StoreError::Corrupt {
                        key: format!("chunk of job {}", j.job_id),
                        reason: e.to_string(),
                    })?;
                record.job_id = j.job_id.clone();
                chunks.push(StoredChunk {
                    record,
                    version: slot.version,
                });
            }
            jobs.push((j.clone(), chunks));
        }
        let live_assignments = s.assignments.keys().cloned().collect();
        let workers = s.workers.keys().cloned().collect();
        Ok(Snapshot {
            jobs,
            live_assignments,
            workers,
        })
    }

    async fn delete_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        let mut s = self.inner.lock().await;
        s.revision += 1;
        s.jobs.remove(&job.job_id);
        s.chunks.remove(&job.job_id);
        if s.requests
            .get(&job.request_id)
            .is_some_and(|j| *j == job.job_id)
        {
            s.requests.remove(&job.request_id);
        }
        let assigned: Vec<(String, u32)> = s
            .assignments
            .keys()
            .filter(|(j, _)| *j == job.job_id)
            .cloned()
            .collect();
        for key in assigned {
            s.unassign(&key);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "in-memory state (single coordinator, no failover)".into()
    }

    fn writes_wait(&self) -> bool {
        false
    }
}

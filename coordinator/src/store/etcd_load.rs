//! How a new leader reads everything back from etcd, at one revision.
//!
//! etcd 3.4 serves a ranged read with a `limit` by first collecting every
//! key from the start of the read to the end of the range, then cutting at
//! the limit: paging through N keys with a limit costs about N²/(2 × page).
//! Listing 1,000,000 chunk keys that way took more than etcd's request
//! deadline per page (the scheduler benchmark's new leader never rebuilt).
//! So format-3 chunk states are read in ranges bounded by chunk number
//! (`[n, n + STATE_RANGE)`, no limit), several at once, and only the few
//! keys of job records and plan pages are read with a limit.

use std::collections::HashMap;

use etcd_client::{GetOptions, KeyValue};
use ferry_common::proto::{ChunkPlanPage, ChunkRecord, ChunkState, JobRecord};
use futures::{StreamExt, TryStreamExt};
use prost::Message;

use super::etcd::{prefix_end, EtcdStore};
use super::etcd_layout::{chunk_no, Layout};
use super::{Snapshot, StoreError, StoredChunk};

/// Keys per page when listing with a limit (job records, assignments,
/// workers, format-2 chunks: records of a few hundred bytes).
const LIST_PAGE: i64 = 500;
/// Plan pages per read: up to 256 KiB each, so a response stays far under
/// the 4 MiB a gRPC client takes by default.
const PLAN_PAGE_READ: i64 = 4;
/// Chunk numbers per ranged read of chunk states (about 80 bytes each).
const STATE_RANGE: u32 = 1_000;
/// Reads in flight while loading.
const LOAD_IN_FLIGHT: usize = 8;

fn corrupt(key: &[u8], e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    }
}

impl EtcdStore {
    /// Reads `[start, end)` at `revision` (0: the current one), `limit` keys
    /// at a time (0: all at once); returns the keys and the revision read at.
    pub(super) async fn read_range(
        &self,
        start: Vec<u8>,
        end: Vec<u8>,
        mut revision: i64,
        limit: i64,
    ) -> Result<(Vec<KeyValue>, i64), StoreError> {
        let mut from = start;
        let mut out = Vec::new();
        loop {
            let mut opts = GetOptions::new().with_range(end.clone());
            if limit > 0 {
                opts = opts.with_limit(limit);
            }
            if revision > 0 {
                opts = opts.with_revision(revision);
            }
            let resp = self.get(from.clone(), Some(opts)).await?;
            if revision == 0 {
                revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            let more = resp.more();
            let mut resp = resp;
            let kvs = resp.take_kvs();
            if let Some(last) = kvs.last() {
                from = last.key().to_vec();
                from.push(0);
            }
            out.extend(kvs);
            if !more || limit == 0 {
                return Ok((out, revision));
            }
        }
    }

    /// Every key under `prefix` (a full key prefix) at `revision`.
    async fn read_prefix(
        &self,
        prefix: &str,
        revision: i64,
        limit: i64,
    ) -> Result<(Vec<KeyValue>, i64), StoreError> {
        self.read_range(
            prefix.as_bytes().to_vec(),
            prefix_end(prefix),
            revision,
            limit,
        )
        .await
    }

    /// Loads every job, chunk, live assignment and worker, as of one revision.
    pub(super) async fn load_snapshot(&self) -> Result<Snapshot, StoreError> {
        let (v3, rev) = self
            .read_prefix(&self.keys.key("v3/jobs/"), 0, LIST_PAGE)
            .await?;
        let mut jobs = Vec::with_capacity(v3.len());
        for kv in &v3 {
            let j = JobRecord::decode(kv.value()).map_err(|e| corrupt(kv.key(), e))?;
            jobs.push(j);
        }
        let mut paged: Vec<(JobRecord, Vec<StoredChunk>)> =
            futures::stream::iter(jobs.into_iter().map(|j| self.load_paged_job(j, rev)))
                .buffered(LOAD_IN_FLIGHT)
                .try_collect()
                .await?;
        let legacy = self.load_legacy(rev).await?;
        {
            let mut set = self.legacy.write().unwrap_or_else(|p| p.into_inner());
            set.clear();
            set.extend(legacy.iter().map(|(j, _)| j.job_id.clone()));
        }
        paged.extend(legacy);

        let (assigns, _) = self
            .read_prefix(&self.keys.key("assign/"), rev, LIST_PAGE)
            .await?;
        let mut live_assignments = Vec::with_capacity(assigns.len());
        for kv in &assigns {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let mut parts = key.rsplit('/');
            let n = parts.next().and_then(|s| s.parse::<u32>().ok());
            let job = parts.next();
            if let (Some(n), Some(job)) = (n, job) {
                live_assignments.push((job.to_string(), n));
            }
        }
        let (registered, _) = self
            .read_prefix(&self.keys.key("workers/"), rev, LIST_PAGE)
            .await?;
        let mut workers = Vec::with_capacity(registered.len());
        for kv in &registered {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let Some(id) = key.rsplit('/').next() else {
                continue;
            };
            self.registrations.adopt(id, kv.lease());
            workers.push(id.to_string());
        }
        Ok(Snapshot {
            jobs: paged,
            live_assignments,
            workers,
        })
    }

    /// A format-3 job: its plan pages and the state keys of chunks that left
    /// their planned state, merged into one record per planned chunk.
    async fn load_paged_job(
        &self,
        job: JobRecord,
        rev: i64,
    ) -> Result<(JobRecord, Vec<StoredChunk>), StoreError> {
        let id = job.job_id.clone();
        let (pages, _) = self
            .read_prefix(&self.keys.plans(&id), rev, PLAN_PAGE_READ)
            .await?;
        let mut bounds = Vec::new();
        for kv in &pages {
            let page = ChunkPlanPage::decode(kv.value()).map_err(|e| corrupt(kv.key(), e))?;
            let Some(first) = (page.first as usize).checked_sub(1) else {
                return Err(corrupt(kv.key(), "a plan page starts at chunk 0"));
            };
            if bounds.len() < first + page.bounds.len() {
                bounds.resize(first + page.bounds.len(), None);
            }
            for (i, b) in page.bounds.into_iter().enumerate() {
                bounds[first + i] = Some(b);
            }
        }
        let planned = bounds.len() as u32;
        let mut chunks: Vec<StoredChunk> = bounds
            .into_iter()
            .zip(1..)
            .map(|(bounds, n)| StoredChunk {
                record: ChunkRecord {
                    job_id: id.clone(),
                    chunk_no: n,
                    state: ChunkState::Pending as i32,
                    bounds,
                    ..Default::default()
                },
                version: 0,
            })
            .collect();
        let ranges = (1..=planned).step_by(STATE_RANGE as usize).map(|n| {
            let end = n.saturating_add(STATE_RANGE).min(planned + 1);
            let start = self.keys.chunk(Layout::Paged, &id, n).into_bytes();
            let end = self.keys.chunk(Layout::Paged, &id, end).into_bytes();
            async move {
                self.read_range(start, end, rev, 0)
                    .await
                    .map(|(kvs, _)| kvs)
            }
        });
        let mut reads = futures::stream::iter(ranges).buffer_unordered(LOAD_IN_FLIGHT);
        while let Some(kvs) = reads.next().await {
            for kv in kvs? {
                let Some(n) = chunk_no(kv.key()) else {
                    continue;
                };
                let Some(c) = n.checked_sub(1).and_then(|i| chunks.get_mut(i as usize)) else {
                    continue;
                };
                let state = ChunkRecord::decode(kv.value()).map_err(|e| corrupt(kv.key(), e))?;
                let bounds = c.record.bounds.take();
                c.record = ChunkRecord {
                    job_id: id.clone(),
                    chunk_no: n,
                    bounds,
                    ..state
                };
                c.version = kv.mod_revision() as u64;
            }
        }
        // a chunk no page plans is not returned: recovery sees the job short
        // of chunks and refuses to run it rather than finish it early
        chunks.retain(|c| c.record.bounds.is_some());
        Ok((job, chunks))
    }

    /// Jobs of store format 2 and older under `jobs/`, each with its chunks'
    /// whole records; they are continued where they are.
    async fn load_legacy(
        &self,
        rev: i64,
    ) -> Result<Vec<(JobRecord, Vec<StoredChunk>)>, StoreError> {
        let (kvs, _) = self
            .read_prefix(&self.keys.key("jobs/"), rev, LIST_PAGE)
            .await?;
        let mut jobs: Vec<(JobRecord, Vec<StoredChunk>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for kv in kvs {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            if key.contains("/chunks/") {
                let c = ChunkRecord::decode(kv.value()).map_err(|e| corrupt(kv.key(), e))?;
                if let Some(i) = index.get(&c.job_id) {
                    jobs[*i].1.push(StoredChunk {
                        record: c,
                        version: kv.mod_revision() as u64,
                    });
                }
            } else {
                let j = JobRecord::decode(kv.value()).map_err(|e| corrupt(kv.key(), e))?;
                index.insert(j.job_id.clone(), jobs.len());
                jobs.push((j, Vec::new()));
            }
        }
        Ok(jobs)
    }
}

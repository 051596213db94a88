//! `EtcdStore`: the state store for coordinators with failover. Keys live
//! under a prefix (default `/ferry`):
//!
//! | key | value | lease |
//! |---|---|---|
//! | `jobs/<job>` | `JobRecord` (protobuf) | none |
//! | `jobs/<job>/chunks/<n>` | `ChunkRecord` (protobuf) | none |
//! | `workers/<worker>` | lease id | the worker's |
//! | `assign/<job>/<n>` | `worker attempt` | the worker's |
//! | `requests/<request_id>` | job id | none |
//!
//! Every transaction also compares the leader's election key, so a deposed
//! leader's writes fail. A chunk write compares the chunk's `mod_revision`;
//! the transaction's revision is the new version and, for a lease, the
//! fencing token. Lease and completion writes that arrive together share one
//! transaction (`etcd_txn`'s group committer).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions, TxnOp,
};
use ferry_common::proto::{ChunkRecord, JobRecord};
use prost::Message;
use tokio::sync::Mutex;

use super::etcd_txn::{guarded_txn, GroupCommitter};
use super::{Snapshot, StateStore, StoreError, StoredChunk};

/// Keys read per page when listing (keeps responses far below gRPC limits).
const PAGE: i64 = 500;

/// The election key this leader holds: every write compares it.
#[derive(Debug, Clone)]
pub struct LeaderFence {
    /// The election key.
    pub key: String,
    /// Its create revision when this leader won.
    pub create_revision: i64,
}

struct WorkerLease {
    id: i64,
    keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
}

/// An etcd-backed `StateStore` for one leader term.
pub struct EtcdStore {
    client: Client,
    prefix: String,
    fence: Option<LeaderFence>,
    workers: Mutex<HashMap<String, Arc<Mutex<WorkerLease>>>>,
    /// Combines concurrent chunk writes into shared transactions.
    committer: GroupCommitter,
}

/// Maps an etcd error: a timeout or a broken connection leaves a write's
/// outcome unknown, so the caller must reload rather than guess.
pub fn map_err(e: etcd_client::Error) -> StoreError {
    match &e {
        etcd_client::Error::GRpcStatus(s)
            if matches!(
                s.code(),
                tonic::Code::DeadlineExceeded
                    | tonic::Code::Unavailable
                    | tonic::Code::Cancelled
                    | tonic::Code::Unknown
            ) =>
        {
            StoreError::OutcomeUnknown(e.to_string())
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            StoreError::OutcomeUnknown(e.to_string())
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

/// Whether an etcd error means the request never reached a member (a dead
/// endpoint refused the connection): then trying again is safe, and every
/// write compares revisions anyway.
fn not_sent(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(s) => {
            s.code() == tonic::Code::Unavailable && connection_refused(s)
        }
        _ => false,
    }
}

/// Whether the error's cause chain holds an I/O error saying no connection
/// was made (the member refused it, or has no route): judged by error
/// kinds, never by message text.
fn connection_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::AddrNotAvailable
                    | std::io::ErrorKind::NotConnected
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
            ) {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

/// Runs an etcd call, again (up to four times) when it was not sent.
pub async fn with_retry<T, F, Fut>(mut call: F) -> Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let mut delay = ferry_common::timing::ETCD_UNSENT_RETRY;
    let mut tries = 0;
    loop {
        match call().await {
            Err(e) if not_sent(&e) && tries < 4 => {
                tries += 1;
                tracing::debug!(error = %e, "etcd call not sent; trying another member");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
}

impl EtcdStore {
    /// A store over `client` under `prefix`, writing only while `fence` holds.
    /// Must be called inside a Tokio runtime (it starts the group committer).
    pub fn new(client: Client, prefix: &str, fence: Option<LeaderFence>) -> Self {
        Self {
            committer: GroupCommitter::start(client.clone(), fence.clone()),
            client,
            prefix: prefix.trim_end_matches('/').to_string(),
            fence,
            workers: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }

    fn job_key(&self, job: &str) -> String {
        self.key(&format!("jobs/{job}"))
    }

    fn chunk_key(&self, job: &str, n: u32) -> String {
        // zero-padded so a prefix listing returns chunks in order
        self.key(&format!("jobs/{job}/chunks/{n:010}"))
    }

    fn assign_key(&self, job: &str, n: u32) -> String {
        self.key(&format!("assign/{job}/{n:010}"))
    }

    /// Runs a transaction guarded by the leader fence plus `compares`; on a failed
    /// compare, tells a lost leadership from a conflicting write.
    async fn guarded(
        &self,
        compares: Vec<Compare>,
        ops: Vec<TxnOp>,
        what: &str,
    ) -> Result<i64, StoreError> {
        guarded_txn(&self.client, self.fence.as_ref(), compares, ops, what).await
    }

    /// A chunk write, through the group committer: writes that arrive together
    /// share one transaction (one Raft entry, one fsync).
    async fn batched(
        &self,
        compares: Vec<Compare>,
        ops: Vec<TxnOp>,
        what: &str,
    ) -> Result<i64, StoreError> {
        self.committer.write(compares, ops, what).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<etcd_client::KeyValue>, StoreError> {
        let start = self.key(prefix);
        let end = prefix_end(&start);
        let mut from = start.into_bytes();
        let mut out = Vec::new();
        let mut revision = 0;
        loop {
            let mut opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if revision > 0 {
                opts = opts.with_revision(revision);
            }
            let resp = self.get(from.clone(), Some(opts)).await?;
            if revision == 0 {
                revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            let kvs = resp.kvs().to_vec();
            let more = resp.more();
            if let Some(last) = kvs.last() {
                from = last.key().to_vec();
                from.push(0);
            }
            out.extend(kvs);
            if !more {
                return Ok(out);
            }
        }
    }

    /// A read, tried again on another member when not sent.
    async fn get(
        &self,
        key: Vec<u8>,
        opts: Option<GetOptions>,
    ) -> Result<etcd_client::GetResponse, StoreError> {
        with_retry(|| {
            let mut c = self.client.clone();
            let (k, o) = (key.clone(), opts.clone());
            async move { c.get(k, o).await }
        })
        .await
        .map_err(map_err)
    }

    async fn lease_of(&self, worker: &str) -> Option<Arc<Mutex<WorkerLease>>> {
        self.workers.lock().await.get(worker).cloned()
    }
}

/// The smallest key greater than every key with this prefix.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn corrupt(key: &[u8], e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    }
}

#[async_trait]
impl StateStore for EtcdStore {
    async fn create_job(&self, job: &JobRecord) -> Result<(JobRecord, bool), StoreError> {
        let put_job = TxnOp::put(self.job_key(&job.job_id), job.encode_to_vec(), None);
        if job.request_id.is_empty() {
            self.guarded(vec![], vec![put_job], "create job").await?;
            return Ok((job.clone(), true));
        }
        let req_key = self.key(&format!("requests/{}", job.request_id));
        let cmp = vec![Compare::create_revision(
            req_key.clone(),
            CompareOp::Equal,
            0,
        )];
        let ops = vec![
            TxnOp::put(req_key.clone(), job.job_id.clone(), None),
            put_job,
        ];
        match self.guarded(cmp, ops, "create job").await {
            Ok(_) => Ok((job.clone(), true)),
            Err(StoreError::Conflict(_)) => {
                let resp = self.get(req_key.clone().into_bytes(), None).await?;
                let id = resp
                    .kvs()
                    .first()
                    .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
                    .unwrap_or_default();
                let resp = self.get(self.job_key(&id).into_bytes(), None).await?;
                let kv = resp
                    .kvs()
                    .first()
                    .ok_or_else(|| corrupt(req_key.as_bytes(), "request names a missing job"))?;
                let existing = JobRecord::decode(kv.value()).map_err(|e| corrupt(kv.key(), e))?;
                Ok((existing, false))
            }
            Err(e) => Err(e),
        }
    }

    async fn update_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        let op = TxnOp::put(self.job_key(&job.job_id), job.encode_to_vec(), None);
        self.guarded(vec![], vec![op], "update job")
            .await
            .map(|_| ())
    }

    async fn put_chunks(&self, chunks: &[ChunkRecord]) -> Result<Vec<u64>, StoreError> {
        let ops = chunks
            .iter()
            .map(|c| {
                TxnOp::put(
                    self.chunk_key(&c.job_id, c.chunk_no),
                    c.encode_to_vec(),
                    None,
                )
            })
            .collect();
        let rev = self.guarded(vec![], ops, "put chunks").await?;
        Ok(vec![rev as u64; chunks.len()])
    }

    async fn lease_chunk(&self, chunk: &ChunkRecord, expected: u64) -> Result<u64, StoreError> {
        let lease = self.lease_of(&chunk.worker_id).await.ok_or_else(|| {
            StoreError::Conflict(format!("worker {} has no lease", chunk.worker_id))
        })?;
        let lease_id = lease.lock().await.id;
        let key = self.chunk_key(&chunk.job_id, chunk.chunk_no);
        let assign = format!("{} {}", chunk.worker_id, chunk.attempt);
        let ops = vec![
            TxnOp::put(key.clone(), chunk.encode_to_vec(), None),
            TxnOp::put(
                self.assign_key(&chunk.job_id, chunk.chunk_no),
                assign,
                Some(PutOptions::new().with_lease(lease_id)),
            ),
        ];
        let cmp = vec![Compare::mod_revision(
            key,
            CompareOp::Equal,
            expected as i64,
        )];
        // The chunk's new mod_revision is the token; a loader restores it from there.
        Ok(self.batched(cmp, ops, "lease chunk").await? as u64)
    }

    async fn update_chunk(&self, chunk: &ChunkRecord, expected: u64) -> Result<u64, StoreError> {
        let key = self.chunk_key(&chunk.job_id, chunk.chunk_no);
        let ops = vec![
            TxnOp::put(key.clone(), chunk.encode_to_vec(), None),
            TxnOp::delete(self.assign_key(&chunk.job_id, chunk.chunk_no), None),
        ];
        let cmp = vec![Compare::mod_revision(
            key,
            CompareOp::Equal,
            expected as i64,
        )];
        Ok(self.batched(cmp, ops, "update chunk").await? as u64)
    }

    async fn register_worker(&self, worker_id: &str, ttl_ms: u64) -> Result<(), StoreError> {
        if let Some(existing) = self.lease_of(worker_id).await {
            let id = existing.lock().await.id;
            if self.keepalive_worker(worker_id).await? {
                tracing::debug!(
                    worker = worker_id,
                    lease = id,
                    "worker re-registered under its live lease"
                );
                return Ok(());
            }
        }
        let ttl = ttl_ms.div_ceil(1000).max(1) as i64;
        let grant = with_retry(|| {
            let mut c = self.client.clone();
            async move { c.lease_grant(ttl, None).await }
        })
        .await
        .map_err(map_err)?;
        let op = TxnOp::put(
            self.key(&format!("workers/{worker_id}")),
            grant.id().to_string(),
            Some(PutOptions::new().with_lease(grant.id())),
        );
        self.guarded(vec![], vec![op], "register worker").await?;
        self.workers.lock().await.insert(
            worker_id.to_string(),
            Arc::new(Mutex::new(WorkerLease {
                id: grant.id(),
                keeper: None,
            })),
        );
        Ok(())
    }

    async fn keepalive_worker(&self, worker_id: &str) -> Result<bool, StoreError> {
        let Some(lease) = self.lease_of(worker_id).await else {
            return Ok(false);
        };
        let mut l = lease.lock().await;
        if l.keeper.is_none() {
            let pair = self
                .client
                .clone()
                .lease_keep_alive(l.id)
                .await
                .map_err(map_err)?;
            l.keeper = Some(pair);
        }
        let Some((keeper, stream)) = l.keeper.as_mut() else {
            return Ok(false);
        };
        let sent = keeper.keep_alive().await;
        let answer = match sent {
            Ok(()) => stream.message().await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(Some(resp)) if resp.ttl() > 0 => Ok(true),
            Ok(_) => {
                drop(l);
                self.workers.lock().await.remove(worker_id);
                Ok(false)
            }
            Err(e) => {
                // the stream's member may be gone: reopen (on another member) and try once more
                l.keeper = None;
                let id = l.id;
                let (mut keeper, mut stream) = with_retry(|| {
                    let mut c = self.client.clone();
                    async move { c.lease_keep_alive(id).await }
                })
                .await
                .map_err(|_| map_err(e))?;
                keeper.keep_alive().await.map_err(map_err)?;
                let alive = stream
                    .message()
                    .await
                    .map_err(map_err)?
                    .is_some_and(|r| r.ttl() > 0);
                l.keeper = Some((keeper, stream));
                Ok(alive)
            }
        }
    }

    async fn remove_worker(&self, worker_id: &str) -> Result<(), StoreError> {
        let Some(lease) = self.workers.lock().await.remove(worker_id) else {
            return Ok(());
        };
        let id = lease.lock().await.id;
        match self.client.clone().lease_revoke(id).await {
            Ok(_) => Ok(()),
            Err(etcd_client::Error::GRpcStatus(s)) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn load(&self) -> Result<Snapshot, StoreError> {
        let mut jobs: Vec<(JobRecord, Vec<StoredChunk>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for kv in self.list("jobs/").await? {
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
        let mut live_assignments = Vec::new();
        for kv in self.list("assign/").await? {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let mut parts = key.rsplit('/');
            let n = parts.next().and_then(|s| s.parse::<u32>().ok());
            let job = parts.next();
            if let (Some(n), Some(job)) = (n, job) {
                live_assignments.push((job.to_string(), n));
            }
        }
        let mut workers = Vec::new();
        let mut map = self.workers.lock().await;
        for kv in self.list("workers/").await? {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let Some(id) = key.rsplit('/').next() else {
                continue;
            };
            map.insert(
                id.to_string(),
                Arc::new(Mutex::new(WorkerLease {
                    id: kv.lease(),
                    keeper: None,
                })),
            );
            workers.push(id.to_string());
        }
        Ok(Snapshot {
            jobs,
            live_assignments,
            workers,
        })
    }

    fn describe(&self) -> String {
        format!("etcd state under {}", self.prefix)
    }

    fn writes_wait(&self) -> bool {
        true
    }
}

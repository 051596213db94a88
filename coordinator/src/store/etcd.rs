//! `EtcdStore`: the state store for coordinators with failover. Keys live
//! under a prefix (default `/ferry`):
//!
//! | key | value | lease |
//! |---|---|---|
//! | `v3/jobs/<job>` | `JobRecord` (protobuf) | none |
//! | `v3/plans/<job>/<first>` | `ChunkPlanPage`: bounds of up to 1,000 chunks | none |
//! | `v3/chunks/<job>/<n>` | `ChunkRecord`, state only, once the chunk left its plan | none |
//! | `jobs/<job>`, `jobs/<job>/chunks/<n>` | jobs of store format 2, continued where they are | none |
//! | `workers/<worker>` | `0` (no lease) | none (`etcd_workers` says why) |
//! | `assign/<job>/<n>` | `worker attempt` | none |
//! | `requests/<request_id>` | job id | none |
//!
//! (`etcd_layout` says why; `etcd_load` how a new leader reads it back.)
//!
//! Every transaction also compares the leader's election key, so a deposed
//! leader's writes fail. A chunk write compares the chunk's `mod_revision`;
//! the transaction's revision is the new version and, for a lease, the
//! fencing token. Lease and completion writes that arrive together share one
//! transaction (`etcd_txn`'s group committer).

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use etcd_client::{Client, Compare, CompareOp, DeleteOptions, GetOptions, TxnOp};
use ferry_common::proto::{ChunkRecord, JobRecord};
use prost::Message;

use super::etcd_layout::{plan_pages, state_only, Keys, Layout, PLAN_TXN_BYTES, TXN_OPS};
use super::etcd_txn::{batch_for, guarded_txn, GroupCommitter, DEFAULT_MAX_TXN_OPS};
use super::etcd_workers::Registrations;
use super::{Snapshot, StateStore, StoreError};

/// The election key this leader holds: every write compares it.
#[derive(Debug, Clone)]
pub struct LeaderFence {
    /// The election key.
    pub key: String,
    /// Its create revision when this leader won.
    pub create_revision: i64,
}

/// An etcd-backed `StateStore` for one leader term.
pub struct EtcdStore {
    pub(super) client: Client,
    pub(super) keys: Keys,
    fence: Option<LeaderFence>,
    /// Registered workers and the leases their keys are under.
    pub(super) registrations: Arc<Registrations>,
    /// Jobs found under `jobs/` (store format 2): their records stay there.
    pub(super) legacy: std::sync::RwLock<HashSet<String>>,
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

/// Whether an etcd error means the request was never applied: it never
/// reached a member (a dead endpoint refused the connection), or a member
/// refused it before proposing it (RESOURCE_EXHAUSTED: "too many requests",
/// its apply queue is behind, as under a burst of registrations; etcd 3.4
/// sends that refusal as UNKNOWN, which stays an unknown outcome here since
/// the code is all we judge by, and the group committer keeps Ferry's own
/// bursts from provoking it). Then trying again after a pause is safe,
/// and every write compares revisions anyway.
fn not_sent(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::GRpcStatus(s) => match s.code() {
            tonic::Code::Unavailable => connection_refused(s),
            tonic::Code::ResourceExhausted => true,
            _ => false,
        },
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
    /// A store over `client` under `prefix`, writing only while `fence` holds,
    /// for an etcd with the default `--max-txn-ops`. Must be called inside a
    /// Tokio runtime (it starts the group committer).
    pub fn new(client: Client, prefix: &str, fence: Option<LeaderFence>) -> Self {
        Self::with_max_txn_ops(client, prefix, fence, DEFAULT_MAX_TXN_OPS)
    }

    /// Like [`EtcdStore::new`], for an etcd started with `--max-txn-ops
    /// max_txn_ops` (it must not be above the server's: a bigger transaction
    /// is refused, and its writes then go one by one).
    pub fn with_max_txn_ops(
        client: Client,
        prefix: &str,
        fence: Option<LeaderFence>,
        max_txn_ops: usize,
    ) -> Self {
        Self {
            committer: GroupCommitter::start(client.clone(), fence.clone(), batch_for(max_txn_ops)),
            registrations: Registrations::start(client.clone()),
            client,
            keys: Keys::new(prefix),
            fence,
            legacy: std::sync::RwLock::new(HashSet::new()),
        }
    }

    /// Where `job`'s records live: under `jobs/` if it was found there.
    pub(super) fn layout(&self, job: &str) -> Layout {
        let legacy = self.legacy.read().unwrap_or_else(|p| p.into_inner());
        if legacy.contains(job) {
            Layout::Legacy
        } else {
            Layout::Paged
        }
    }

    /// A chunk's key and the value written there: the whole record (format
    /// 2 jobs) or its state only.
    fn chunk_write(&self, chunk: &ChunkRecord) -> (String, Vec<u8>) {
        let layout = self.layout(&chunk.job_id);
        let key = self.keys.chunk(layout, &chunk.job_id, chunk.chunk_no);
        let value = match layout {
            Layout::Paged => state_only(chunk),
            Layout::Legacy => chunk.encode_to_vec(),
        };
        (key, value)
    }

    /// Writes a format-3 plan: a first transaction drops any earlier plan
    /// and chunk states of the job (a plan stored again after a takeover;
    /// etcd refuses a delete and a put of one key in one transaction), then
    /// pages go in transactions under `PLAN_TXN_BYTES`.
    async fn put_plan(&self, job: &str, chunks: &[ChunkRecord]) -> Result<(), StoreError> {
        let prefix = Some(DeleteOptions::new().with_prefix());
        let clear = vec![
            TxnOp::delete(self.keys.plans(job), prefix.clone()),
            TxnOp::delete(self.keys.chunks(Layout::Paged, job), prefix),
        ];
        self.guarded(vec![], clear, "clear plan").await?;
        let mut ops = Vec::new();
        let mut bytes = 0;
        for (first, page) in plan_pages(chunks) {
            if page.len() > PLAN_TXN_BYTES {
                return Err(StoreError::Unavailable(format!(
                    "job {job}: the bounds of chunk {first} take {} bytes, more than one etcd request may carry ({PLAN_TXN_BYTES}); split the job on a narrower key",
                    page.len()
                )));
            }
            if !ops.is_empty() && (ops.len() >= TXN_OPS || bytes + page.len() > PLAN_TXN_BYTES) {
                self.guarded(vec![], std::mem::take(&mut ops), "store plan")
                    .await?;
                bytes = 0;
            }
            bytes += page.len();
            ops.push(TxnOp::put(self.keys.plan(job, first), page, None));
        }
        self.guarded(vec![], ops, "store plan").await?;
        Ok(())
    }

    /// Runs a transaction guarded by the leader fence plus `compares`; on a failed
    /// compare, tells a lost leadership from a conflicting write.
    pub(super) async fn guarded(
        &self,
        compares: Vec<Compare>,
        ops: Vec<TxnOp>,
        what: &str,
    ) -> Result<i64, StoreError> {
        guarded_txn(&self.client, self.fence.as_ref(), compares, ops, what).await
    }

    /// A chunk write, through the group committer: writes that arrive together
    /// share one transaction (one Raft entry, one fsync).
    pub(super) async fn batched(
        &self,
        compares: Vec<Compare>,
        ops: Vec<TxnOp>,
        what: &str,
    ) -> Result<i64, StoreError> {
        self.committer.write(compares, ops, what).await
    }

    /// A read, tried again on another member when not sent.
    pub(super) async fn get(
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
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        self.registrations.stop();
    }
}

/// The smallest key greater than every key with this prefix.
pub(super) fn prefix_end(prefix: &str) -> Vec<u8> {
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
        let key = self.keys.job(Layout::Paged, &job.job_id);
        let put_job = TxnOp::put(key, job.encode_to_vec(), None);
        if job.request_id.is_empty() {
            self.guarded(vec![], vec![put_job], "create job").await?;
            return Ok((job.clone(), true));
        }
        let req_key = self.keys.request(&job.request_id);
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
                let layout = self.layout(&id);
                let resp = self
                    .get(self.keys.job(layout, &id).into_bytes(), None)
                    .await?;
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
        let key = self.keys.job(self.layout(&job.job_id), &job.job_id);
        let op = TxnOp::put(key, job.encode_to_vec(), None);
        self.guarded(vec![], vec![op], "update job")
            .await
            .map(|_| ())
    }

    async fn put_chunks(&self, chunks: &[ChunkRecord]) -> Result<Vec<u64>, StoreError> {
        let Some(first) = chunks.first() else {
            return Ok(Vec::new());
        };
        let job = first.job_id.as_str();
        let numbered = chunks
            .iter()
            .enumerate()
            .all(|(i, c)| c.job_id == job && c.chunk_no as usize == i + 1);
        if !numbered {
            return Err(corrupt(
                self.keys.chunks(Layout::Paged, job).as_bytes(),
                "a plan to store must be one job's chunks numbered from 1",
            ));
        }
        match self.layout(job) {
            Layout::Paged => {
                self.put_plan(job, chunks).await?;
                // no chunk key yet: each first write compares against its absence
                Ok(vec![0; chunks.len()])
            }
            Layout::Legacy => {
                let mut versions = Vec::with_capacity(chunks.len());
                for batch in chunks.chunks(TXN_OPS) {
                    let ops = batch
                        .iter()
                        .map(|c| {
                            let key = self.keys.chunk(Layout::Legacy, job, c.chunk_no);
                            TxnOp::put(key, c.encode_to_vec(), None)
                        })
                        .collect();
                    let rev = self.guarded(vec![], ops, "put chunks").await?;
                    versions.extend(std::iter::repeat_n(rev as u64, batch.len()));
                }
                Ok(versions)
            }
        }
    }

    async fn lease_chunk(&self, chunk: &ChunkRecord, expected: u64) -> Result<u64, StoreError> {
        let assign_options = self.assignment_options(&chunk.worker_id)?;
        let (key, value) = self.chunk_write(chunk);
        let assign = format!("{} {}", chunk.worker_id, chunk.attempt);
        let ops = vec![
            TxnOp::put(key.clone(), value, None),
            TxnOp::put(
                self.keys.assign(&chunk.job_id, chunk.chunk_no),
                assign,
                assign_options,
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
        let (key, value) = self.chunk_write(chunk);
        let ops = vec![
            TxnOp::put(key.clone(), value, None),
            TxnOp::delete(self.keys.assign(&chunk.job_id, chunk.chunk_no), None),
        ];
        let cmp = vec![Compare::mod_revision(
            key,
            CompareOp::Equal,
            expected as i64,
        )];
        Ok(self.batched(cmp, ops, "update chunk").await? as u64)
    }

    async fn replace_unleased(
        &self,
        job: &JobRecord,
        from: u32,
        expected: &[u64],
        chunks: &[ChunkRecord],
    ) -> Result<Vec<u64>, StoreError> {
        self.resplit(job, from, expected, chunks).await
    }

    async fn register_worker(&self, worker_id: &str, _ttl_ms: u64) -> Result<(), StoreError> {
        // liveness is the leader's (its in-memory deadline of `ttl_ms`)
        self.register(worker_id).await
    }

    async fn keepalive_worker(&self, worker_id: &str) -> Result<bool, StoreError> {
        // a heartbeat is the leader's business: nothing to renew in etcd
        Ok(self.registrations.lease_of(worker_id).is_some())
    }

    async fn renew_workers(&self) -> Result<usize, StoreError> {
        self.registrations.renew_all(&self.client).await
    }

    async fn remove_worker(&self, worker_id: &str) -> Result<(), StoreError> {
        self.unregister(worker_id).await
    }

    async fn load(&self) -> Result<Snapshot, StoreError> {
        self.load_snapshot().await
    }

    async fn delete_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        let id = job.job_id.as_str();
        let layout = self.layout(id);
        let prefix = Some(DeleteOptions::new().with_prefix());
        let mut ops = vec![
            TxnOp::delete(self.keys.job(layout, id), None),
            TxnOp::delete(self.keys.chunks(layout, id), prefix.clone()),
            TxnOp::delete(self.keys.assigns(id), prefix.clone()),
        ];
        if layout == Layout::Paged {
            ops.push(TxnOp::delete(self.keys.plans(id), prefix));
        }
        if !job.request_id.is_empty() {
            ops.push(TxnOp::delete(self.keys.request(&job.request_id), None));
        }
        self.guarded(vec![], ops, "delete job").await?;
        self.legacy
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        Ok(())
    }

    fn describe(&self) -> String {
        format!("etcd state under {}", self.keys.prefix())
    }

    fn writes_wait(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_refused_before_proposal_is_retried_and_an_unknown_outcome_is_not() {
        let status = |s: tonic::Status| etcd_client::Error::GRpcStatus(s);
        // etcd's "too many requests": never proposed, so safe to send again
        assert!(not_sent(&status(tonic::Status::resource_exhausted(
            "etcdserver: too many requests"
        ))));
        // a deadline or a dropped connection: it may have been applied
        assert!(!not_sent(&status(tonic::Status::deadline_exceeded(
            "etcdserver: request timed out"
        ))));
        assert!(!not_sent(&status(tonic::Status::unavailable(
            "connection reset"
        ))));
    }
}

//! etcd transactions of one leader term: every transaction is guarded by the
//! leader's election key, and chunk writes that arrive together go out as one
//! transaction (group commit: one Raft entry and one WAL fsync for many
//! chunks).

use std::sync::Arc;

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use ferry_common::timing::GROUP_COMMIT_LINGER;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

use super::commit_pace::{Pace, COMMIT_BURST};
use super::etcd::{map_err, with_retry, LeaderFence};
use super::StoreError;

/// etcd's default `--max-txn-ops`: the most operations (and, separately,
/// compares) one transaction may hold.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;

/// Chunk writes per transaction for an etcd taking `max_txn_ops` operations
/// per transaction: a chunk write has one compare and two operations, the
/// transaction adds the leader fence, and a few stay spare (60 at etcd's
/// default 128, 252 at 512). Bigger transactions carry more chunks per Raft
/// entry and WAL fsync: at 1,000,000 chunks and 2,000 workers, 512 took
/// EtcdStore from 3,806 to 5,185 leases/s (bench/SCHED-RESULTS.md).
pub fn batch_for(max_txn_ops: usize) -> usize {
    (max_txn_ops.saturating_sub(8) / 2).max(1)
}

/// Transactions the group committer keeps in flight at once: enough to keep
/// etcd's WAL busy, few enough not to flood it (unbounded concurrent writes
/// made etcd time out under load in the scheduler benchmark).
const IN_FLIGHT: usize = 4;

/// A chunk write waiting for the group committer.
struct Pending {
    compares: Vec<Compare>,
    ops: Vec<TxnOp>,
    what: String,
    tx: oneshot::Sender<Result<i64, StoreError>>,
}

/// Combines chunk writes that arrive together (at most a batch's worth),
/// while the pace holds the next transaction back (see `commit_pace`), or
/// while earlier ones are in flight, into one transaction: the fence plus
/// every write's compares, then every write's operations. The transaction's
/// revision is each chunk's new version (and, for a lease, its fencing
/// token), exactly as if it had been written alone.
/// Writes to one chunk never share a transaction: the scheduler keeps at most
/// one write per chunk in flight.
pub(super) struct GroupCommitter {
    queue: mpsc::UnboundedSender<Pending>,
}

impl GroupCommitter {
    /// Starts the committer's task (inside a Tokio runtime); it ends when the
    /// committer is dropped.
    pub(super) fn start(client: Client, fence: Option<LeaderFence>, batch: usize) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(client, fence, rx, batch.max(1)));
        Self { queue }
    }

    /// Writes `ops` if `compares` (and the leader fence) hold; returns the
    /// revision of the transaction that carried them.
    pub(super) async fn write(
        &self,
        compares: Vec<Compare>,
        ops: Vec<TxnOp>,
        what: &str,
    ) -> Result<i64, StoreError> {
        let (tx, rx) = oneshot::channel();
        let pending = Pending {
            compares,
            ops,
            what: what.to_string(),
            tx,
        };
        let stopped = || StoreError::Unavailable("the group committer stopped".into());
        if self.queue.send(pending).is_err() {
            return Err(stopped());
        }
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }
}

async fn run(
    client: Client,
    fence: Option<LeaderFence>,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    batch_max: usize,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut pace = Pace::new(GROUP_COMMIT_LINGER, COMMIT_BURST, Instant::now());
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        // writes made together (a completion and the worker's next lease)
        // reach the queue within one poll of their caller: let them in
        tokio::task::yield_now().await;
        // the batch fills until the pace lets it go (at once while etcd is
        // not busy), and while it waits for a slot
        let go = pace.ready_at(Instant::now());
        while batch.len() < batch_max {
            match tokio::time::timeout_at(go, rx.recv()).await {
                Ok(Some(p)) => batch.push(p),
                Ok(None) | Err(_) => break,
            }
        }
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        while batch.len() < batch_max {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        pace.sent(Instant::now());
        let (client, fence) = (client.clone(), fence.clone());
        tokio::spawn(async move {
            commit(&client, fence.as_ref(), batch).await;
            drop(permit);
        });
    }
}

/// Commits one batch and answers each write.
async fn commit(client: &Client, fence: Option<&LeaderFence>, mut batch: Vec<Pending>) {
    crate::metrics::events()
        .etcd_txn_writes
        .record(batch.len() as u64, &[]);
    if batch.len() == 1 {
        let p = batch.remove(0);
        let r = guarded_txn(client, fence, p.compares, p.ops, &p.what).await;
        let _ = p.tx.send(r);
        return;
    }
    let compares = batch
        .iter()
        .flat_map(|p| p.compares.iter().cloned())
        .collect();
    let ops = batch.iter().flat_map(|p| p.ops.iter().cloned()).collect();
    match guarded_txn(client, fence, compares, ops, "chunk batch").await {
        Ok(rev) => {
            for p in batch {
                let _ = p.tx.send(Ok(rev));
            }
        }
        // Refused as a whole, nothing applied: a stale compare, or one write
        // etcd rejects (a worker lease that just expired). Each write alone
        // then gets its own answer, so one bad write does not fail the others.
        Err(StoreError::Conflict(_) | StoreError::Unavailable(_)) => {
            let alone = batch.into_iter().map(|p| async move {
                let r = guarded_txn(client, fence, p.compares, p.ops, &p.what).await;
                let _ = p.tx.send(r);
            });
            futures::future::join_all(alone).await;
        }
        Err(e) => {
            // the leader is deposed, or the outcome is unknown for all of them
            let not_leader = matches!(e, StoreError::NotLeader);
            let msg = e.to_string();
            for p in batch {
                let _ = p.tx.send(Err(if not_leader {
                    StoreError::NotLeader
                } else {
                    StoreError::OutcomeUnknown(msg.clone())
                }));
            }
        }
    }
}

/// Runs a transaction guarded by the leader fence plus `compares`; on a failed
/// compare, tells a lost leadership from a conflicting write.
pub(super) async fn guarded_txn(
    client: &Client,
    fence: Option<&LeaderFence>,
    compares: Vec<Compare>,
    ops: Vec<TxnOp>,
    what: &str,
) -> Result<i64, StoreError> {
    let mut all: Vec<Compare> = fence
        .iter()
        .map(|f| Compare::create_revision(f.key.clone(), CompareOp::Equal, f.create_revision))
        .collect();
    all.extend(compares);
    let mut txn = Txn::new().when(all).and_then(ops);
    if let Some(f) = fence {
        txn = txn.or_else(vec![TxnOp::get(f.key.clone(), None)]);
    }
    let started = std::time::Instant::now();
    let resp = with_retry(|| {
        let mut c = client.clone();
        let t = txn.clone();
        async move { c.txn(t).await }
    })
    .await;
    crate::metrics::events()
        .etcd_txn_duration
        .record(started.elapsed().as_secs_f64(), &[]);
    let resp = resp.map_err(map_err)?;
    let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
    if resp.succeeded() {
        return Ok(rev);
    }
    if let Some(f) = fence {
        let still = resp.op_responses().into_iter().any(|r| match r {
            TxnOpResponse::Get(g) => g
                .kvs()
                .iter()
                .any(|kv| kv.create_revision() == f.create_revision),
            _ => false,
        });
        if !still {
            return Err(StoreError::NotLeader);
        }
    }
    Err(StoreError::Conflict(what.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_fits_the_servers_operation_limit() {
        assert_eq!(batch_for(DEFAULT_MAX_TXN_OPS), 60);
        assert_eq!(batch_for(512), 252);
        // two operations and one compare per write, plus the fence
        for ops in [16, 128, 512, 10_000] {
            let b = batch_for(ops);
            assert!(2 * b <= ops && b < ops, "{ops}: {b}");
        }
        assert_eq!(batch_for(0), 1);
    }
}

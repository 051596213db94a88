//! Worker registrations in etcd. A worker's registration (`workers/<worker>`)
//! and its assignments (`assign/<job>/<n>`) are plain keys, under no etcd
//! lease: whether a worker lives is decided in the leader's memory from its
//! heartbeats (`Scheduler::expire_workers`), which never reach etcd; the
//! leader deletes the key of a worker it drops, and a chunk's write deletes
//! its assignment. A new leader adopts the workers it finds and drops those
//! that do not heartbeat within a lease time.
//!
//! Why no lease: a lease per worker renewed at each heartbeat made heartbeats
//! etcd requests. 10,000 workers heartbeating every 3.3 s sent 3,000
//! LeaseKeepAlive requests a second, plus one per chunk for the check before
//! each commit, and etcd 3.4 makes each renewal wait for its apply to catch
//! up with its commit: under a busy fleet's lease writes they timed out
//! ("waiting for the applied index took too long"), heartbeats failed and the
//! leader stepped down (bench/SCHED-RESULTS.md). One lease shared by all
//! workers would end that too, but a coordinator of an earlier version that
//! took over would revoke it with the first worker it removed (it revokes a
//! worker's lease), dropping every assignment at once; plain keys it adopts
//! as workers whose lease is gone, and they simply register again.
//!
//! Workers registered by a coordinator of an earlier version have keys under
//! their own lease; this store renews those leases (in a task of its own,
//! every third of their TTL) until the workers are dropped, so their
//! assignments do not vanish while they live.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper, PutOptions, TxnOp};
use ferry_common::timing::DEFAULT_WORKER_LEASE_TTL;
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

use super::etcd::{map_err, with_retry, EtcdStore};
use super::StoreError;

/// The lease id of a registration stored under no lease.
pub(super) const NO_LEASE: i64 = 0;

/// The shortest time between two renewals (a lease of the minimum TTL).
const MIN_RENEW_EVERY: Duration = Duration::from_millis(200);

/// How soon a renewal that failed (etcd unreachable) is tried again.
const RENEW_RETRY: Duration = Duration::from_millis(500);

/// Who is registered, and the leases of registrations made by earlier versions.
pub(super) struct Registrations {
    /// Each registered worker and the etcd lease its keys are under (`NO_LEASE`
    /// for registrations this version made).
    by_worker: std::sync::Mutex<HashMap<String, i64>>,
    /// Keep-alive streams of earlier versions' leases, and how often to renew.
    keepers: Mutex<Keepers>,
    /// Wakes the renewal task at once (leases were adopted).
    wake: Notify,
    /// Ends the renewal task with the store.
    stop: CancellationToken,
}

/// Keep-alive streams, opened on first use.
struct Keepers {
    streams: HashMap<i64, (LeaseKeeper, LeaseKeepAliveStream)>,
    every: Duration,
}

impl Registrations {
    /// No registrations yet; starts the renewal task over `client` (call
    /// inside a Tokio runtime). The task ends when the store is dropped.
    pub(super) fn start(client: Client) -> Arc<Self> {
        let reg = Arc::new(Self {
            by_worker: std::sync::Mutex::new(HashMap::new()),
            keepers: Mutex::new(Keepers {
                streams: HashMap::new(),
                every: DEFAULT_WORKER_LEASE_TTL / 3,
            }),
            wake: Notify::new(),
            stop: CancellationToken::new(),
        });
        tokio::spawn(renew_loop(Arc::clone(&reg), client));
        reg
    }

    /// Ends the renewal task.
    pub(super) fn stop(&self) {
        self.stop.cancel();
    }

    fn workers(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.by_worker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lease worker `id`'s keys are under (`NO_LEASE`: none), if it is registered.
    pub(super) fn lease_of(&self, id: &str) -> Option<i64> {
        self.workers().get(id).copied()
    }

    /// Records a registered worker (one found in etcd, or just registered)
    /// and the lease its key is under.
    pub(super) fn adopt(&self, id: &str, lease: i64) {
        self.workers().insert(id.to_string(), lease);
        if lease != NO_LEASE {
            self.wake.notify_one();
        }
    }

    /// Renews every lease a registration is under (those of earlier
    /// versions), now; returns the workers still registered. A lease etcd no
    /// longer has takes its workers with it (they are told to register again
    /// at their next call).
    pub(super) async fn renew_all(&self, client: &Client) -> Result<usize, StoreError> {
        let mut k = self.keepers.lock().await;
        let ids: BTreeSet<i64> = self
            .workers()
            .values()
            .copied()
            .filter(|l| *l != NO_LEASE)
            .collect();
        k.streams.retain(|id, _| ids.contains(id));
        let mut gone = Vec::new();
        let mut shortest: Option<i64> = None;
        for id in ids {
            let ttl = renew_one(client, &mut k.streams, id).await?;
            if ttl > 0 {
                shortest = Some(shortest.map_or(ttl, |s| s.min(ttl)));
            } else {
                k.streams.remove(&id);
                gone.push(id);
            }
        }
        if !gone.is_empty() {
            let dropped = {
                let mut w = self.workers();
                let before = w.len();
                w.retain(|_, l| !gone.contains(l));
                before - w.len()
            };
            tracing::warn!(
                leases = gone.len(),
                workers = dropped,
                "etcd expired the leases of workers registered by an earlier version; those workers register again at their next call"
            );
        }
        if let Some(ttl) = shortest {
            let every = (Duration::from_secs(ttl as u64) / 3).max(MIN_RENEW_EVERY);
            if every < k.every {
                // the renewal task may be asleep for the longer period
                self.wake.notify_one();
            }
            k.every = every;
        }
        Ok(self.workers().len())
    }
}

/// Renews one lease over its keep-alive stream (reopened once, on another
/// member, when it broke); returns the TTL etcd gave it, 0 when it is gone.
async fn renew_one(
    client: &Client,
    streams: &mut HashMap<i64, (LeaseKeeper, LeaseKeepAliveStream)>,
    id: i64,
) -> Result<i64, StoreError> {
    if let Some((keeper, stream)) = streams.get_mut(&id) {
        let answer = match keeper.keep_alive().await {
            Ok(()) => stream.message().await,
            Err(e) => Err(e),
        };
        if let Ok(Some(resp)) = answer {
            return Ok(resp.ttl());
        }
        streams.remove(&id);
    }
    let (mut keeper, mut stream) = with_retry(|| {
        let mut c = client.clone();
        async move { c.lease_keep_alive(id).await }
    })
    .await
    .map_err(map_err)?;
    keeper.keep_alive().await.map_err(map_err)?;
    let ttl = stream
        .message()
        .await
        .map_err(map_err)?
        .map_or(0, |r| r.ttl());
    if ttl > 0 {
        streams.insert(id, (keeper, stream));
    }
    Ok(ttl)
}

/// Renews the leases of earlier versions' registrations once per third of
/// their TTL until the store is dropped (idle when there are none).
async fn renew_loop(reg: Arc<Registrations>, client: Client) {
    loop {
        let every = reg.keepers.lock().await.every;
        tokio::select! {
            _ = reg.stop.cancelled() => return,
            _ = reg.wake.notified() => {}
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = reg.renew_all(&client).await {
            tracing::warn!(error = %e, "cannot renew the etcd leases of workers registered by an earlier version; retrying");
            tokio::select! {
                _ = reg.stop.cancelled() => return,
                _ = tokio::time::sleep(RENEW_RETRY) => {}
            }
        }
    }
}

impl EtcdStore {
    /// Registers a worker: one put of its key, in a transaction shared with
    /// the other writes in flight (a fleet registering at once after a
    /// takeover reaches etcd as a few transactions, never a backlog that etcd
    /// refuses with "too many requests"). A worker already registered stays
    /// as it is.
    pub(super) async fn register(&self, worker_id: &str) -> Result<(), StoreError> {
        if self.registrations.lease_of(worker_id).is_some() {
            tracing::debug!(worker = worker_id, "worker registered again; still stored");
            return Ok(());
        }
        let op = TxnOp::put(
            self.keys.key(&format!("workers/{worker_id}")),
            NO_LEASE.to_string(),
            None,
        );
        self.batched(vec![], vec![op], "register worker").await?;
        self.registrations.adopt(worker_id, NO_LEASE);
        Ok(())
    }

    /// Drops a worker's registration: its key, in a shared transaction. Its
    /// `assign/…` keys go as its chunks are written again (the scheduler
    /// requeues them before it removes the worker).
    pub(super) async fn unregister(&self, worker_id: &str) -> Result<(), StoreError> {
        let known = self.registrations.workers().remove(worker_id).is_some();
        if !known {
            return Ok(());
        }
        let op = TxnOp::delete(self.keys.key(&format!("workers/{worker_id}")), None);
        self.batched(vec![], vec![op], "remove worker").await?;
        Ok(())
    }

    /// How a worker's assignment is written: under its lease when an
    /// earlier version registered it, else under none.
    pub(super) fn assignment_options(
        &self,
        worker_id: &str,
    ) -> Result<Option<PutOptions>, StoreError> {
        match self.registrations.lease_of(worker_id) {
            None => Err(StoreError::Conflict(format!(
                "worker {worker_id} is not registered"
            ))),
            Some(NO_LEASE) => Ok(None),
            Some(lease) => Ok(Some(PutOptions::new().with_lease(lease))),
        }
    }
}

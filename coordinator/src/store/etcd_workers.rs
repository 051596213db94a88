//! Worker registrations in etcd. Every worker a leader registers is stored
//! under one etcd lease of that leader's term (`workers/<worker>` holds the
//! lease id, and the worker's `assign/…` keys go under it too), which a task
//! of the store renews once per third of its TTL. A heartbeat is checked in
//! the leader's memory and never reaches etcd.
//!
//! Why one lease and not one per worker: a lease per worker renewed on each
//! heartbeat made heartbeats etcd requests. 10,000 workers heartbeating every
//! 3.3 s sent 3,000 LeaseKeepAlive requests a second, plus one per chunk for
//! the check before each commit, and etcd 3.4 makes each renewal wait for its
//! apply to catch up with its commit: under the lease writes of a busy fleet
//! they timed out ("waiting for the applied index took too long"), heartbeats
//! failed and the leader stepped down (bench/SCHED-RESULTS.md). Liveness was
//! already decided in the leader's memory (`Scheduler::expire_workers`); the
//! etcd lease only keeps registrations and assignments from outliving a leader
//! that stops renewing them, and one lease does that as well as 10,000.
//!
//! Workers registered by an earlier leader keep the lease they were stored
//! under (that leader's, or their own if it ran a version with one lease per
//! worker); this store renews every lease its registrations are under.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper, PutOptions, TxnOp};
use ferry_common::timing::DEFAULT_WORKER_LEASE_TTL;
use tokio::sync::{Mutex, Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::etcd::{map_err, with_retry, EtcdStore};
use super::StoreError;

/// Worker registrations written to etcd at once: each is one put, and puts
/// in flight together share a transaction (the group committer), so a fleet
/// registering at once (10,000 workers after a takeover) reaches etcd as a few
/// hundred transactions, never a backlog that etcd refuses ("too many
/// requests", under gRPC code UNKNOWN, which reads as an unknown outcome).
const REGISTER_AT_ONCE: usize = 256;

/// The shortest time between two renewals (a lease of the minimum TTL).
const MIN_RENEW_EVERY: Duration = Duration::from_millis(200);

/// How soon a renewal that failed (etcd unreachable) is tried again.
const RENEW_RETRY: Duration = Duration::from_millis(500);

/// The leases worker registrations are under, and who is registered.
pub(super) struct Registrations {
    /// Each registered worker and the etcd lease its keys are under.
    by_worker: std::sync::Mutex<HashMap<String, i64>>,
    /// The lease this term's new registrations go under (granted at the first).
    shared: Mutex<Option<i64>>,
    /// Keep-alive streams by lease, and how often to renew.
    keepers: Mutex<Keepers>,
    /// Wakes the renewal task early (a lease of unknown TTL was just granted).
    wake: Notify,
    /// Ends the renewal task with the store.
    stop: CancellationToken,
    /// Bounds the registrations in flight (see `REGISTER_AT_ONCE`).
    registering: Semaphore,
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
            shared: Mutex::new(None),
            keepers: Mutex::new(Keepers {
                streams: HashMap::new(),
                every: DEFAULT_WORKER_LEASE_TTL / 3,
            }),
            wake: Notify::new(),
            stop: CancellationToken::new(),
            registering: Semaphore::new(REGISTER_AT_ONCE),
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

    /// The lease worker `id`'s keys are under, if it is registered.
    pub(super) fn lease_of(&self, id: &str) -> Option<i64> {
        self.workers().get(id).copied()
    }

    /// Records a worker found in etcd (registered by an earlier leader).
    pub(super) fn adopt(&self, id: &str, lease: i64) {
        self.workers().insert(id.to_string(), lease);
    }

    /// The lease new registrations go under, granted with `ttl_ms` if this
    /// term has none yet.
    async fn shared_lease(&self, client: &Client, ttl_ms: u64) -> Result<i64, StoreError> {
        let mut shared = self.shared.lock().await;
        if let Some(id) = *shared {
            return Ok(id);
        }
        let ttl = ttl_ms.div_ceil(1000).max(1) as i64;
        let grant = with_retry(|| {
            let mut c = client.clone();
            async move { c.lease_grant(ttl, None).await }
        })
        .await
        .map_err(map_err)?;
        tracing::info!(
            lease = grant.id(),
            ttl_s = grant.ttl(),
            "granted the etcd lease this leader keeps worker registrations under"
        );
        *shared = Some(grant.id());
        // the renewal task learns its TTL at once
        self.wake.notify_one();
        Ok(grant.id())
    }

    /// Drops every registration under `lease` when etcd no longer has it;
    /// true when it was gone.
    async fn forget_if_expired(&self, client: &Client, lease: i64) -> bool {
        let alive = client
            .clone()
            .lease_time_to_live(lease, None)
            .await
            .map(|r| r.ttl() > 0);
        if alive.unwrap_or(true) {
            return false;
        }
        self.forget(&[lease]).await;
        true
    }

    /// Drops every registration under the given (expired) leases.
    async fn forget(&self, gone: &[i64]) -> usize {
        let dropped = {
            let mut w = self.workers();
            let before = w.len();
            w.retain(|_, l| !gone.contains(l));
            before - w.len()
        };
        let mut shared = self.shared.lock().await;
        if shared.is_some_and(|id| gone.contains(&id)) {
            *shared = None;
        }
        dropped
    }

    /// Renews every lease a registration is under, now; returns the workers
    /// still registered. A lease etcd no longer has takes its workers with it
    /// (they are told to register again at their next call).
    pub(super) async fn renew_all(&self, client: &Client) -> Result<usize, StoreError> {
        let mut k = self.keepers.lock().await;
        let mut ids: BTreeSet<i64> = self.workers().values().copied().collect();
        if let Some(id) = *self.shared.lock().await {
            ids.insert(id);
        }
        ids.remove(&0);
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
            let dropped = self.forget(&gone).await;
            tracing::warn!(
                leases = gone.len(),
                workers = dropped,
                "etcd expired the lease of worker registrations (not renewed within its TTL); those workers register again at their next call"
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

/// Renews the registrations' leases once per third of their TTL until the
/// store is dropped.
async fn renew_loop(reg: Arc<Registrations>, client: Client) {
    loop {
        let every = reg.keepers.lock().await.every;
        tokio::select! {
            _ = reg.stop.cancelled() => return,
            _ = reg.wake.notified() => {}
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = reg.renew_all(&client).await {
            tracing::warn!(error = %e, "cannot renew the etcd lease of worker registrations; retrying");
            tokio::select! {
                _ = reg.stop.cancelled() => return,
                _ = tokio::time::sleep(RENEW_RETRY) => {}
            }
        }
    }
}

impl EtcdStore {
    /// Registers a worker under this term's registrations lease (granted
    /// with `ttl_ms` at the first registration); a worker already registered
    /// stays as it is.
    pub(super) async fn register(&self, worker_id: &str, ttl_ms: u64) -> Result<(), StoreError> {
        if self.registrations.lease_of(worker_id).is_some() {
            tracing::debug!(worker = worker_id, "worker registered again; still stored");
            return Ok(());
        }
        // never closed, so acquiring only waits
        let _slot = self.registrations.registering.acquire().await;
        let mut retried = false;
        loop {
            let lease = self
                .registrations
                .shared_lease(&self.client, ttl_ms)
                .await?;
            let op = TxnOp::put(
                self.keys.key(&format!("workers/{worker_id}")),
                lease.to_string(),
                Some(PutOptions::new().with_lease(lease)),
            );
            match self.batched(vec![], vec![op], "register worker").await {
                Ok(_) => {
                    self.registrations.adopt(worker_id, lease);
                    return Ok(());
                }
                // etcd refuses a put under a lease it no longer has: the
                // shared lease ran out (a leader starved past its TTL)
                Err(StoreError::Unavailable(e)) if !retried => {
                    retried = true;
                    if !self
                        .registrations
                        .forget_if_expired(&self.client, lease)
                        .await
                    {
                        return Err(StoreError::Unavailable(e));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Drops a worker's registration: its key now, in a shared transaction.
    /// Its `assign/…` keys go as its chunks are written again (the scheduler
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
}

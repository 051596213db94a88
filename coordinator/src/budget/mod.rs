//! The cluster-wide connection budget: how many sessions Ferry may hold on
//! each named connection at once, across every job and worker. Chunk leases
//! (a source and a target session on a worker, `try_lease`), connections a
//! worker keeps pooled after its chunk ended (until they close, see
//! `timing::pooled_linger`), and the coordinator's own sessions (planner,
//! verify, history, ledger GC, exported snapshots: `reserve`) all count.
//! Nothing fails for lack of connections: leases wait in the queue,
//! reservations wait until one is released.

mod accounting;
mod gauges;
pub mod limits;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ferry_common::connections::ConnectionRegistry;
use ferry_common::db::DbRole;
use ferry_common::timing::BUDGET_POLL;
use tokio::sync::Notify;

use accounting::{Held, Inner};
pub use gauges::register_gauges;
pub use limits::{LimitError, DEFAULT_SHARE};

/// Least time between two failed reads of a server's limit (a server that
/// is down is not asked every scheduler tick).
const DERIVE_RETRY: Duration = Duration::from_secs(10);

/// One chunk's sessions as a lease holds them.
#[derive(Debug, Clone, Copy)]
pub struct ChunkUse<'a> {
    /// The chunk's job.
    pub job_id: &'a str,
    /// The chunk's number.
    pub chunk_no: u32,
    /// The worker holding it.
    pub worker: &'a str,
    /// Its source connection's name.
    pub source: &'a str,
    /// Its target connection's name.
    pub target: &'a str,
}

impl ChunkUse<'_> {
    fn conns(&self) -> [(String, DbRole); 2] {
        [
            (key(self.source), DbRole::Source),
            (key(self.target), DbRole::Target),
        ]
    }
}

/// One connection's use, for metrics and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The connection's name (lower case).
    pub name: String,
    /// Sessions counted now.
    pub in_use: u32,
    /// Its limit, once known (`None`: unlimited or not yet read).
    pub limit: Option<u32>,
}

/// The budget; share it behind an `Arc`.
pub struct Budget {
    /// Where servers are read for default limits (None: no default limit).
    registry: Option<ConnectionRegistry>,
    explicit: BTreeMap<String, u32>,
    share: f64,
    linger: Duration,
    /// The workers' idle timeout the linger was derived from (None: unknown).
    pool_idle: Option<Duration>,
    inner: Mutex<Inner>,
    freed: Notify,
    resolving: tokio::sync::Mutex<()>,
    /// A background `resolve_pending` is running.
    resolving_spawned: AtomicBool,
}

impl Default for Budget {
    /// A budget without limits (tests and tools that open no database).
    fn default() -> Self {
        Self::new(None, BTreeMap::new(), DEFAULT_SHARE, Duration::ZERO)
    }
}

fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

impl Budget {
    /// A budget with `explicit` limits by name; other names of `registry`
    /// get `share` of their server's connections (no limit without a
    /// registry). A worker's pooled session counts for `linger` after its
    /// chunk ended.
    pub fn new(
        registry: Option<ConnectionRegistry>,
        explicit: BTreeMap<String, u32>,
        share: f64,
        linger: Duration,
    ) -> Self {
        Self {
            registry,
            explicit: explicit.into_iter().map(|(k, v)| (key(&k), v)).collect(),
            share,
            linger,
            pool_idle: None,
            inner: Mutex::new(Inner::default()),
            freed: Notify::new(),
            resolving: tokio::sync::Mutex::new(()),
            resolving_spawned: AtomicBool::new(false),
        }
    }

    /// Records the workers' idle timeout (`FERRY_POOL_IDLE_TIMEOUT`) this
    /// budget's linger assumes; workers are told it when they register.
    pub fn with_pool_idle(mut self, idle: Duration) -> Self {
        self.pool_idle = Some(idle);
        self
    }

    /// The workers' idle timeout this budget assumes, if known.
    pub fn pool_idle(&self) -> Option<Duration> {
        self.pool_idle
    }

    /// Whether any connection may be limited (else leases skip the budget).
    pub fn is_limited(&self) -> bool {
        self.registry.is_some() || !self.explicit.is_empty()
    }

    /// The limit set for `name` by `FERRY_CONN_<NAME>_MAX_CONNECTIONS`, if any.
    pub fn explicit_limit(&self, name: &str) -> Option<u32> {
        self.explicit.get(&key(name)).copied()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Some(limit)` once known (`Some(None)`: unlimited), `None` while unread.
    fn known(&self, inner: &Inner, name: &str) -> Option<Option<u32>> {
        if let Some(n) = self.explicit.get(name) {
            return Some(Some(*n));
        }
        if self.registry.is_none() {
            return Some(None);
        }
        inner.derived.get(name).copied()
    }

    /// Reads the limit of `name` from its server unless known; logged once.
    /// A server that cannot be read leaves it unknown (tried again later).
    pub async fn ensure(&self, name: &str) {
        let name = key(name);
        if self.known(&self.lock(), &name).is_some() {
            return;
        }
        let Some(registry) = &self.registry else {
            return;
        };
        let _one = self.resolving.lock().await;
        {
            let inner = self.lock();
            let failed_lately = inner
                .failed
                .get(&name)
                .is_some_and(|at| at.elapsed() < DERIVE_RETRY);
            if self.known(&inner, &name).is_some() || failed_lately {
                return;
            }
        }
        match limits::derive(registry, &name, self.share).await {
            Ok(limit) => {
                let mut inner = self.lock();
                inner.derived.insert(name.clone(), limit);
                inner.unresolved.remove(&name);
                drop(inner);
                self.freed.notify_waiters();
            }
            Err(e) => {
                self.lock().failed.insert(name.clone(), Instant::now());
                tracing::warn!(
                    connection = %name,
                    error = %e,
                    retry_s = DERIVE_RETRY.as_secs(),
                    "cannot read the server's max_connections for the connection budget; will try again"
                )
            }
        }
    }

    /// Reads the limits that leases asked for before they were known.
    pub async fn resolve_pending(&self) {
        let names: Vec<String> = self.lock().unresolved.iter().cloned().collect();
        for name in names {
            self.ensure(&name).await;
        }
    }

    /// Runs `resolve_pending` in the background unless it already runs.
    pub fn spawn_resolve(self: &Arc<Self>) {
        if self.resolving_spawned.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            me.resolve_pending().await;
            me.resolving_spawned.store(false, Ordering::Release);
        });
    }

    /// Whether some lease waits for a limit to be read.
    pub fn has_pending(&self) -> bool {
        !self.lock().unresolved.is_empty()
    }

    /// Takes the sessions of chunk `c` when they fit, reusing sessions its
    /// worker still has pooled; otherwise names the connections that are full.
    pub fn try_lease(&self, c: &ChunkUse<'_>, now: Instant) -> Result<(), Vec<String>> {
        let mut inner = self.lock();
        inner.expire(now);
        let mut reuse: Vec<(String, DbRole)> = Vec::new();
        let mut need: BTreeMap<String, u32> = BTreeMap::new();
        let conns = c.conns();
        for (name, role) in &conns {
            let skip = reuse.iter().filter(|(n, r)| n == name && r == role).count();
            if inner.pooled(c.worker, name, *role, skip) {
                reuse.push((name.clone(), *role));
            } else {
                *need.entry(name.clone()).or_default() += 1;
            }
        }
        let mut full = Vec::new();
        for (name, n) in &need {
            match self.known(&inner, name) {
                None => {
                    inner.unresolved.insert(name.clone());
                    full.push(name.clone());
                }
                Some(None) => {}
                Some(Some(limit)) => {
                    if inner.in_use(name) + n > limit {
                        full.push(name.clone());
                    }
                }
            }
        }
        if !full.is_empty() {
            return Err(full);
        }
        for (name, role) in reuse {
            inner.take_pooled(c.worker, &name, role);
        }
        let held = Held {
            worker: c.worker.to_string(),
            conns,
        };
        // leased again elsewhere: the old worker's sessions end in time
        inner.hold((c.job_id.to_string(), c.chunk_no), held, now + self.linger);
        Ok(())
    }

    /// Gives back the sessions of chunk `chunk_no` of `job_id` (its lease
    /// ended): counted while its worker may keep them pooled. Nothing
    /// when it was not leased.
    pub fn release_chunk(&self, job_id: &str, chunk_no: u32, now: Instant) {
        let released = self
            .lock()
            .unhold(&(job_id.to_string(), chunk_no), now + self.linger);
        if released {
            self.freed.notify_waiters();
        }
    }

    /// Counts chunk `c` as leased without asking whether it fits (a lease
    /// that stands though its release was noted, a chunk adopted after a
    /// takeover).
    pub fn hold_chunk(&self, c: &ChunkUse<'_>, now: Instant) {
        let held = Held {
            worker: c.worker.to_string(),
            conns: c.conns(),
        };
        self.lock()
            .hold((c.job_id.to_string(), c.chunk_no), held, now + self.linger);
    }

    /// Brings the leased chunks in line with the scheduler's (`live`): chunks
    /// no longer leased release their sessions (counted while their worker
    /// may keep them pooled), chunks leased elsewhere (recovery) are added.
    /// Returns how many chunks it had to add or release: 0 when the
    /// incremental counts (`try_lease`, `release_chunk`) agreed.
    pub fn sync_chunks<'a>(
        &self,
        live: impl IntoIterator<Item = ChunkUse<'a>>,
        now: Instant,
    ) -> usize {
        let mut inner = self.lock();
        let mut seen = HashSet::new();
        let mut added = 0;
        for c in live {
            let k = (c.job_id.to_string(), c.chunk_no);
            if inner.holder(&k) != Some(c.worker) {
                let held = Held {
                    worker: c.worker.to_string(),
                    conns: c.conns(),
                };
                inner.hold(k.clone(), held, now + self.linger);
                added += 1;
            }
            seen.insert(k);
        }
        let gone: Vec<(String, u32)> = inner
            .chunk_keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for k in &gone {
            inner.unhold(k, now + self.linger);
        }
        let expired = inner.expire(now);
        drop(inner);
        if !gone.is_empty() || expired {
            self.freed.notify_waiters();
        }
        added + gone.len()
    }

    /// Takes one session on each of `names` (a name twice: two) for the
    /// coordinator when they fit with `spare` more on each still free (an
    /// exported snapshot asks for 1 so a chunk can still run beside it).
    pub fn try_reserve(self: &Arc<Self>, names: &[&str], spare: u32) -> Option<Reservation> {
        let names: Vec<String> = names.iter().map(|n| key(n)).collect();
        let mut need: BTreeMap<&str, u32> = BTreeMap::new();
        for n in &names {
            *need.entry(n.as_str()).or_default() += 1;
        }
        let mut inner = self.lock();
        inner.expire(Instant::now());
        let fits = need.iter().all(|(name, n)| match self.known(&inner, name) {
            // unread (server unreachable): the session fails on its own
            None | Some(None) => true,
            Some(Some(limit)) => inner.in_use(name) + n + spare <= limit,
        });
        if !fits {
            return None;
        }
        for n in &names {
            *inner.reserved.entry(n.clone()).or_default() += 1;
        }
        Some(Reservation {
            budget: Arc::clone(self),
            names,
        })
    }

    /// The names among `names` that have no session free now.
    pub fn full(&self, names: &[&str]) -> Vec<String> {
        let mut inner = self.lock();
        inner.expire(Instant::now());
        let mut out: Vec<String> = names
            .iter()
            .map(|n| key(n))
            .filter(|n| match self.known(&inner, n) {
                Some(Some(limit)) => inner.in_use(n) >= limit,
                _ => false,
            })
            .collect();
        out.dedup();
        out
    }

    /// Takes one session on each of `names` for the coordinator, reading
    /// their limits first and waiting while they are full; logs
    /// "waiting for connections on <name>" once per wait, naming `who` waits
    /// (a job id, "history").
    pub async fn reserve(self: &Arc<Self>, names: &[&str], who: &str) -> Reservation {
        for n in names {
            self.ensure(n).await;
        }
        if let Some(r) = self.try_reserve(names, 0) {
            return r;
        }
        let full = self.full(names).join(", ");
        tracing::info!(waiter = %who, connections = %full, "waiting for connections on {full}");
        self.wait_reserve(names, 0).await
    }

    /// Takes one session on each of `names`, waiting (silently) while they
    /// are full or `spare` more would not fit beside them; their limits
    /// should be read first (`ensure`).
    pub async fn wait_reserve(self: &Arc<Self>, names: &[&str], spare: u32) -> Reservation {
        loop {
            let freed = self.freed.notified();
            if let Some(r) = self.try_reserve(names, spare) {
                return r;
            }
            let _ = tokio::time::timeout(BUDGET_POLL, freed).await;
        }
    }

    /// Every known connection's use and limit, by name.
    pub fn usage(&self) -> Vec<Usage> {
        let mut inner = self.lock();
        inner.expire(Instant::now());
        let mut names: BTreeSet<String> = self.explicit.keys().cloned().collect();
        names.extend(inner.derived.keys().cloned());
        names.extend(inner.reserved.keys().cloned());
        names.extend(inner.held_names().cloned());
        names
            .into_iter()
            .map(|name| Usage {
                in_use: inner.in_use(&name),
                limit: self.known(&inner, &name).flatten(),
                name,
            })
            .collect()
    }

    /// Sessions counted on `name` now.
    pub fn in_use(&self, name: &str) -> u32 {
        let mut inner = self.lock();
        inner.expire(Instant::now());
        inner.in_use(&key(name))
    }
}

/// Coordinator sessions taken from the budget, given back when dropped.
#[must_use = "the sessions are given back when the reservation is dropped"]
pub struct Reservation {
    budget: Arc<Budget>,
    names: Vec<String>,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reservation({})", self.names.join(", "))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut inner = self.budget.lock();
        for n in &self.names {
            if let Some(c) = inner.reserved.get_mut(n) {
                *c = c.saturating_sub(1);
                if *c == 0 {
                    inner.reserved.remove(n);
                }
            }
        }
        drop(inner);
        self.budget.freed.notify_waiters();
    }
}

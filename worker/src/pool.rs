//! Idle database connections kept per named connection, so chunks do not pay
//! a connection set-up each. An idle connection is closed after the idle
//! timeout (`FERRY_POOL_IDLE_TIMEOUT`, a few seconds), so `pg_stat_activity`
//! shows the sessions in use and the coordinator's connection budget, which
//! counts a pooled session for as long (`timing::pooled_linger`), is right.
//! The coordinator says at registration how long it counts them; a worker
//! set to keep them longer follows it (`IdleTimeout`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use ferry_common::connections::ConnectionRegistry;
use ferry_common::db::DbRole;
use ferry_common::errors::{DbFailure, ErrorClass};
use ferry_connectors::db::{self, Conn};

/// Most idle connections kept per name.
const MAX_IDLE: usize = 8;

type Idle = HashMap<(String, DbRole), Vec<(Conn, Instant)>>;

/// How long an idle pooled connection stays open: the worker's own setting,
/// lowered to the coordinator's when its connection budget counts pooled
/// connections for less (a shorter time only makes that count safer).
#[derive(Debug)]
pub struct IdleTimeout {
    own: Duration,
    ms: AtomicU64,
}

impl IdleTimeout {
    /// The worker's own idle timeout (`FERRY_POOL_IDLE_TIMEOUT`).
    pub fn new(own: Duration) -> Arc<Self> {
        Arc::new(Self {
            own,
            ms: AtomicU64::new(own.as_millis() as u64),
        })
    }

    /// The idle timeout in force.
    pub fn get(&self) -> Duration {
        Duration::from_millis(self.ms.load(Ordering::Relaxed))
    }

    /// Follows the coordinator's idle timeout (zero: it did not say); returns
    /// the timeout in force when that is shorter than the worker's own.
    pub fn follow(&self, coordinator: Duration) -> Option<Duration> {
        let now = if coordinator.is_zero() {
            self.own
        } else {
            self.own.min(coordinator)
        };
        self.ms.store(now.as_millis() as u64, Ordering::Relaxed);
        (now < self.own).then_some(now)
    }
}

/// A small pool of idle connections by connection name and role (a
/// connection serves one role for its life, so metrics label it rightly).
pub struct Pool {
    registry: ConnectionRegistry,
    idle: Arc<Mutex<Idle>>,
    idle_timeout: Arc<IdleTimeout>,
}

impl Pool {
    /// An empty pool over `registry` whose idle connections close after
    /// `idle_timeout` (swept every half of it, on the current runtime).
    pub fn new(registry: ConnectionRegistry, idle_timeout: Arc<IdleTimeout>) -> Self {
        let idle: Arc<Mutex<Idle>> = Arc::default();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(sweep(Arc::downgrade(&idle), Arc::clone(&idle_timeout)));
        }
        Self {
            registry,
            idle,
            idle_timeout,
        }
    }

    /// An open connection to `name` for `role`: an idle one, or a new one.
    pub async fn get(&self, name: &str, role: DbRole) -> Result<Conn, DbFailure> {
        let key = (name.to_string(), role);
        loop {
            let c = self
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(&key)
                .and_then(Vec::pop);
            match c {
                Some((c, since)) if !c.is_closed() && since.elapsed() < self.idle_timeout.get() => {
                    return Ok(c)
                }
                Some(_) => continue,
                None => break,
            }
        }
        let url = self.registry.url(name).map_err(|e| DbFailure {
            class: ErrorClass::Permanent,
            sqlstate: None,
            message: e.to_string(),
        })?;
        db::open(role, name, url, None).await
    }

    /// Returns a healthy connection for reuse.
    pub fn put(&self, name: &str, role: DbRole, conn: Conn) {
        if conn.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let v = idle.entry((name.to_string(), role)).or_default();
        if v.len() < MAX_IDLE {
            v.push((conn, Instant::now()));
        }
    }

    /// Idle connections held now (tests, metrics).
    pub fn idle_count(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.values().map(Vec::len).sum()
    }
}

/// Closes connections idle for the timeout or longer, every half of it,
/// until the pool is dropped.
async fn sweep(idle: Weak<Mutex<Idle>>, timeout: Arc<IdleTimeout>) {
    loop {
        tokio::time::sleep((timeout.get() / 2).max(Duration::from_millis(50))).await;
        let timeout = timeout.get();
        let Some(idle) = idle.upgrade() else { return };
        let closing: Vec<Conn> = {
            let mut map = idle.lock().unwrap_or_else(|p| p.into_inner());
            let mut out = Vec::new();
            for v in map.values_mut() {
                let (old, keep): (Vec<_>, Vec<_>) = std::mem::take(v)
                    .into_iter()
                    .partition(|(_, since)| since.elapsed() >= timeout);
                *v = keep;
                out.extend(old.into_iter().map(|(c, _)| c));
            }
            map.retain(|_, v| !v.is_empty());
            out
        };
        if !closing.is_empty() {
            tracing::debug!(
                connections = closing.len(),
                "closing idle pooled connections"
            );
        }
        // dropping a connection ends its session
        drop(closing);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::IdleTimeout;

    #[test]
    fn follows_a_shorter_coordinator_and_keeps_its_own_otherwise() {
        let t = IdleTimeout::new(Duration::from_secs(120));
        assert_eq!(
            t.follow(Duration::from_secs(3)),
            Some(Duration::from_secs(3))
        );
        assert_eq!(t.get(), Duration::from_secs(3));
        assert_eq!(
            t.follow(Duration::ZERO),
            None,
            "a coordinator that does not say"
        );
        assert_eq!(t.get(), Duration::from_secs(120));
        let short = IdleTimeout::new(Duration::from_secs(1));
        assert_eq!(short.follow(Duration::from_secs(3)), None);
        assert_eq!(short.get(), Duration::from_secs(1));
    }
}

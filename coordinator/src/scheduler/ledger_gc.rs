//! Ledger collection: the ledger rows of jobs long finished leave the
//! databases, PostgreSQL, MySQL and SQLite alike (`ferry gc`, and the
//! leader hourly past `FERRY_LEDGER_RETENTION`). A job this leader still
//! holds — running, finished within the job retention, or failed and
//! awaiting a resume — keeps its rows whatever their age: a chunk that may
//! run again needs its row to commit at most once. The leader decides which
//! jobs stay; the connectors (`db/ledger_gc.rs` there, one module per
//! database) remove the rest.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_common::connections::ConnectionRegistry;
use ferry_common::db::DbRole;
use ferry_common::errors::DbFailure;
use ferry_common::proto::{CollectGarbageResponse, LedgerCollected};
use ferry_common::timing::{LEDGER_GC_FIRST, LEDGER_GC_SWEEP};
use ferry_connectors::db::{self, ledger_gc};
use ferry_connectors::kind::DbKind;

use super::Scheduler;

impl Scheduler {
    /// Removes, from every database the connections name, the ledger rows of
    /// jobs whose newest row is older than `older_than` and that this
    /// scheduler does not hold; databases without a ledger table are left
    /// alone, and those that cannot be reached are named in the warnings.
    pub async fn collect_ledgers(&self, older_than: Duration) -> CollectGarbageResponse {
        let keep: HashSet<String> = self.state.lock().await.jobs.keys().cloned().collect();
        let schema = self.config.ledger_schema.clone();
        let mut resp = CollectGarbageResponse {
            older_than_ms: older_than.as_millis() as u64,
            jobs_kept: keep.len() as u32,
            ..Default::default()
        };
        for conn in databases(&self.config.connections) {
            let collected = async {
                let _session = self.budget().try_reserve(&[&conn], 0).ok_or_else(|| {
                    DbFailure::transient(format!(
                        "the connection budget of '{conn}' is full (jobs use every session Ferry may open there)"
                    ))
                })?;
                let url = self
                    .config
                    .connections
                    .url(&conn)
                    .map_err(|e| DbFailure::permanent(e.to_string()))?;
                let mut session = db::open(DbRole::Planner, &conn, url, None).await?;
                ledger_gc::collect(&mut session, &schema, older_than, &keep).await
            }
            .await;
            match collected {
                Ok(None) => {}
                Ok(Some(c)) => {
                    if c.rows > 0 {
                        tracing::info!(
                            connection = %conn,
                            jobs = c.jobs.len(),
                            rows = c.rows,
                            older_than_s = older_than.as_secs(),
                            "ledger rows removed of jobs past the ledger retention"
                        );
                    }
                    resp.databases.push(LedgerCollected {
                        connection: conn,
                        jobs: c.jobs.len() as u32,
                        rows: c.rows,
                    });
                }
                Err(e) => {
                    tracing::warn!(connection = %conn, error = %e.message, "cannot collect the ledger; trying again at the next sweep");
                    resp.warnings
                        .push(format!("connection '{conn}': {}", e.message));
                }
            }
        }
        resp
    }
}

/// The connections whose databases may hold a ledger Ferry collects: every
/// connection of a kind Ferry speaks (PostgreSQL, MySQL, SQLite), one name
/// per distinct URL (the first by name).
fn databases(connections: &ConnectionRegistry) -> Vec<String> {
    let mut names = connections.names();
    names.sort();
    let mut seen = HashSet::new();
    names
        .into_iter()
        .filter(|n| {
            connections
                .url(n)
                .is_ok_and(|u| DbKind::of_url(n, u).is_ok() && seen.insert(u.to_string()))
        })
        .collect()
}

/// When the leader sweeps the ledgers: `LEDGER_GC_FIRST` after it starts
/// leading, then every `LEDGER_GC_SWEEP`, one sweep at a time, off the
/// scheduler's tick. A sweep in progress ends with the schedule (the
/// leader's term).
pub(super) struct Schedule {
    next: Instant,
    running: Option<tokio::task::JoinHandle<()>>,
}

impl Schedule {
    /// A schedule for a leader that started leading at `now`.
    pub(super) fn new(now: Instant) -> Self {
        Self {
            next: now + LEDGER_GC_FIRST,
            running: None,
        }
    }

    /// Starts a sweep when one is due and none runs; nothing without a
    /// ledger retention.
    pub(super) fn poll(&mut self, scheduler: &Arc<Scheduler>, now: Instant) {
        let Some(retention) = scheduler.config.lifecycle.ledger_retention else {
            return;
        };
        if now < self.next || self.running.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        self.next = now + LEDGER_GC_SWEEP;
        let s = Arc::clone(scheduler);
        self.running = Some(tokio::spawn(async move {
            s.collect_ledgers(retention).await;
        }));
    }
}

impl Drop for Schedule {
    fn drop(&mut self) {
        if let Some(h) = self.running.take() {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn databases_of_every_kind_once_per_url() {
        let connections = ConnectionRegistry::from_pairs(
            [
                ("SRC", "postgres://u@h/src"),
                ("DST", "postgres://u@h/dst"),
                ("DST2", "postgres://u@h/dst"),
                ("MY", "mysql://u:p@h:3306/dst"),
                ("LITE", "sqlite:///tmp/t.db"),
                ("ODD", "oracle://h/x"),
            ]
            .map(|(n, u)| (n.to_string(), u.to_string())),
        );
        assert_eq!(
            databases(&connections),
            ["dst", "lite", "my", "src"],
            "every kind Ferry speaks, the first name of a URL, no unknown scheme"
        );
    }
}

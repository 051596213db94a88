//! The job history (the guide's DMS_PRCLOG): the coordinator decides when a
//! job's row is written — when it starts planning, when it starts running,
//! and when a run ends — and the connector writes it (`history.rs` there).
//! The row lives in the history database (`FERRY_HISTORY_CONN`) or, without
//! one, in the job's target database. Writes are idempotent upserts retried
//! until they land, so a new leader or a repeated write never adds a row.

pub mod read;
pub mod spec_json;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ferry_common::connections::ConnectionRegistry;
use ferry_common::db::DbRole;
use ferry_common::errors::DbFailure;
use ferry_common::proto::{JobRecord, JobState};
use ferry_connectors::db::{self, history as db_history, Conn};
use ferry_connectors::postgres::history::HistoryRow;

use crate::scheduler::JobView;

/// The variable naming the history database's connection.
pub const HISTORY_CONN_VAR: &str = "FERRY_HISTORY_CONN";

/// Where history rows go and who writes them.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    /// `FERRY_HISTORY_CONN`: the connection holding every job's row; None
    /// means each job's target.
    pub connection: Option<String>,
    /// Schema of the table (the ledger's schema: `ferry.job_history`).
    pub schema: String,
    /// This coordinator's advertised address, recorded in each row it writes.
    pub coordinator: String,
}

/// A history configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// `FERRY_HISTORY_CONN` names a connection with no URL.
    #[error("{HISTORY_CONN_VAR}={name} names no connection: set {var}=postgres://… on the coordinator, or unset {HISTORY_CONN_VAR} to keep each job's history in its target database")]
    UnknownConnection {
        /// The name given.
        name: String,
        /// The variable that would define it.
        var: String,
    },
}

/// The process's history writer and reader: connections by name, reused.
pub struct History {
    config: HistoryConfig,
    connections: ConnectionRegistry,
    clients: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Conn>>>>>,
    created: Mutex<HashSet<String>>,
    /// The connection budget its sessions take from (none: unlimited).
    budget: std::sync::OnceLock<Arc<crate::budget::Budget>>,
}

impl History {
    /// A history over `connections`; refuses a history connection that does not exist.
    pub fn new(
        config: HistoryConfig,
        connections: ConnectionRegistry,
    ) -> Result<Arc<Self>, HistoryError> {
        if let Some(name) = &config.connection {
            if let Err(e) = connections.url(name) {
                return Err(HistoryError::UnknownConnection {
                    name: name.clone(),
                    var: e.var,
                });
            }
        }
        Ok(Arc::new(Self {
            config,
            connections,
            clients: Mutex::new(HashMap::new()),
            created: Mutex::new(HashSet::new()),
            budget: std::sync::OnceLock::new(),
        }))
    }

    /// Makes its sessions take from `budget` (once; later calls are ignored).
    pub fn use_budget(&self, budget: Arc<crate::budget::Budget>) {
        let _ = self.budget.set(budget);
    }

    /// The settings.
    pub fn config(&self) -> &HistoryConfig {
        &self.config
    }

    /// The connection holding `record`'s row: the history connection, or
    /// the job's target (None: a record without a spec).
    pub fn connection_for(&self, record: &JobRecord) -> Option<String> {
        if let Some(c) = &self.config.connection {
            return Some(c.clone());
        }
        record.spec.as_ref().map(|s| s.target.clone())
    }

    /// The connections whose databases may hold rows (the history
    /// connection, or every connection), one name per distinct URL.
    pub(crate) fn databases(&self) -> Vec<String> {
        if let Some(c) = &self.config.connection {
            return vec![c.clone()];
        }
        let mut seen = HashSet::new();
        self.connections
            .names()
            .into_iter()
            .filter(|n| {
                self.connections
                    .url(n)
                    .is_ok_and(|u| seen.insert(u.to_string()))
            })
            .collect()
    }

    /// Runs `f` with a session on `conn` taken from the connection budget
    /// and closed when `f` ends (one statement at a time per database).
    async fn with_client<T>(
        &self,
        conn: &str,
        f: impl AsyncFnOnce(&mut Conn) -> Result<T, DbFailure>,
    ) -> Result<T, DbFailure> {
        let slot = {
            let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(clients.entry(conn.to_string()).or_default())
        };
        let mut guard = slot.lock().await;
        let _session = match self.budget.get() {
            Some(b) => Some(b.reserve(&[conn], "history").await),
            None => None,
        };
        if guard.as_ref().is_none_or(Conn::is_closed) {
            let url = self
                .connections
                .url(conn)
                .map_err(|e| DbFailure::permanent(e.to_string()))?;
            *guard = Some(db::open(DbRole::Planner, conn, url, Some("ferry:history")).await?);
        }
        let Some(client) = guard.as_mut() else {
            return Err(DbFailure::transient("history connection closed"));
        };
        let result = f(client).await;
        // closed with its step, so the budget's count is the server's
        *guard = None;
        result
    }

    /// Writes `row` into `conn`'s history table, creating it first when needed.
    pub(crate) async fn write(&self, conn: &str, row: &HistoryRow) -> Result<(), DbFailure> {
        let schema = self.config.schema.clone();
        let created = self
            .created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(conn);
        self.with_client(conn, async |c| {
            if !created {
                db_history::ensure(c, &schema).await?;
            }
            db_history::upsert(c, &schema, row).await
        })
        .await?;
        if !created {
            self.created
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(conn.to_string());
        }
        Ok(())
    }
}

/// The history row of a job as it stands.
pub(crate) fn row_of(job: &JobView<'_>, coordinator: &str) -> HistoryRow {
    let r = job.record;
    let spec = r.spec.clone().unwrap_or_default();
    let state = JobState::try_from(r.state).unwrap_or(JobState::Unspecified);
    let label = if state.is_terminal() {
        state.label()
    } else {
        JobState::Running.label()
    };
    HistoryRow {
        job_id: r.job_id.clone(),
        request_id: r.request_id.clone(),
        submitted_by: r.submitted_by.clone(),
        source: spec.source.clone(),
        target: spec.target.clone(),
        target_table: spec.table.clone(),
        query: spec.query.clone(),
        mode: spec_json::mode_name(spec.mode),
        spec: spec_json::to_json(&spec),
        state: label.to_string(),
        runs: r.runs.max(1) as i32,
        submitted_at_ms: r.created_at_ms,
        started_at_ms: r.started_at_ms,
        ended_at_ms: if state.is_terminal() {
            r.finished_at_ms
        } else {
            0
        },
        rows_written: job.rows_written as i64,
        rows_rejected: job.rows_rejected as i64,
        rows_estimated: r.rows_estimated as i64,
        chunks_total: job.chunks_total as i32,
        chunks_succeeded: job.chunks_succeeded as i32,
        chunks_failed: job.chunks_failed as i32,
        retries: job.retries as i32,
        error: r.error.clone(),
        plan: r.plan.clone(),
        coordinator: coordinator.to_string(),
    }
}

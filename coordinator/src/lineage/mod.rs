//! OpenLineage: a START event when a job runs and a COMPLETE, FAIL or ABORT
//! event when it ends, POSTed to `$OPENLINEAGE_URL/api/v1/lineage`. Inputs
//! are the tables the job's query reads on its source connection (from
//! PostgreSQL's plan), the output is the target table with its row count.
//!
//! Lineage follows the scheduler from outside: it looks at job states when
//! the scheduler signals a change, queues events (bounded, never blocking),
//! and one task finds the input tables and sends them. A collector that is
//! slow or down costs warnings, never a job.

mod datasets;
pub mod event;
mod sink;
mod transitions;

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use ferry_common::connections::ConnectionRegistry;
use ferry_common::proto::{Job, JobState};
use ferry_common::timing::{LINEAGE_MIN_INTERVAL, LINEAGE_POLL, LINEAGE_POST_TIMEOUT};
use tokio::sync::mpsc;

use crate::gate::Gate;
use crate::scheduler::Scheduler;
use event::{rfc3339, run_event, Dataset, EventType, RunFacts};
use sink::{Endpoint, Poster};
use transitions::Tracker;

/// Lineage events waiting to be sent; past this many, new ones are dropped with a warning.
pub const QUEUE_CAPACITY: usize = 1000;
/// Job namespace when `OPENLINEAGE_NAMESPACE` is unset (the OpenLineage clients' default).
pub const DEFAULT_NAMESPACE: &str = "default";
/// Path appended to `OPENLINEAGE_URL` when `OPENLINEAGE_ENDPOINT` is unset.
pub const DEFAULT_ENDPOINT: &str = "api/v1/lineage";

/// Where and how lineage is sent, from the standard OpenLineage variables.
#[derive(Debug, Clone)]
pub struct LineageConfig {
    endpoint: Endpoint,
    namespace: String,
}

/// A lineage setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error(
    "OPENLINEAGE_URL {url:?} {problem}: set it to http://host:port of an OpenLineage collector"
)]
pub struct ConfigError {
    url: String,
    problem: &'static str,
}

impl LineageConfig {
    /// Reads `OPENLINEAGE_URL` (unset: no lineage), `OPENLINEAGE_ENDPOINT`,
    /// `OPENLINEAGE_NAMESPACE`, `OPENLINEAGE_API_KEY`, `OPENLINEAGE_DISABLED`.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        if var("OPENLINEAGE_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let Some(url) = var("OPENLINEAGE_URL") else {
            return Ok(None);
        };
        let path = var("OPENLINEAGE_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        Self::new(
            &url,
            &path,
            var("OPENLINEAGE_NAMESPACE").unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
            var("OPENLINEAGE_API_KEY"),
        )
        .map(Some)
    }

    /// Lineage to `url` + `path` under job namespace `namespace`.
    pub fn new(
        url: &str,
        path: &str,
        namespace: String,
        api_key: Option<String>,
    ) -> Result<Self, ConfigError> {
        let problem = |problem| ConfigError {
            url: url.to_string(),
            problem,
        };
        if url.starts_with("https://") {
            return Err(problem("uses https, which this build does not send lineage over; use an http:// collector or a local relay"));
        }
        if !url.starts_with("http://") {
            return Err(problem("is not an http:// URL"));
        }
        let full = format!(
            "{}/{}",
            url.trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        let uri = full.parse().map_err(|_| problem("is not a valid URL"))?;
        Ok(Self {
            endpoint: Endpoint {
                url: uri,
                api_key,
                timeout: LINEAGE_POST_TIMEOUT,
            },
            namespace,
        })
    }

    /// Where events are POSTed.
    pub fn url(&self) -> String {
        self.endpoint.url.to_string()
    }
}

/// One job state transition to report.
struct Transition {
    kind: EventType,
    job: Job,
    at_ms: i64,
    connections: ConnectionRegistry,
}

/// Follows the scheduler of whichever term this coordinator leads and sends
/// its jobs' lineage until the process ends.
pub fn spawn(gate: Arc<Gate>, config: LineageConfig) -> tokio::task::JoinHandle<()> {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    tokio::spawn(send_events(rx, config.clone()));
    tokio::spawn(follow(gate, tx))
}

/// Looks at job states on each change signal (at most every LINEAGE_MIN_INTERVAL,
/// at least every LINEAGE_POLL) and queues the events due.
async fn follow(gate: Arc<Gate>, tx: mpsc::Sender<Transition>) {
    // Weak: a deposed term's scheduler must be free to drop
    let mut term: Option<(Weak<Scheduler>, tokio::sync::watch::Receiver<u64>)> = None;
    let mut tracker = Tracker::default();
    loop {
        let Ok(scheduler) = gate.scheduler() else {
            term = None;
            tokio::time::sleep(LINEAGE_POLL).await;
            continue;
        };
        let first_look = term
            .as_ref()
            .is_none_or(|(w, _)| !std::ptr::eq(w.as_ptr(), Arc::as_ptr(&scheduler)));
        if first_look {
            tracker = Tracker::default();
            term = Some((Arc::downgrade(&scheduler), scheduler.subscribe()));
        }
        let connections = scheduler.config().connections.clone();
        let term_began = scheduler.started_ms();
        for job in scheduler.list_jobs(0).await {
            let state = JobState::try_from(job.state).unwrap_or(JobState::Unspecified);
            // a job created in this term cannot have been reported by a
            // previous leader, even when it ended before this first look
            let inherited = first_look && job.created_at_ms < term_began;
            for kind in tracker.observe(&job.job_id, state, inherited) {
                let t = Transition {
                    kind,
                    job: job.clone(),
                    at_ms: now_ms(),
                    connections: connections.clone(),
                };
                if tx.try_send(t).is_err() {
                    tracing::warn!(job = %job.job_id, event = kind.as_str(), capacity = QUEUE_CAPACITY, "openlineage queue full; event dropped");
                }
            }
        }
        drop(scheduler);
        tokio::time::sleep(LINEAGE_MIN_INTERVAL).await;
        if let Some((_, changes)) = term.as_mut() {
            let _ = tokio::time::timeout(LINEAGE_POLL, changes.changed()).await;
        }
    }
}

/// Finds each job's input tables once (at its first event) and sends the events in order.
async fn send_events(mut rx: mpsc::Receiver<Transition>, config: LineageConfig) {
    let mut poster = Poster::new(config.endpoint.clone());
    let mut inputs: HashMap<String, Vec<Dataset>> = HashMap::new();
    while let Some(t) = rx.recv().await {
        let spec = t.job.spec.clone().unwrap_or_default();
        if !inputs.contains_key(&t.job.job_id) {
            let found = match t.connections.url(&spec.source) {
                Ok(url) => datasets::query_inputs(&spec.source, url, &spec.query).await,
                Err(e) => Err(datasets::InputsError::Database(e.to_string())),
            };
            let found = found.unwrap_or_else(|e| {
                tracing::warn!(job = %t.job.job_id, error = %e, "openlineage: cannot find the tables the query reads; inputs left out");
                Vec::new()
            });
            inputs.insert(t.job.job_id.clone(), found);
        }
        let output = t
            .connections
            .url(&spec.target)
            .ok()
            .and_then(|url| datasets::target_dataset(&spec.target, url, &spec.table))
            .unwrap_or_else(|| Dataset {
                namespace: format!("ferry-connection://{}", spec.target),
                name: spec.table.clone(),
                connection: spec.target.clone(),
            });
        let facts = RunFacts {
            namespace: config.namespace.clone(),
            job_id: t.job.job_id.clone(),
            job_name: format!("copy.{}.{}", spec.target, spec.table),
            query: spec.query.clone(),
            inputs: inputs.get(&t.job.job_id).cloned().unwrap_or_default(),
            output,
            rows_written: t.job.rows_written,
            error: t.job.error.clone(),
        };
        if t.kind != EventType::Start {
            inputs.remove(&t.job.job_id);
        }
        poster
            .send(&run_event(t.kind, &facts, &rfc3339(t.at_ms)))
            .await;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_endpoint_and_refuses_what_it_cannot_send_to() {
        let c = LineageConfig::new(
            "http://127.0.0.1:5000/",
            DEFAULT_ENDPOINT,
            "ns".into(),
            None,
        )
        .expect("config");
        assert_eq!(c.url(), "http://127.0.0.1:5000/api/v1/lineage");
        assert!(LineageConfig::new("https://x", DEFAULT_ENDPOINT, "ns".into(), None).is_err());
        assert!(LineageConfig::new("x:1", DEFAULT_ENDPOINT, "ns".into(), None).is_err());
    }
}

//! A worker's graceful stop (SIGTERM, a Kubernetes pod deletion or node
//! drain): it has stopped leasing; the chunks it holds may finish within the
//! drain timeout; those still running then are rolled back and handed back to
//! the coordinator at once as *released* (leased again without counting a
//! retry), so a rolling restart never fails a job nor waits out a lease.

use std::time::Duration;

use ferry_common::proto::{ChunkAssignment, ChunkRef, ErrorClass as ProtoClass};
use ferry_common::timing::{DEFAULT_DRAIN_TIMEOUT, RELEASE_WAIT};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::session::Session;

/// How a worker stops once told to.
#[derive(Debug, Clone)]
pub struct DrainConfig {
    /// How long chunks in flight may run on after the stop before they are
    /// rolled back and released.
    pub timeout: Duration,
    /// Cancelled to release at once without waiting out `timeout` (a second
    /// signal).
    pub release_now: CancellationToken,
}

impl Default for DrainConfig {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_DRAIN_TIMEOUT,
            release_now: CancellationToken::new(),
        }
    }
}

/// Why a chunk is handed back, as the worker tells the coordinator.
const RELEASED_MESSAGE: &str = "worker shutting down: chunk handed back";

/// Hands back a chunk this worker was leased but will not run.
pub async fn release_unstarted(session: &Session, a: ChunkAssignment) {
    let Some(chunk) = a.chunk else { return };
    tracing::info!(job = %chunk.job_id, chunk = chunk.chunk_no, attempt = a.attempt, "shutting down: handing back a chunk not yet started");
    release(session, chunk).await;
}

/// Reports a chunk attempt rolled back (or never started) as released.
pub async fn release(session: &Session, chunk: ChunkRef) {
    session
        .report_failure(
            chunk,
            ProtoClass::Released,
            RELEASED_MESSAGE.to_string(),
            String::new(),
        )
        .await;
}

/// Lets the chunk tasks finish within the drain timeout, then releases what
/// is still in flight: each attempt is stopped (its transaction rolls back)
/// and reports itself released; one that does not end within `RELEASE_WAIT`
/// (blocked in a database call) is reported released here and abandoned (the
/// target rolls it back when the process exits and its connection closes).
pub async fn drain(tasks: &mut JoinSet<()>, session: &Session, cfg: &DrainConfig) {
    if tasks.is_empty() {
        return;
    }
    tracing::info!(
        in_flight = session.held.len(),
        drain_timeout_s = cfg.timeout.as_secs_f64(),
        "shutting down: finishing chunks in flight within the drain timeout"
    );
    let finished = tokio::select! {
        _ = join_all(tasks) => true,
        _ = tokio::time::sleep(cfg.timeout) => false,
        _ = cfg.release_now.cancelled() => false,
    };
    if finished {
        return;
    }
    let stopped = session.held.release_all();
    tracing::warn!(
        chunks = stopped,
        "drain timeout reached: rolling back the chunks in flight and handing them back"
    );
    if tokio::time::timeout(RELEASE_WAIT, join_all(tasks))
        .await
        .is_ok()
    {
        return;
    }
    let stuck = session.held.chunks();
    tracing::warn!(
        chunks = stuck.len(),
        "chunks still in a database call: handing them back now; the target rolls them back when this process exits"
    );
    for chunk in stuck {
        release(session, chunk).await;
    }
    tasks.abort_all();
    join_all(tasks).await;
}

async fn join_all(tasks: &mut JoinSet<()>) {
    while let Some(done) = tasks.join_next().await {
        crate::log_slot_end(done);
    }
}

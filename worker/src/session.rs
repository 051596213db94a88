//! The worker's conversation with the coordinator: registration, heartbeats
//! and chunk reports, following the leader across coordinator addresses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_common::client::{is_failover_status, Coordinators};
use ferry_common::plan::WORKER_PROTOCOL;
use ferry_common::proto::worker_service_client::WorkerServiceClient;
use ferry_common::proto::{
    ChunkAssignment, ChunkRef, CompleteChunkRequest, ErrorClass as ProtoClass, FailChunkRequest,
    HeartbeatRequest, HeldChunk, RegisterWorkerRequest,
};
use ferry_common::timing::{
    HEARTBEAT_RETRY, LEAVE_WAIT, REGISTER_RETRY_MAX, REGISTER_RETRY_MIN, REPORT_GIVE_UP,
    REPORT_RETRY_MAX, REPORT_RETRY_MIN,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::held::Held;
use crate::pool::IdleTimeout;

/// A live registration with the coordinator.
pub struct Session {
    /// Coordinator addresses.
    pub coordinators: Coordinators,
    /// Worker id issued by the coordinator, kept across re-registrations.
    pub worker_id: std::sync::Mutex<String>,
    /// Session secret issued with the id; sent with it in every call, never logged.
    pub session_secret: std::sync::Mutex<String>,
    /// Host name, for the coordinator's logs.
    pub hostname: String,
    /// Chunk slots.
    pub concurrency: u32,
    /// Held chunks and the fence.
    pub held: Arc<Held>,
    /// How long pooled connections stay idle (follows the coordinator's).
    pub pool_idle: Arc<IdleTimeout>,
}

impl Session {
    /// The current worker id.
    pub fn id(&self) -> String {
        self.worker_id.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// The current session secret.
    pub fn secret(&self) -> String {
        self.session_secret
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Registers (again), trying every coordinator address until one accepts;
    /// gives up only when `stop` fires.
    pub async fn register(&self, stop: &CancellationToken) -> bool {
        let mut delay = REGISTER_RETRY_MIN;
        loop {
            let req = RegisterWorkerRequest {
                worker_id: self.id(),
                hostname: self.hostname.clone(),
                concurrency: self.concurrency,
                protocol: WORKER_PROTOCOL,
                session_secret: self.secret(),
            };
            let sent = Instant::now();
            match self.coordinators.workers().register_worker(req).await {
                Ok(resp) => {
                    let r = resp.into_inner();
                    self.held.set_timings(
                        Duration::from_millis(r.lease_ttl_ms),
                        Duration::from_millis(r.heartbeat_interval_ms),
                    );
                    self.held.acked(sent);
                    let counted = Duration::from_millis(r.pool_idle_timeout_ms);
                    if let Some(now) = self.pool_idle.follow(counted) {
                        tracing::warn!(coordinator_ms = counted.as_millis() as u64, idle_timeout_ms = now.as_millis() as u64, "this worker's FERRY_POOL_IDLE_TIMEOUT is longer than the coordinator's, whose connection budget counts idle pooled connections only that long: closing them after the coordinator's time; give both the same value");
                    }
                    if let Ok(mut w) = self.worker_id.lock() {
                        *w = r.worker_id.clone();
                    }
                    if let Ok(mut s) = self.session_secret.lock() {
                        *s = r.session_secret;
                    }
                    tracing::info!(worker = %r.worker_id, coordinator = %self.coordinators.current_url(), "registered with coordinator");
                    return true;
                }
                Err(status) => {
                    tracing::warn!(coordinator = %self.coordinators.current_url(), error = %status.message(), "cannot register with coordinator; retrying");
                    self.coordinators.failover(&status);
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return false,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(REGISTER_RETRY_MAX);
        }
    }

    /// Heartbeats at the interval the coordinator gave until `stop`; aborts
    /// chunks the coordinator disowns and re-registers when the coordinator
    /// forgot this worker. After a failed heartbeat the next one goes to the
    /// next address `HEARTBEAT_RETRY` later, so a worker finds a new leader
    /// as soon as it leads.
    pub async fn heartbeat_loop(self: Arc<Self>, stop: CancellationToken) {
        let mut failed = false;
        loop {
            let wait = if failed {
                HEARTBEAT_RETRY.min(self.held.heartbeat_interval())
            } else {
                self.held.heartbeat_interval()
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            failed = false;
            let sent = Instant::now();
            let req = HeartbeatRequest {
                worker_id: self.id(),
                held: self.held.snapshot(),
                partial: false,
                session_secret: self.secret(),
                leaving: false,
            };
            match self.coordinators.workers().heartbeat(req).await {
                Ok(resp) => {
                    self.held.acked(sent);
                    let abort = resp.into_inner().abort;
                    if !abort.is_empty() {
                        tracing::warn!(
                            chunks = abort.len(),
                            "coordinator disowned chunks in flight; rolling them back"
                        );
                        self.held.abort(&abort);
                    }
                }
                Err(status) if needs_registration(&status) => {
                    tracing::warn!(error = %status.message(), "coordinator does not know this worker session; registering again");
                    self.register(&stop).await;
                }
                Err(status) => {
                    tracing::warn!(coordinator = %self.coordinators.current_url(), error = %status.message(), "heartbeat failed");
                    if is_failover_status(&status) {
                        self.coordinators.failover(&status);
                        failed = true;
                    }
                }
            }
        }
    }

    /// Tells the coordinator this worker is gone (its drain is over), so its
    /// session ends now and no lease of it runs out later; waits at most
    /// `LEAVE_WAIT`. Best effort: a coordinator that cannot be reached lets
    /// the lease run out, as before.
    pub async fn leave(&self) {
        let req = HeartbeatRequest {
            worker_id: self.id(),
            held: Vec::new(),
            partial: true,
            session_secret: self.secret(),
            leaving: true,
        };
        let mut client = self.coordinators.workers();
        match tokio::time::timeout(LEAVE_WAIT, client.heartbeat(req)).await {
            Ok(Ok(_)) => tracing::info!("left the coordinator: session ended"),
            Ok(Err(s)) => {
                tracing::debug!(error = %s.message(), "coordinator did not take the leave; the session's lease will run out")
            }
            Err(_) => tracing::debug!("no answer to the leave; the session's lease will run out"),
        }
    }

    /// Asks the coordinator, just before a commit, whether this attempt still
    /// holds its chunk; false only on an explicit "abort" (a cancelled job or a
    /// newer lease). When the coordinator cannot be reached the commit goes
    /// ahead: the ledger, not this check, keeps rows from doubling.
    pub async fn still_holds(&self, chunk: &ChunkRef, rows: u64) -> bool {
        let sent = Instant::now();
        let req = HeartbeatRequest {
            worker_id: self.id(),
            held: vec![HeldChunk {
                chunk: Some(chunk.clone()),
                rows_so_far: rows,
            }],
            partial: true,
            session_secret: self.secret(),
            leaving: false,
        };
        match self.coordinators.workers().heartbeat(req).await {
            Ok(resp) => {
                self.held.acked(sent);
                !resp
                    .into_inner()
                    .abort
                    .iter()
                    .any(|r| r.chunk_no == chunk.chunk_no && r.job_id == chunk.job_id)
            }
            Err(_) => true,
        }
    }

    /// Reports a committed chunk, retrying across coordinators for up to a
    /// lease time; a refusal for a stale token is final. With `want_next` > 0
    /// the coordinator also leases up to that many next chunks, returned here
    /// (empty when none was ready or the report was not acknowledged).
    pub async fn report_complete(
        &self,
        chunk: ChunkRef,
        rows_written: u64,
        rows_rejected: u64,
        already: bool,
        want_next: u32,
    ) -> Vec<ChunkAssignment> {
        let req = CompleteChunkRequest {
            worker_id: self.id(),
            chunk: Some(chunk.clone()),
            rows_written,
            rows_rejected,
            already_committed: already,
            want_next,
            session_secret: self.secret(),
        };
        self.retrying("complete", &chunk, |mut c| {
            let req = req.clone();
            async move { c.complete_chunk(req).await.map(|r| r.into_inner().next) }
        })
        .await
        .unwrap_or_default()
    }

    /// Reports a failed attempt.
    pub async fn report_failure(
        &self,
        chunk: ChunkRef,
        class: ProtoClass,
        message: String,
        sqlstate: String,
    ) {
        let req = FailChunkRequest {
            worker_id: self.id(),
            chunk: Some(chunk.clone()),
            class: class as i32,
            message,
            sqlstate,
            session_secret: self.secret(),
        };
        self.retrying("failure", &chunk, |mut c| {
            let req = req.clone();
            async move { c.fail_chunk(req).await.map(|_| ()) }
        })
        .await;
    }

    /// Sends a report until acknowledged (its answer), refused, or given up (None).
    async fn retrying<T, F, Fut>(&self, what: &str, chunk: &ChunkRef, call: F) -> Option<T>
    where
        F: Fn(WorkerServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let give_up = Instant::now() + REPORT_GIVE_UP;
        let mut delay = REPORT_RETRY_MIN;
        loop {
            match call(self.coordinators.workers()).await {
                Ok(answer) => return Some(answer),
                Err(s) if s.code() == tonic::Code::Aborted => {
                    tracing::warn!(job = %chunk.job_id, chunk = chunk.chunk_no, "coordinator refused the {what} report: the chunk was leased again (stale fencing token)");
                    return None;
                }
                Err(s) if is_failover_status(&s) && Instant::now() < give_up => {
                    tracing::warn!(error = %s.message(), "cannot report chunk {what}; retrying");
                    self.coordinators.failover(&s);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(REPORT_RETRY_MAX);
                }
                Err(s) => {
                    tracing::error!(job = %chunk.job_id, chunk = chunk.chunk_no, error = %s.message(), "cannot report chunk {what}; the coordinator will lease it again after the lease time");
                    return None;
                }
            }
        }
    }
}

/// Whether a refusal means the coordinator does not know this worker's
/// session (expired, restarted coordinator, or a secret it cannot verify):
/// register again.
pub fn needs_registration(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::NotFound | tonic::Code::Unauthenticated
    )
}

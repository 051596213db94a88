//! `ferry.v1.WorkerService`: registration, heartbeats, leases and chunk reports.

use std::sync::Arc;

use ferry_common::errors::ErrorClass;
use ferry_common::proto::worker_service_server::WorkerService;
use ferry_common::proto::{
    self, AcquireChunkRequest, AcquireChunkResponse, CompleteChunkRequest, CompleteChunkResponse,
    FailChunkRequest, FailChunkResponse, HeartbeatRequest, HeartbeatResponse,
    RegisterWorkerRequest, RegisterWorkerResponse,
};
use tonic::{Request, Response, Status};

use ferry_common::limits::{truncate, MAX_FAILURE_MESSAGE_BYTES, MAX_HOSTNAME_BYTES, MAX_SLOTS};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::error::{CoordinatorError, Reason};
use crate::gate::Gate;
use crate::security::auth::AuthError;
use crate::security::session::WorkerSession;

/// The WorkerService implementation.
pub struct WorkerApi {
    gate: Arc<Gate>,
}

impl WorkerApi {
    /// A WorkerService behind `gate`.
    pub fn new(gate: Arc<Gate>) -> Self {
        Self { gate }
    }
}

/// Runs a state change in its own task, so it completes even when the gRPC
/// call that asked for it is cancelled (a client deadline drops the handler).
async fn detached<T: Send + 'static>(
    f: impl std::future::Future<Output = Result<T, CoordinatorError>> + Send + 'static,
) -> Result<T, Status> {
    match tokio::spawn(f).await {
        Ok(r) => r.map_err(Status::from),
        Err(e) => Err(Status::internal(format!("scheduler task failed: {e}"))),
    }
}

/// Checks that a call's secret belongs to its worker id (see `security::session`).
fn session(worker_id: &str, secret: &str) -> Result<(), Status> {
    WorkerSession::verify(worker_id, secret)
        .map_err(|e| Status::from(CoordinatorError::from(AuthError::from(e))))
}

/// The subject of the caller's client certificate, for the registration log.
fn certificate_subject<T>(request: &Request<T>) -> Option<String> {
    let certs = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()?
        .peer_certs()?;
    certs.first().map(ferry_common::tls::files::subject)
}

fn missing_chunk() -> Status {
    CoordinatorError::invalid("chunk", Reason::MissingField, "the report names no chunk").into()
}

#[tonic::async_trait]
impl WorkerService for WorkerApi {
    async fn register_worker(
        &self,
        request: Request<RegisterWorkerRequest>,
    ) -> Result<Response<RegisterWorkerResponse>, Status> {
        let certificate = certificate_subject(&request);
        let r = request.into_inner();
        let scheduler = self.gate.scheduler()?;
        // the coordinator issues the id; a worker proves an earlier session to keep it
        let (session, resumed) = WorkerSession::resume_or_issue(&r.worker_id, &r.session_secret);
        let hostname = truncate(&r.hostname, MAX_HOSTNAME_BYTES);
        let mut response = scheduler
            .register_worker(
                session.worker_id.clone(),
                hostname,
                r.concurrency,
                r.protocol,
            )
            .await?;
        if let Some(subject) = certificate {
            tracing::info!(worker = %session.worker_id, certificate = %subject, resumed, "worker session authenticated by its client certificate");
        }
        response.worker_id = session.worker_id;
        response.session_secret = session.secret;
        Ok(Response::new(response))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let r = request.into_inner();
        session(&r.worker_id, &r.session_secret)?;
        let scheduler = self.gate.scheduler()?;
        if r.leaving {
            scheduler.leave(&r.worker_id).await?;
            return Ok(Response::new(HeartbeatResponse::default()));
        }
        let abort = scheduler.heartbeat(&r.worker_id, r.held, r.partial).await?;
        Ok(Response::new(HeartbeatResponse { abort }))
    }

    async fn acquire_chunk(
        &self,
        request: Request<AcquireChunkRequest>,
    ) -> Result<Response<AcquireChunkResponse>, Status> {
        let r = request.into_inner();
        session(&r.worker_id, &r.session_secret)?;
        let slots = r.slots.min(MAX_SLOTS);
        let scheduler = self.gate.scheduler()?;
        // Run to the end even if the caller gives up: a lease half-written when
        // the call is dropped would leave its chunk neither queued nor in flight.
        let assignments =
            detached(async move { scheduler.acquire(&r.worker_id, slots).await }).await?;
        Ok(Response::new(AcquireChunkResponse { assignments }))
    }

    async fn complete_chunk(
        &self,
        request: Request<CompleteChunkRequest>,
    ) -> Result<Response<CompleteChunkResponse>, Status> {
        let r = request.into_inner();
        session(&r.worker_id, &r.session_secret)?;
        let chunk = r.chunk.ok_or_else(missing_chunk)?;
        let scheduler = self.gate.scheduler()?;
        let next = detached(async move {
            scheduler
                .complete(
                    &r.worker_id,
                    chunk,
                    r.rows_written,
                    r.rows_rejected,
                    r.already_committed,
                    r.want_next,
                )
                .await
        })
        .await?;
        Ok(Response::new(CompleteChunkResponse { next }))
    }

    async fn fail_chunk(
        &self,
        request: Request<FailChunkRequest>,
    ) -> Result<Response<FailChunkResponse>, Status> {
        let r = request.into_inner();
        session(&r.worker_id, &r.session_secret)?;
        let chunk = r.chunk.ok_or_else(missing_chunk)?;
        let reported = proto::ErrorClass::try_from(r.class);
        let (class, aborted) = match reported {
            Ok(proto::ErrorClass::Permanent) => (ErrorClass::Permanent, false),
            Ok(proto::ErrorClass::Data) => (ErrorClass::Data, false),
            Ok(proto::ErrorClass::Aborted | proto::ErrorClass::Released) => {
                (ErrorClass::Transient, true)
            }
            _ => (ErrorClass::Transient, false),
        };
        let released = reported == Ok(proto::ErrorClass::Released);
        let reported = truncate(&r.message, MAX_FAILURE_MESSAGE_BYTES);
        let message = if r.sqlstate.is_empty() {
            reported
        } else {
            format!("{reported} (SQLSTATE {})", truncate(&r.sqlstate, 5))
        };
        // PostgreSQL's codes for a snapshot it no longer knows ("invalid
        // snapshot identifier", "could not import the requested snapshot")
        let snapshot_gone = matches!(r.sqlstate.as_str(), "22023" | "55000");
        let scheduler = self.gate.scheduler()?;
        let worker = r.worker_id;
        detached(async move {
            let (job, chunk_no) = (chunk.job_id.clone(), chunk.chunk_no);
            if snapshot_gone {
                scheduler.probe_snapshot(&job);
            }
            scheduler
                .fail(&worker, chunk, class, aborted, &message)
                .await?;
            if released {
                tracing::info!(%job, chunk = chunk_no, %worker, "chunk released by its worker (shutting down): leased again at once, no retry counted");
            }
            Ok(())
        })
        .await?;
        Ok(Response::new(FailChunkResponse {}))
    }
}

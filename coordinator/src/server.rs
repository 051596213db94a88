//! Serves the coordinator's gRPC services, gRPC health and reflection on one address.

use std::net::SocketAddr;
use std::sync::Arc;

use ferry_common::proto::job_service_server::JobServiceServer;
use ferry_common::proto::worker_service_server::WorkerServiceServer;
use ferry_common::proto::FILE_DESCRIPTOR_SET;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthService;

use crate::api::{JobApi, WorkerApi};
use crate::gate::Gate;

/// A failure to start serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}; pick a free address with --listen")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be set up.
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Binds `addr`; returns the listener and the address actually bound (port 0 picks one).
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    Ok((listener, local))
}

/// The gRPC health service name every running coordinator reports SERVING,
/// leader or not: what a liveness probe checks. Service `""` (readiness) is
/// SERVING on the leader alone, so a probe on it would restart followers.
pub const LIVENESS_SERVICE: &str = "ferry.v1.Liveness";

/// A gate (starting as a follower) and the health service it drives.
///
/// Health starts NOT_SERVING (tonic-health's reporter starts the overall
/// status at SERVING): a replica is ready only once it leads. The liveness
/// service is SERVING from the start, whatever the role.
pub async fn gate() -> (Arc<Gate>, HealthServer<HealthService>) {
    let reporter = tonic_health::server::HealthReporter::new();
    reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    reporter
        .set_service_status(LIVENESS_SERVICE, tonic_health::ServingStatus::Serving)
        .await;
    let service = HealthServer::new(HealthService::from_health_reporter(reporter.clone()));
    (Gate::new(reporter), service)
}

/// Serves JobService, WorkerService, health and reflection until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    gate: Arc<Gate>,
    health: HealthServer<HealthService>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1()?;
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection)
        .add_service(JobServiceServer::new(JobApi::new(Arc::clone(&gate))))
        .add_service(WorkerServiceServer::new(WorkerApi::new(gate)))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await?;
    Ok(())
}

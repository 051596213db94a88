//! Serves the coordinator's gRPC services, gRPC health and reflection on one
//! address, with TLS and authentication when configured (`security`).

use std::net::SocketAddr;
use std::sync::Arc;

use ferry_common::proto::job_service_server::JobServiceServer;
use ferry_common::proto::worker_service_server::WorkerServiceServer;
use ferry_common::proto::FILE_DESCRIPTOR_SET;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthService;

use ferry_common::limits::{
    MAX_HEADER_LIST_BYTES, MAX_JOB_REQUEST_BYTES, MAX_PROBE_REQUEST_BYTES, MAX_WORKER_REQUEST_BYTES,
};
use tokio_util::sync::CancellationToken;

use crate::api::{JobApi, WorkerApi};
use crate::error::CoordinatorError;
use crate::gate::Gate;
use crate::security::auth::{AuthError, AuthLayer};
use crate::security::{listener, Security};

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

/// Serves JobService, WorkerService, health and reflection until `shutdown`
/// resolves, in plaintext and without authentication (`ferry local`, tests).
pub async fn serve(
    listener: TcpListener,
    gate: Arc<Gate>,
    health: HealthServer<HealthService>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_secured(
        listener,
        gate,
        health,
        Secured {
            security: Security::none(),
            health_listener: None,
        },
        shutdown,
    )
    .await
}

/// What `serve_secured` adds to `serve`.
pub struct Secured {
    /// TLS, client certificates, tokens.
    pub security: Arc<Security>,
    /// `--health-listen`: a plaintext port serving gRPC health only (probes
    /// cannot speak TLS).
    pub health_listener: Option<TcpListener>,
}

/// Serves like `serve`, with `secured`'s TLS and authentication: with TLS
/// on, plaintext connections to the port get UNAUTHENTICATED saying TLS is
/// required.
pub async fn serve_secured(
    listener: TcpListener,
    gate: Arc<Gate>,
    health: HealthServer<HealthService>,
    secured: Secured,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let security = secured.security;
    let stop = CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        shutdown.await;
        trigger.cancel();
    });
    let health = health.max_decoding_message_size(MAX_PROBE_REQUEST_BYTES);
    // Reflection v1 and v1alpha: grpcurl's older releases, Postman and
    // Python's grpcio-reflection still ask for v1alpha.
    let (reflection, reflection_v1alpha) = if security.reflection() {
        (
            Some(
                tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
                    .build_v1()?
                    .max_decoding_message_size(MAX_PROBE_REQUEST_BYTES),
            ),
            Some(
                tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
                    .build_v1alpha()?
                    .max_decoding_message_size(MAX_PROBE_REQUEST_BYTES),
            ),
        )
    } else {
        (None, None)
    };
    let router = tonic::transport::Server::builder()
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .layer(AuthLayer::new(Arc::clone(&security)))
        .add_service(health.clone())
        .add_optional_service(reflection)
        .add_optional_service(reflection_v1alpha)
        .add_service(
            JobServiceServer::new(JobApi::new(Arc::clone(&gate)))
                .max_decoding_message_size(MAX_JOB_REQUEST_BYTES),
        )
        .add_service(
            WorkerServiceServer::new(WorkerApi::new(gate))
                .max_decoding_message_size(MAX_WORKER_REQUEST_BYTES),
        );
    if let Some(probe) = secured.health_listener {
        let stop = stop.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming_shutdown(TcpIncoming::from(probe), stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "health port failed");
            }
        });
    }
    let Some(tls) = security.tls() else {
        router
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                stop.cancelled_owned(),
            )
            .await?;
        return Ok(());
    };
    let (tls_incoming, plain_incoming) = listener::split(listener, Arc::clone(tls));
    let refuse_stop = stop.clone();
    tokio::spawn(async move {
        let refused = tonic::transport::Server::builder()
            .layer(tower::layer::layer_fn(|_| RefusePlaintext))
            .add_service(health)
            .serve_with_incoming_shutdown(plain_incoming, refuse_stop.cancelled_owned())
            .await;
        if let Err(e) = refused {
            tracing::warn!(error = %e, "plaintext refusal server failed");
        }
    });
    router
        .serve_with_incoming_shutdown(tls_incoming, stop.cancelled_owned())
        .await?;
    Ok(())
}

/// Answers every call on a plaintext connection to the TLS port with
/// UNAUTHENTICATED saying TLS is required.
#[derive(Clone)]
struct RefusePlaintext;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<B> tower::Service<http::Request<B>> for RefusePlaintext {
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Self::Response, BoxError>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: http::Request<B>) -> Self::Future {
        let status = tonic::Status::from(CoordinatorError::from(AuthError::TlsRequired));
        std::future::ready(Err(Box::new(status)))
    }
}

//! The HTTP listener of `--metrics-listen`: `GET /metrics` answers the
//! process's metrics in the Prometheus text format, on a port of its own so
//! a scrape never touches the gRPC server. Every scrape is answered, also
//! while this coordinator is a follower or changing roles (its job series
//! are then simply absent).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use ferry_common::telemetry::metrics::MetricsExporter;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The metrics address cannot be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for metrics on {addr}: {source}; pick a free address with --metrics-listen (FERRY_METRICS_LISTEN)")]
pub struct BindError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// Binds `addr`; returns the listener and the address bound.
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), BindError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| BindError { addr, source })?;
    Ok((listener, local))
}

/// Serves scrapes until the process ends.
pub async fn serve(listener: TcpListener, exporter: Arc<MetricsExporter>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener cannot accept a connection");
                continue;
            }
        };
        let exporter = Arc::clone(&exporter);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let exporter = Arc::clone(&exporter);
                async move { Ok::<_, Infallible>(respond(&exporter, &req)) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

fn respond(exporter: &MetricsExporter, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => match exporter.encode() {
            Ok(body) => {
                let mut r = Response::new(Full::new(Bytes::from(body)));
                if let Ok(v) = exporter.content_type().parse() {
                    r.headers_mut().insert(CONTENT_TYPE, v);
                }
                r
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot encode metrics");
                text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n")
            }
        },
        (&Method::GET, "/") => text(StatusCode::OK, "ferry: metrics at /metrics\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: metrics are at GET /metrics\n",
        ),
    }
}

//! Telemetry of the long-running roles: `--metrics-listen` and the set-up of
//! logs, metrics and traces (see `ferry_common::telemetry`).

use std::net::SocketAddr;

use ferry_common::telemetry::{self, Telemetry, TelemetryOptions};

use crate::metrics_listener;
use crate::EXIT_BAD_INPUT;

/// Flags of every long-running role.
#[derive(clap::Args, Debug, Clone)]
pub struct TelemetryArgs {
    /// Serve Prometheus metrics on GET /metrics at this address (off unless set).
    #[arg(long, env = "FERRY_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
}

/// Installs telemetry for `service` and starts the metrics listener when
/// asked; an unusable setting is reported and gives the exit code.
pub async fn start(args: &TelemetryArgs, service: &'static str) -> Result<Telemetry, i32> {
    let t = telemetry::init(&TelemetryOptions {
        service,
        metrics: args.metrics_listen.is_some(),
    })
    .map_err(|e| {
        eprintln!("error: {e}");
        EXIT_BAD_INPUT
    })?;
    if let (Some(addr), Some(exporter)) = (args.metrics_listen, t.metrics()) {
        match metrics_listener::bind(addr).await {
            Ok((listener, local)) => {
                tracing::info!(%local, "serving Prometheus metrics on /metrics");
                tokio::spawn(metrics_listener::serve(listener, exporter));
            }
            Err(e) => {
                eprintln!("error: {e}");
                return Err(EXIT_BAD_INPUT);
            }
        }
    }
    Ok(t)
}

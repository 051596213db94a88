//! Telemetry set-up shared by every `ferry` process: log lines (text or
//! JSON), Prometheus metrics built on the OpenTelemetry metrics API, and
//! OpenTelemetry traces exported over OTLP, each in a module of its own.
//!
//! A process calls [`init`] once at start-up, before any instrument is used,
//! and [`Telemetry::shutdown`] before it exits, which flushes spans.

pub mod logs;
pub mod metrics;
pub mod process;
pub mod traces;

use std::sync::Arc;

use crate::config::ConfigError;

/// What a process exports, chosen at start-up.
#[derive(Debug, Clone)]
pub struct TelemetryOptions {
    /// `service.name` when `OTEL_SERVICE_NAME` does not set one (`ferry-worker`, …).
    pub service: &'static str,
    /// Whether metrics are collected (a `/metrics` listener will serve them).
    pub metrics: bool,
}

/// The telemetry of one process; keep it until the process ends.
pub struct Telemetry {
    metrics: Option<Arc<metrics::MetricsExporter>>,
    traces: Option<traces::TraceExporter>,
}

/// Installs logging, and metrics and traces as `options` and the `OTEL_*`
/// variables ask; an invalid `FERRY_LOG_FORMAT` is refused naming it.
pub fn init(options: &TelemetryOptions) -> Result<Telemetry, ConfigError> {
    let format = logs::LogFormat::from_env()?;
    traces::install_propagator();
    let traces = traces::TraceExporter::from_env(options.service);
    logs::install(format, traces.as_ref().map(|t| t.tracer()));
    if let Some(t) = &traces {
        t.warn_if_unreachable();
    }
    let metrics = if options.metrics {
        Some(Arc::new(metrics::MetricsExporter::install(options.service)))
    } else {
        None
    };
    Ok(Telemetry { metrics, traces })
}

impl Telemetry {
    /// This process's metrics, when collected.
    pub fn metrics(&self) -> Option<Arc<metrics::MetricsExporter>> {
        self.metrics.clone()
    }

    /// Flushes spans still buffered and stops the exporters.
    pub async fn shutdown(self) {
        if let Some(t) = self.traces {
            t.shutdown().await;
        }
        if let Some(m) = self.metrics {
            m.shutdown();
        }
    }
}

/// Installs the log subscriber alone (no metrics, no traces): `FERRY_LOG`
/// (or `RUST_LOG`) filters, `info` by default; lines read
/// `2026-11-25T07:00:00Z  INFO message key=value`, or JSON objects with
/// `FERRY_LOG_FORMAT=json`.
pub fn init_logging() {
    let format = logs::LogFormat::from_env().unwrap_or_default();
    logs::install(format, None);
}

//! Metrics on the OpenTelemetry metrics API, read by a Prometheus exporter
//! (no scope labels, no `target_info`, names exactly as the instruments
//! give them): every crate creates its instruments on
//! `opentelemetry::global::meter`, and the process serves them in the
//! Prometheus text format. Until `install` runs the global meter is a no-op,
//! so a process without `--metrics-listen` pays nothing for them.
//!
//! This module also holds the instruments of `ferry-common` itself: open
//! database connections by name and role, and the process collector.

use opentelemetry::metrics::Meter;
use opentelemetry::{global, KeyValue};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder, Registry, TextEncoder};

use crate::db;

/// Name of the meter (instrumentation scope) of `ferry-common`'s instruments.
pub const METER: &str = "ferry-common";

/// The process's metrics, readable as a Prometheus page.
pub struct MetricsExporter {
    registry: Registry,
    provider: SdkMeterProvider,
}

/// The Prometheus text page could not be produced.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode metrics: {0}")]
pub struct EncodeError(String);

impl MetricsExporter {
    /// Installs the global meter provider reading into a Prometheus registry
    /// and registers `ferry-common`'s instruments.
    pub fn install(service: &str) -> Self {
        let registry = Registry::new();
        let provider = match opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_units()
            .without_target_info()
            .scope_info_enabled(false)
            .build()
        {
            Ok(reader) => SdkMeterProvider::builder().with_reader(reader).build(),
            Err(e) => {
                tracing::warn!(error = %e, service, "cannot set up the Prometheus exporter; metrics are off");
                SdkMeterProvider::builder().build()
            }
        };
        global::set_meter_provider(provider.clone());
        let meter = global::meter(METER);
        super::process::register(&meter);
        register_connections(&meter);
        Self { registry, provider }
    }

    /// The current values in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .map_err(|e| EncodeError(e.to_string()))?;
        Ok(out)
    }

    /// The content type of `encode`'s output.
    pub fn content_type(&self) -> String {
        TextEncoder::new().format_type().to_string()
    }

    /// Stops the meter provider.
    pub fn shutdown(&self) {
        let _ = self.provider.shutdown();
    }
}

/// `ferry_db_connections_in_use{connection, role}`: connections this process
/// holds open to each named database (in use or idle in a pool: both count
/// against the database's `max_connections`), by role (source, target,
/// planner).
fn register_connections(meter: &Meter) {
    meter
        .i64_observable_gauge("ferry_db_connections_in_use")
        .with_description("Database connections this process holds open, by connection name and role (source, target, planner)")
        .with_callback(|o| {
            for (name, role, n) in db::open_connections() {
                o.observe(
                    n,
                    &[
                        KeyValue::new("connection", name),
                        KeyValue::new("role", role.as_str()),
                    ],
                );
            }
        })
        .build();
}

/// Histogram buckets in seconds from 50 ms to 30 min (chunk attempts).
pub const CHUNK_SECONDS_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0,
];

/// Histogram buckets in seconds from 100 ms to 24 h (jobs, planning, queueing).
pub const JOB_SECONDS_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0,
    86400.0,
];

/// Histogram buckets in seconds from 1 ms to 10 s (etcd transactions).
pub const STORE_SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

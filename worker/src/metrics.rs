//! The worker's metrics: what this worker itself did (rows, rejected rows,
//! bytes and chunks it committed, chunks it fenced itself out of, chunks in
//! flight) and how long its chunk attempts took. Job-level totals are the
//! leader's (`ferry_job_*`), so no name is exported by both.

use std::sync::LazyLock;

use ferry_common::telemetry::metrics::CHUNK_SECONDS_BUCKETS;
use opentelemetry::metrics::{Counter, Histogram, UpDownCounter};
use opentelemetry::{global, KeyValue};

/// Name of the worker's meter.
pub const METER: &str = "ferry-worker";

/// The worker's instruments (no-ops until telemetry is installed).
pub(crate) struct WorkerMetrics {
    pub rows_written: Counter<u64>,
    pub rows_rejected: Counter<u64>,
    pub bytes_copied: Counter<u64>,
    pub chunks_completed: Counter<u64>,
    pub self_fenced: Counter<u64>,
    pub in_flight: UpDownCounter<i64>,
    pub slots: UpDownCounter<i64>,
    pub chunk_duration: Histogram<f64>,
}

/// The worker's instruments.
pub(crate) fn metrics() -> &'static WorkerMetrics {
    static M: LazyLock<WorkerMetrics> = LazyLock::new(|| {
        let m = global::meter(METER);
        WorkerMetrics {
            rows_written: m
                .u64_counter("ferry_worker_rows_written")
                .with_description("Rows this worker committed into targets")
                .build(),
            rows_rejected: m
                .u64_counter("ferry_worker_rows_rejected")
                .with_description("Rows targets refused in chunks this worker committed")
                .build(),
            bytes_copied: m
                .u64_counter("ferry_worker_bytes_copied")
                .with_unit("By")
                .with_description("COPY bytes this worker streamed into targets in committed chunks")
                .build(),
            chunks_completed: m
                .u64_counter("ferry_worker_chunks_completed")
                .with_description("Chunks this worker committed")
                .build(),
            self_fenced: m
                .u64_counter("ferry_worker_chunks_self_fenced")
                .with_description("Chunk attempts this worker rolled back on its own: no heartbeat acknowledged within the lease time")
                .build(),
            in_flight: m
                .i64_up_down_counter("ferry_worker_chunks_in_flight")
                .with_description("Chunks this worker is copying now")
                .build(),
            slots: m
                .i64_up_down_counter("ferry_worker_slots")
                .with_description("Chunks this worker copies at once (its concurrency)")
                .build(),
            chunk_duration: m
                .f64_histogram("ferry_chunk_duration_seconds")
                .with_unit("s")
                .with_description("Duration of chunk attempts on workers, by outcome (committed, failed, aborted)")
                .with_boundaries(CHUNK_SECONDS_BUCKETS.to_vec())
                .build(),
        }
    });
    &M
}

/// Creates the worker's instruments now, so their series exist from the first scrape.
pub(crate) fn init() {
    metrics().self_fenced.add(0, &[]);
    metrics().in_flight.add(0, &[]);
}

/// The `source`/`target` labels of a chunk's counters.
pub(crate) fn connection_labels(source: &str, target: &str) -> [KeyValue; 2] {
    [
        KeyValue::new("source", source.to_ascii_lowercase()),
        KeyValue::new("target", target.to_ascii_lowercase()),
    ]
}

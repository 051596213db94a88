//! The coordinator's metrics. Job-level state (rows, chunks by state,
//! pending chunks, jobs by state) is read by observable instruments from the
//! leader's job table when scraped, so a finished job's series disappear
//! when it leaves memory; events (failures, retries, lease expiries, leader
//! changes) and durations are counters and histograms without `job_id`.
//! A follower exports `ferry_leader 0` and no job series; a scrape never
//! waits on the scheduler (see `METRICS_SNAPSHOT_MAX_AGE`).

use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use ferry_common::errors::ErrorClass;
use ferry_common::proto::{ChunkState, JobState};
use ferry_common::telemetry::metrics::{JOB_SECONDS_BUCKETS, STORE_SECONDS_BUCKETS};
use ferry_common::timing::METRICS_SNAPSHOT_MAX_AGE;
use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::{global, KeyValue};

use crate::gate::Gate;

/// Name of the coordinator's meter.
pub const METER: &str = "ferry-coordinator";

/// Chunk states in the order `JobSeries::chunks` counts them.
pub(crate) const CHUNK_STATES: [ChunkState; 6] = [
    ChunkState::Pending,
    ChunkState::Leased,
    ChunkState::RetryWait,
    ChunkState::Succeeded,
    ChunkState::Failed,
    ChunkState::Cancelled,
];

/// Job states as `ferry_jobs` counts them.
const JOB_STATES: [JobState; 6] = [
    JobState::Pending,
    JobState::Planning,
    JobState::Running,
    JobState::Succeeded,
    JobState::Failed,
    JobState::Cancelled,
];

/// A state's label value: its name in lower case.
pub(crate) fn job_state_label(s: JobState) -> String {
    s.label().to_ascii_lowercase()
}

fn chunk_state_label(s: ChunkState) -> String {
    s.label().to_ascii_lowercase()
}

/// One job's series, read from the job table.
#[derive(Debug, Clone)]
pub(crate) struct JobSeries {
    pub job_id: String,
    pub state: JobState,
    pub source: String,
    pub target: String,
    pub rows_written: u64,
    pub rows_rejected: u64,
    /// Chunks by state, in `CHUNK_STATES` order.
    pub chunks: [u64; 6],
    /// Chunks it may have in flight now (max_workers or the adaptive level).
    pub concurrency: u32,
}

/// The job table as one scrape sees it.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobTable {
    pub jobs: Vec<JobSeries>,
    pub workers: u64,
}

/// Counters and histograms of events on the leader.
pub(crate) struct Events {
    pub chunk_failures: Counter<u64>,
    pub retries: Counter<u64>,
    pub retries_succeeded: Counter<u64>,
    pub lease_expiries: Counter<u64>,
    pub leader_changes: Counter<u64>,
    pub job_duration: Histogram<f64>,
    pub planning_duration: Histogram<f64>,
    pub first_lease: Histogram<f64>,
    pub etcd_txn_duration: Histogram<f64>,
    pub etcd_txn_writes: Histogram<u64>,
}

impl Events {
    fn new(m: &Meter) -> Self {
        Self {
            chunk_failures: m
                .u64_counter("ferry_chunk_failures")
                .with_description(
                    "Chunk attempts that failed, by class (transient, permanent, data)",
                )
                .build(),
            retries: m
                .u64_counter("ferry_chunk_retries")
                .with_description("Chunk retries scheduled after a transient failure")
                .build(),
            retries_succeeded: m
                .u64_counter("ferry_chunk_retries_succeeded")
                .with_description("Chunks that landed after at least one retry (retry success)")
                .build(),
            lease_expiries: m
                .u64_counter("ferry_lease_expiries")
                .with_description("Chunk leases lost because their worker stopped heartbeating")
                .build(),
            leader_changes: m
                .u64_counter("ferry_leader_changes")
                .with_description("Times this coordinator became the leader")
                .build(),
            job_duration: m
                .f64_histogram("ferry_job_duration_seconds")
                .with_unit("s")
                .with_description("Time from submission to the end of a job run, by final state")
                .with_boundaries(JOB_SECONDS_BUCKETS.to_vec())
                .build(),
            planning_duration: m
                .f64_histogram("ferry_planning_duration_seconds")
                .with_unit("s")
                .with_description("Time the planner took to split a job")
                .with_boundaries(JOB_SECONDS_BUCKETS.to_vec())
                .build(),
            first_lease: m
                .f64_histogram("ferry_job_first_lease_seconds")
                .with_unit("s")
                .with_description("Time from a job's submission to its first chunk lease")
                .with_boundaries(JOB_SECONDS_BUCKETS.to_vec())
                .build(),
            etcd_txn_duration: m
                .f64_histogram("ferry_etcd_txn_duration_seconds")
                .with_unit("s")
                .with_description("Latency of the leader's etcd transactions")
                .with_boundaries(STORE_SECONDS_BUCKETS.to_vec())
                .build(),
            etcd_txn_writes: m
                .u64_histogram("ferry_etcd_txn_writes")
                .with_description("Chunk writes carried by one etcd transaction (group commit)")
                .with_boundaries(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0])
                .build(),
        }
    }

    /// Counts a failed chunk attempt of `class`.
    pub fn chunk_failed(&self, class: ErrorClass) {
        let c = match class {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Data => "data",
        };
        self.chunk_failures.add(1, &[KeyValue::new("class", c)]);
    }

    /// Records a job run that ended in `state` after `elapsed` since submission.
    pub fn job_ended(&self, state: JobState, elapsed: Duration) {
        self.job_duration.record(
            elapsed.as_secs_f64(),
            &[KeyValue::new("state", job_state_label(state))],
        );
    }
}

/// The leader's event instruments (no-ops until telemetry is installed).
/// Counters start at 0 for every label value, so alert expressions see them
/// before the first event.
pub(crate) fn events() -> &'static Events {
    static EVENTS: LazyLock<Events> = LazyLock::new(|| {
        let e = Events::new(&global::meter(METER));
        for class in ["transient", "permanent", "data"] {
            e.chunk_failures.add(0, &[KeyValue::new("class", class)]);
        }
        e.retries.add(0, &[]);
        e.retries_succeeded.add(0, &[]);
        e.lease_expiries.add(0, &[]);
        e.leader_changes.add(0, &[]);
        e
    });
    &EVENTS
}

/// Creates the event instruments now (at start-up), so their series exist
/// from the first scrape.
pub fn init_events() {
    let _ = events();
}

/// Reads the job table for the observable instruments, one snapshot per scrape.
struct JobTableView {
    gate: Arc<Gate>,
    cache: Mutex<Option<(Instant, Arc<JobTable>)>>,
}

impl JobTableView {
    /// The job table: the cached one when fresh or when the scheduler is
    /// busy, empty on a follower.
    fn snapshot(&self) -> Arc<JobTable> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let Ok(scheduler) = self.gate.scheduler() else {
            *cache = None;
            return Arc::new(JobTable::default());
        };
        if let Some((at, table)) = cache.as_ref() {
            if at.elapsed() < METRICS_SNAPSHOT_MAX_AGE {
                return Arc::clone(table);
            }
        }
        match scheduler.metrics_snapshot() {
            Some(table) => {
                let table = Arc::new(table);
                *cache = Some((Instant::now(), Arc::clone(&table)));
                table
            }
            None => cache
                .as_ref()
                .map(|(_, t)| Arc::clone(t))
                .unwrap_or_default(),
        }
    }
}

/// Registers the observable instruments over the job table behind `gate`
/// (once per process, after telemetry is installed).
pub fn register_job_table(gate: Arc<Gate>) {
    init_events();
    let m = global::meter(METER);
    crate::budget::register_gauges(&m, Arc::clone(&gate));
    let view = Arc::new(JobTableView {
        gate,
        cache: Mutex::new(None),
    });
    let v = Arc::clone(&view);
    m.i64_observable_gauge("ferry_leader")
        .with_description("1 when this coordinator is the leader, else 0")
        .with_callback(move |o| o.observe(i64::from(v.gate.scheduler().is_ok()), &[]))
        .build();
    let v = Arc::clone(&view);
    m.u64_observable_gauge("ferry_jobs")
        .with_description("Jobs in the leader's memory, by state")
        .with_callback(move |o| {
            let t = v.snapshot();
            if t.jobs.is_empty() && v.gate.scheduler().is_err() {
                return;
            }
            for s in JOB_STATES {
                let n = t.jobs.iter().filter(|j| j.state == s).count() as u64;
                o.observe(n, &[KeyValue::new("state", job_state_label(s))]);
            }
        })
        .build();
    let v = Arc::clone(&view);
    m.u64_observable_gauge("ferry_pending_chunks")
        .with_description("Chunks of running jobs waiting for a worker (pending or waiting out a retry backoff), cluster-wide")
        .with_callback(move |o| {
            if v.gate.scheduler().is_err() {
                return;
            }
            let t = v.snapshot();
            let n = t
                .jobs
                .iter()
                .filter(|j| j.state == JobState::Running)
                .map(|j| j.chunks[0] + j.chunks[2])
                .sum();
            o.observe(n, &[]);
        })
        .build();
    let v = Arc::clone(&view);
    m.u64_observable_gauge("ferry_workers_registered")
        .with_description("Workers registered with the leader")
        .with_callback(move |o| {
            if v.gate.scheduler().is_ok() {
                o.observe(v.snapshot().workers, &[]);
            }
        })
        .build();
    let v = Arc::clone(&view);
    m.u64_observable_gauge("ferry_job_state")
        .with_description(
            "1 for each job in the leader's memory, labelled with its state and connections",
        )
        .with_callback(move |o| {
            for j in &v.snapshot().jobs {
                o.observe(
                    1,
                    &[
                        KeyValue::new("job_id", j.job_id.clone()),
                        KeyValue::new("state", job_state_label(j.state)),
                        KeyValue::new("source", j.source.clone()),
                        KeyValue::new("target", j.target.clone()),
                    ],
                );
            }
        })
        .build();
    let v = Arc::clone(&view);
    m.u64_observable_gauge("ferry_job_rows_written")
        .with_description("Rows a job has landed (including chunks in flight); the sum over workers of ferry_worker_rows_written_total")
        .with_callback(move |o| {
            for j in &v.snapshot().jobs {
                o.observe(j.rows_written, &[KeyValue::new("job_id", j.job_id.clone())]);
            }
        })
        .build();
    let v = Arc::clone(&view);
    m.u64_observable_gauge("ferry_job_rows_rejected")
        .with_description("Rows a job's target refused (quarantined in ferry.rejects)")
        .with_callback(move |o| {
            for j in &v.snapshot().jobs {
                o.observe(
                    j.rows_rejected,
                    &[KeyValue::new("job_id", j.job_id.clone())],
                );
            }
        })
        .build();
    let v = Arc::clone(&view);
    m.u64_observable_gauge("ferry_job_concurrency")
        .with_description("Chunks a running job may have in flight now: its max_workers, or the adaptive level below it")
        .with_callback(move |o| {
            for j in v.snapshot().jobs.iter().filter(|j| j.state == JobState::Running) {
                o.observe(
                    u64::from(j.concurrency),
                    &[
                        KeyValue::new("job_id", j.job_id.clone()),
                        KeyValue::new("target", j.target.clone()),
                    ],
                );
            }
        })
        .build();
    let v = view;
    m.u64_observable_gauge("ferry_job_chunks")
        .with_description("A job's chunks by state (states with no chunk are left out)")
        .with_callback(move |o| {
            for j in &v.snapshot().jobs {
                for (i, n) in j.chunks.iter().enumerate() {
                    if *n > 0 {
                        o.observe(
                            *n,
                            &[
                                KeyValue::new("job_id", j.job_id.clone()),
                                KeyValue::new("state", chunk_state_label(CHUNK_STATES[i])),
                            ],
                        );
                    }
                }
            }
        })
        .build();
}

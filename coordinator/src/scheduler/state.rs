//! The leader's in-memory view of jobs, chunks and workers. The store holds
//! state transitions; live progress and liveness stay here.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use ferry_common::proto::{self, ChunkRecord, ChunkState, JobRecord, JobState};
use ferry_common::retry::RetryConfig;

/// The fencing token a LEASED chunk carries in memory while its store write
/// (a lease or a completion) is in flight: no report carries it, so reports,
/// expiry and the `assign/` watch leave the chunk alone until the write is
/// applied. Store revisions start at 1, so no real token is 0.
pub(crate) const CLAIMED: u64 = 0;

/// A chunk with the store version of its last write.
#[derive(Debug, Clone)]
pub(crate) struct ChunkRt {
    pub record: ChunkRecord,
    pub version: u64,
}

impl ChunkRt {
    /// Leased to a worker, with no store write of this leader's in flight
    /// (token `CLAIMED`: that write decides the chunk).
    pub fn leased_out(&self) -> bool {
        self.record.state == ChunkState::Leased as i32 && self.record.fencing_token != CLAIMED
    }
}

/// A chunk attempt in flight.
#[derive(Debug, Clone)]
pub(crate) struct LiveChunk {
    /// Rows streamed so far, from heartbeats.
    pub rows: u64,
    /// When the lease was granted (or re-adopted after a takeover).
    pub leased_at: Instant,
}

/// Running totals over a job's chunks.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Totals {
    pub succeeded: u32,
    pub failed: u32,
    pub rows_written: u64,
    pub rows_rejected: u64,
}

impl Totals {
    fn apply(&mut self, r: &ChunkRecord, sign: i64) {
        if r.state == ChunkState::Succeeded as i32 {
            self.succeeded = (self.succeeded as i64 + sign) as u32;
            self.rows_written = (self.rows_written as i64 + sign * r.rows_written as i64) as u64;
            self.rows_rejected = (self.rows_rejected as i64 + sign * r.rows_rejected as i64) as u64;
        } else if r.state == ChunkState::Failed as i32 {
            self.failed = (self.failed as i64 + sign) as u32;
        }
    }
}

/// One job as the scheduler runs it.
pub(crate) struct JobRuntime {
    pub record: JobRecord,
    pub chunks: Vec<ChunkRt>,
    /// Chunk numbers ready to lease, in key order.
    pub ready: VecDeque<u32>,
    /// Chunks in RETRY_WAIT with the Unix millisecond they become ready.
    pub delayed: Vec<(i64, u32)>,
    pub live: HashMap<u32, LiveChunk>,
    pub retries: u32,
    /// Kept in step with `chunks` by `set_chunk`/`recount`, so progress and
    /// finishing never scan every chunk (jobs may have 100,000).
    pub totals: Totals,
    pub started: Option<Instant>,
    pub last_progress_log: Option<Instant>,
    /// A replace job's index build and swap is running.
    pub finalizing: bool,
    /// Chunk writes of bulk transitions in flight (see `transitions`).
    pub writing: usize,
    /// Past its retention and being deleted from the store: no change is accepted.
    pub retiring: bool,
    /// A chunk of this job has been leased (the first lease is measured once).
    pub first_leased: bool,
    /// Connections whose budget keeps the job from running (empty: none).
    pub waiting_for: Vec<String>,
    /// Its source snapshot is being replaced: no chunk is leased meanwhile.
    pub snapshot_pending: bool,
    /// `--chunk-size auto`: what its landed chunks measured (see `resplit`).
    pub adaptive: super::resplit::Evidence,
    /// Adapts chunks in flight below the cap (None: fixed, or not leased yet).
    pub concurrency: Option<super::concurrency::Controller>,
}

/// A job's record with the totals its history row and metrics need.
pub(crate) struct JobView<'a> {
    pub record: &'a JobRecord,
    pub rows_written: u64,
    pub rows_rejected: u64,
    pub chunks_total: u32,
    pub chunks_succeeded: u32,
    pub chunks_failed: u32,
    pub retries: u32,
}

impl JobRuntime {
    /// A job that has not been planned yet.
    pub fn new(record: JobRecord) -> Self {
        Self {
            record,
            chunks: Vec::new(),
            ready: VecDeque::new(),
            delayed: Vec::new(),
            live: HashMap::new(),
            retries: 0,
            totals: Totals::default(),
            started: None,
            last_progress_log: None,
            finalizing: false,
            writing: 0,
            retiring: false,
            first_leased: false,
            waiting_for: Vec::new(),
            snapshot_pending: false,
            adaptive: Default::default(),
            concurrency: None,
        }
    }

    /// The record with its totals.
    pub fn view(&self) -> JobView<'_> {
        JobView {
            record: &self.record,
            rows_written: self.rows_so_far(),
            rows_rejected: self.totals.rows_rejected,
            chunks_total: (self.chunks.len() as u32).max(self.record.chunks_total),
            chunks_succeeded: self.totals.succeeded,
            chunks_failed: self.totals.failed,
            retries: self.retries,
        }
    }

    /// The job's retry settings.
    pub fn retry(&self) -> RetryConfig {
        let r = self
            .record
            .spec
            .as_ref()
            .and_then(|s| s.retry)
            .unwrap_or_default();
        let d = RetryConfig::default();
        RetryConfig {
            enabled: r.enabled.unwrap_or(d.enabled),
            max_retries: r.max_retries.unwrap_or(d.max_retries),
            initial_delay: r
                .initial_delay_ms
                .map(Duration::from_millis)
                .unwrap_or(d.initial_delay),
            max_delay: r
                .max_delay_ms
                .map(Duration::from_millis)
                .unwrap_or(d.max_delay),
        }
    }

    /// Chunks of this job allowed in flight at once.
    pub fn max_in_flight(&self) -> u32 {
        self.record
            .spec
            .as_ref()
            .and_then(|s| s.max_workers)
            .unwrap_or(4)
            .max(1)
    }

    /// Chunks of this job allowed in flight now: the cap, or the adaptive
    /// controller's level below it (`concurrency.rs`).
    pub fn in_flight_limit(&mut self) -> u32 {
        let cap = self.max_in_flight();
        let adaptive = self
            .record
            .spec
            .as_ref()
            .and_then(|s| s.adaptive_concurrency)
            .unwrap_or(true);
        if !adaptive {
            return cap;
        }
        let c = self
            .concurrency
            .get_or_insert_with(|| super::concurrency::Controller::new(cap));
        c.set_cap(cap);
        c.limit()
    }

    /// The chunk numbered `n`, if planned.
    pub fn chunk(&self, n: u32) -> Option<&ChunkRt> {
        self.chunks.get(n.checked_sub(1)? as usize)
    }

    /// Replaces chunk `n`'s record and version, keeping the totals in step.
    pub fn set_chunk(&mut self, n: u32, record: ChunkRecord, version: u64) {
        let Some(i) = n.checked_sub(1).map(|i| i as usize) else {
            return;
        };
        let Some(c) = self.chunks.get_mut(i) else {
            return;
        };
        self.totals.apply(&c.record, -1);
        self.totals.apply(&record, 1);
        c.record = record;
        c.version = version;
    }

    /// Recomputes the totals after `chunks` was replaced wholesale.
    pub fn recount(&mut self) {
        let mut t = Totals::default();
        for c in &self.chunks {
            t.apply(&c.record, 1);
        }
        self.totals = t;
    }

    /// Chunks that landed.
    pub fn succeeded(&self) -> u32 {
        self.totals.succeeded
    }

    /// Rows landed and rejected by finished chunks.
    pub fn rows_committed(&self) -> (u64, u64) {
        (self.totals.rows_written, self.totals.rows_rejected)
    }

    /// Rows landed plus rows streamed by chunks in flight.
    pub fn rows_so_far(&self) -> u64 {
        self.rows_committed().0 + self.live.values().map(|l| l.rows).sum::<u64>()
    }

    /// The job's state.
    pub fn state(&self) -> JobState {
        JobState::try_from(self.record.state).unwrap_or(JobState::Unspecified)
    }

    /// The job as the public API reports it.
    pub fn to_proto(&self, with_chunks: bool) -> proto::Job {
        let (_, rejected) = self.rows_committed();
        proto::Job {
            job_id: self.record.job_id.clone(),
            spec: self.record.spec.clone(),
            state: self.record.state,
            error: self.record.error.clone(),
            chunks_total: self.chunks.len() as u32,
            chunks_succeeded: self.totals.succeeded,
            chunks_failed: self.totals.failed,
            rows_written: self.rows_so_far(),
            rows_rejected: rejected,
            rows_estimated: self.record.rows_estimated,
            retries: self.retries,
            created_at_ms: self.record.created_at_ms,
            started_at_ms: self.record.started_at_ms,
            finished_at_ms: self.record.finished_at_ms,
            plan: self.record.plan.clone(),
            waiting_for: if self.state().is_terminal() {
                String::new()
            } else {
                self.waiting_for.join(", ")
            },
            consistency: self.record.spec.as_ref().map_or(0, |s| s.consistency),
            consistency_lost: self.record.consistency_lost.clone(),
            concurrency: self
                .concurrency
                .as_ref()
                .map_or_else(|| self.max_in_flight(), |c| c.limit()),
            chunks: if with_chunks {
                self.chunks
                    .iter()
                    .map(|c| proto::ChunkInfo {
                        chunk_no: c.record.chunk_no,
                        state: c.record.state,
                        attempt: c.record.attempt,
                        rows_written: self
                            .live
                            .get(&c.record.chunk_no)
                            .map(|l| l.rows)
                            .unwrap_or(c.record.rows_written),
                        rows_rejected: c.record.rows_rejected,
                        last_error: c.record.last_error.clone(),
                        range: describe_range(&c.record, &self.record.key),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }
}

/// A chunk's key range for people: the text an older record kept, else
/// from its bounds (chunks planned since store format 3 keep no text: it is
/// made when asked for, not held for every chunk).
pub(crate) fn describe_range(c: &ChunkRecord, key: &[proto::KeyColumn]) -> String {
    match &c.bounds {
        Some(b) if c.range.is_empty() => b.describe(key),
        _ => c.range.clone(),
    }
}

/// A registered worker.
#[derive(Debug, Clone)]
pub(crate) struct WorkerEntry {
    /// When its lease runs out unless it heartbeats.
    pub deadline: Instant,
    /// Host name, for logs.
    pub hostname: String,
    /// Chunks it runs at once (0 when unknown, after a takeover).
    pub concurrency: u32,
    /// Worker protocol it registered with (0 when unknown, after a takeover).
    pub protocol: u32,
    /// What its last full heartbeat listed, and when it arrived: the
    /// scheduler's tick leases again the chunks it should hold but did not
    /// list (see `Scheduler::expire_workers`), so a heartbeat costs no scan.
    pub held: Option<HeldReport>,
}

/// The chunks a full heartbeat listed.
#[derive(Debug, Clone)]
pub(crate) struct HeldReport {
    /// When the heartbeat arrived.
    pub at: Instant,
    /// `(job, chunk)` it listed (a worker holds a few).
    pub chunks: Vec<(String, u32)>,
}

impl HeldReport {
    /// Whether a chunk leased at `leased_at` should have been listed by this
    /// report but was not: its lease is older than `grace` at the report (so
    /// the lease response had time to arrive) and the report leaves it out.
    pub fn omits(&self, job: &str, n: u32, leased_at: Instant, grace: Duration) -> bool {
        leased_at + grace <= self.at && !self.chunks.iter().any(|(j, c)| *c == n && j == job)
    }
}

/// Everything the scheduler knows.
#[derive(Default)]
pub(crate) struct State {
    pub jobs: HashMap<String, JobRuntime>,
    /// Job ids in submission order (fair leasing, listing).
    pub order: Vec<String>,
    pub workers: HashMap<String, WorkerEntry>,
}

impl State {
    /// The job `job_id`, or the error that it is not known.
    pub fn job(&self, job_id: &str) -> Result<&JobRuntime, crate::error::CoordinatorError> {
        self.jobs
            .get(job_id)
            .ok_or_else(|| crate::error::CoordinatorError::JobNotFound(job_id.to_string()))
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

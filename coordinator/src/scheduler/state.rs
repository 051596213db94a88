//! The leader's in-memory view of jobs, chunks and workers. The store holds
//! state transitions; live progress and liveness stay here.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use ferry_common::proto::{self, ChunkRecord, ChunkState, JobRecord, JobState};
use ferry_common::retry::RetryConfig;

/// A chunk with the store version of its last write.
#[derive(Debug, Clone)]
pub(crate) struct ChunkRt {
    pub record: ChunkRecord,
    pub version: u64,
}

/// A chunk attempt in flight.
#[derive(Debug, Clone)]
pub(crate) struct LiveChunk {
    /// Rows streamed so far, from heartbeats.
    pub rows: u64,
    /// When the lease was granted (or re-adopted after a takeover).
    pub leased_at: Instant,
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
    pub started: Option<Instant>,
    pub last_progress_log: Option<Instant>,
    /// A replace job's index build and swap is running.
    pub finalizing: bool,
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
            started: None,
            last_progress_log: None,
            finalizing: false,
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

    /// The chunk numbered `n`, if planned.
    pub fn chunk_mut(&mut self, n: u32) -> Option<&mut ChunkRt> {
        self.chunks.get_mut(n.checked_sub(1)? as usize)
    }

    /// The chunk numbered `n`, if planned.
    pub fn chunk(&self, n: u32) -> Option<&ChunkRt> {
        self.chunks.get(n.checked_sub(1)? as usize)
    }

    /// Chunks in `state`.
    pub fn count(&self, state: ChunkState) -> u32 {
        self.chunks
            .iter()
            .filter(|c| c.record.state == state as i32)
            .count() as u32
    }

    /// Rows landed by finished chunks.
    pub fn rows_committed(&self) -> (u64, u64) {
        self.chunks
            .iter()
            .filter(|c| c.record.state == ChunkState::Succeeded as i32)
            .fold((0, 0), |(w, r), c| {
                (w + c.record.rows_written, r + c.record.rows_rejected)
            })
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
            chunks_succeeded: self.count(ChunkState::Succeeded),
            chunks_failed: self.count(ChunkState::Failed),
            rows_written: self.rows_so_far(),
            rows_rejected: rejected,
            rows_estimated: self.record.rows_estimated,
            retries: self.retries,
            created_at_ms: self.record.created_at_ms,
            started_at_ms: self.record.started_at_ms,
            finished_at_ms: self.record.finished_at_ms,
            plan: self.record.plan.clone(),
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
                        range: c.record.range.clone(),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
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
}

/// Everything the scheduler knows.
#[derive(Default)]
pub(crate) struct State {
    pub jobs: HashMap<String, JobRuntime>,
    /// Job ids in submission order (fair leasing, listing).
    pub order: Vec<String>,
    pub workers: HashMap<String, WorkerEntry>,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

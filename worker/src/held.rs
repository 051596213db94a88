//! The chunks a worker holds right now, and its self-fencing clock: a worker
//! whose heartbeats have gone unacknowledged for its lease time stops writing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_common::proto::{ChunkRef, HeldChunk};
use tokio_util::sync::CancellationToken;

/// Progress and stop switch of one chunk attempt.
#[derive(Debug, Clone)]
pub struct ChunkHandle {
    /// Which attempt.
    pub chunk: ChunkRef,
    /// Rows streamed so far.
    pub rows: Arc<AtomicU64>,
    /// COPY bytes sent to the target so far.
    pub bytes: Arc<AtomicU64>,
    /// Cancelled when the coordinator says abort, or when the worker releases it.
    pub cancel: CancellationToken,
    /// Set when the worker itself stops the attempt to hand the chunk back
    /// (shutting down): its rollback is reported as released, not as a failure.
    pub released: Arc<AtomicBool>,
}

impl ChunkHandle {
    /// Whether the worker released this attempt (see `Held::release_all`).
    pub fn is_released(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }
}

/// Chunks in flight plus the time of the last acknowledged heartbeat.
#[derive(Debug)]
pub struct Held {
    chunks: Mutex<HashMap<(String, u32), ChunkHandle>>,
    /// Send time of the last heartbeat the coordinator acknowledged.
    last_ack: Mutex<Instant>,
    lease_ttl: Mutex<Duration>,
    heartbeat: Mutex<Duration>,
}

impl Held {
    /// An empty registry whose fence starts now.
    pub fn new(lease_ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            chunks: Mutex::new(HashMap::new()),
            last_ack: Mutex::new(Instant::now()),
            lease_ttl: Mutex::new(lease_ttl),
            heartbeat: Mutex::new(lease_ttl / 3),
        })
    }

    fn lock_chunks(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), ChunkHandle>> {
        self.chunks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a chunk attempt as in flight.
    pub fn add(&self, chunk: ChunkRef) -> ChunkHandle {
        let h = ChunkHandle {
            chunk,
            rows: Arc::new(AtomicU64::new(0)),
            bytes: Arc::new(AtomicU64::new(0)),
            cancel: CancellationToken::new(),
            released: Arc::new(AtomicBool::new(false)),
        };
        self.lock_chunks()
            .insert((h.chunk.job_id.clone(), h.chunk.chunk_no), h.clone());
        h
    }

    /// Forgets a chunk attempt.
    pub fn remove(&self, chunk: &ChunkRef) {
        let mut m = self.lock_chunks();
        if m.get(&(chunk.job_id.clone(), chunk.chunk_no))
            .is_some_and(|h| h.chunk.fencing_token == chunk.fencing_token)
        {
            m.remove(&(chunk.job_id.clone(), chunk.chunk_no));
        }
    }

    /// Chunks in flight, as a heartbeat reports them.
    pub fn snapshot(&self) -> Vec<HeldChunk> {
        self.lock_chunks()
            .values()
            .map(|h| HeldChunk {
                chunk: Some(h.chunk.clone()),
                rows_so_far: h.rows.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// How many chunks are in flight.
    pub fn len(&self) -> usize {
        self.lock_chunks().len()
    }

    /// Whether no chunk is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops the attempts the coordinator no longer recognises.
    pub fn abort(&self, refs: &[ChunkRef]) {
        let m = self.lock_chunks();
        for r in refs {
            if let Some(h) = m.get(&(r.job_id.clone(), r.chunk_no)) {
                if h.chunk.fencing_token == r.fencing_token {
                    h.cancel.cancel();
                }
            }
        }
    }

    /// Stops every attempt in flight so its chunk can be handed back (the
    /// worker is shutting down); returns how many there were.
    pub fn release_all(&self) -> usize {
        let m = self.lock_chunks();
        for h in m.values() {
            h.released.store(true, Ordering::Release);
            h.cancel.cancel();
        }
        m.len()
    }

    /// The attempts in flight.
    pub fn chunks(&self) -> Vec<ChunkRef> {
        self.lock_chunks()
            .values()
            .map(|h| h.chunk.clone())
            .collect()
    }

    /// Records an acknowledged heartbeat sent at `sent`.
    pub fn acked(&self, sent: Instant) {
        let mut t = self.last_ack.lock().unwrap_or_else(|p| p.into_inner());
        if sent > *t {
            *t = sent;
        }
    }

    /// Sets the lease TTL and heartbeat interval the coordinator granted.
    pub fn set_timings(&self, ttl: Duration, heartbeat: Duration) {
        *self.lease_ttl.lock().unwrap_or_else(|p| p.into_inner()) = ttl;
        if !heartbeat.is_zero() {
            *self.heartbeat.lock().unwrap_or_else(|p| p.into_inner()) = heartbeat;
        }
    }

    /// How often to heartbeat, as the coordinator said (a third of the
    /// default lease until registered).
    pub fn heartbeat_interval(&self) -> Duration {
        *self.heartbeat.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lease TTL in force.
    pub fn ttl(&self) -> Duration {
        *self.lease_ttl.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this worker may still write: its last acknowledged heartbeat
    /// was sent less than a lease TTL ago.
    pub fn lease_valid(&self, now: Instant) -> bool {
        let last = *self.last_ack.lock().unwrap_or_else(|p| p.into_inner());
        let ttl = *self.lease_ttl.lock().unwrap_or_else(|p| p.into_inner());
        now.duration_since(last) < ttl
    }
}

//! `--chunk-size auto` at run time: once chunks of an auto job have landed,
//! the coordinator knows their measured rows/s (lease to completion, timed
//! by the leader) and re-splits the ranges not yet leased so that a chunk
//! takes about `chunk_seconds`.
//!
//! The rule (one key column of integers, not `ctid`):
//! - the rate is the rows over the seconds of every chunk of the job
//!   measured in this leader's term; a chunk should hold `target = rate ×
//!   chunk_seconds` rows (at least `MIN_TARGET_ROWS`);
//! - a range's rows are estimated as its key width times the density (rows
//!   per key value) of the last chunk landed in key order, the nearest
//!   evidence to the ranges still to come; the open last range has no width
//!   and is not re-split (its extent would need a new sample of the source);
//! - the plan's tail of never-leased chunks (PENDING at attempt 0, all
//!   numbered after every chunk ever leased) is replaced when a range's
//!   estimate exceeds `SPLIT_OVER` × target: such a range is cut into equal
//!   key widths of about `target` rows (the last piece keeps the range's
//!   upper bound, so the pieces cover it exactly). So a bounded range
//!   whose plan-time estimate (one target) was off by more than 3× is always
//!   re-split before it is leased, and one re-split range is not split again
//!   unless new evidence moves its estimate by another 2×.
//!
//! Ranges are only ever split, never merged. The replaced chunks are
//! renumbered from the first of them; none was ever leased, so no worker or
//! ledger row knows their numbers. The store replaces them atomically with
//! the job's chunk count (`StateStore::replace_unleased`), under the state
//! lock so that no lease of them is in flight.

use std::sync::Arc;
use std::time::Duration;

use ferry_common::plan::Bounds;
use ferry_common::proto::{
    key_value, ChunkBounds, ChunkRecord, ChunkState, JobRecord, JobState, KeyTuple, KeyValue,
};

use super::consistency::split_on_ctid;
use super::state::{ChunkRt, JobRuntime};
use super::Scheduler;
use crate::planner::adaptive::DEFAULT_CHUNK_SECONDS;

/// A re-split aims at no fewer rows a chunk than this (a very slow target
/// must not turn a job into thousands of tiny chunks).
pub(crate) const MIN_TARGET_ROWS: u64 = 1_000;
/// A range is re-split when its estimate passes this many targets.
pub(crate) const SPLIT_OVER: f64 = 2.0;
/// A re-split leaves at most this many chunks not yet leased: the store
/// replaces them in one atomic write (etcd: one transaction of at most 128
/// operations, one a chunk).
pub(crate) const MAX_RESPLIT_CHUNKS: usize = 64;

/// What an auto job's landed chunks measured in this leader's term.
#[derive(Debug, Default, Clone)]
pub(crate) struct Evidence {
    /// Rows of the measured chunks.
    pub rows: u64,
    /// Their seconds from lease to completion.
    pub secs: f64,
    /// Rows per key value of the measured chunk last in key order, with its number.
    pub density: Option<(u32, f64)>,
    /// A re-split of the job is queued and has not run yet: completions
    /// landing meanwhile add evidence without queueing another (each pass
    /// looks at the plan's tail under the state lock).
    pub queued: bool,
}

/// The tail of a plan to replace, and why.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Resplit {
    /// The first chunk number replaced.
    pub from: u32,
    /// The new chunks' bounds, in key order, numbered from `from`.
    pub bounds: Vec<ChunkBounds>,
    /// Chunks replaced.
    pub replaced: usize,
    /// Rows a chunk aims at.
    pub target: u64,
    /// Measured rows per second.
    pub rate: f64,
}

/// Whether the job's chunks are re-split at run time.
fn adaptive(record: &JobRecord) -> bool {
    record.spec.as_ref().and_then(|s| s.chunk_size_auto) == Some(true)
        && record.key.len() == 1
        && !split_on_ctid(record)
}

/// An integer range's bounds, when it has them (`None` for open ends).
fn int_range(b: &ChunkBounds) -> Option<(Option<i64>, Option<i64>)> {
    let int = |t: Option<&KeyTuple>| -> Result<Option<i64>, ()> {
        match t {
            None => Ok(None),
            Some(t) => match t.values.as_slice() {
                [KeyValue {
                    kind: Some(key_value::Kind::Int(v)),
                }] => Ok(Some(*v)),
                _ => Err(()),
            },
        }
    };
    match b.shape() {
        Bounds::Range { lo, hi } => Some((int(lo).ok()?, int(hi).ok()?)),
        _ => None,
    }
}

/// Records a landed chunk of `job` that took `elapsed` from lease to
/// completion; true when a re-split pass should be queued (the plan is worth
/// reconsidering and no pass is queued yet).
pub(super) fn observe(job: &mut JobRuntime, n: u32, rows: u64, elapsed: Duration) -> bool {
    if !adaptive(&job.record) || rows == 0 || elapsed.is_zero() {
        return false;
    }
    let width = job
        .chunk(n)
        .and_then(|c| c.record.bounds.as_ref())
        .and_then(int_range)
        .and_then(|r| match r {
            (Some(lo), Some(hi)) if hi > lo => Some((hi - lo) as f64),
            _ => None,
        });
    let ev = &mut job.adaptive;
    ev.rows += rows;
    ev.secs += elapsed.as_secs_f64();
    if let Some(w) = width {
        if ev.density.is_none_or(|(m, _)| m <= n) {
            ev.density = Some((n, rows as f64 / w));
        }
    }
    !std::mem::replace(&mut ev.queued, true)
}

/// Whether a chunk was never leased: PENDING at attempt 0.
fn never_leased(c: &ChunkRt) -> bool {
    c.record.state == ChunkState::Pending as i32 && c.record.attempt == 0
}

/// Decides the re-split of a plan's never-leased tail under the rule above,
/// or None when every range is near its target (or nothing can be split).
pub(crate) fn decide(chunks: &[ChunkRt], ev: &Evidence, chunk_seconds: u32) -> Option<Resplit> {
    let (_, density) = ev.density?;
    if ev.secs <= 0.0 || density <= 0.0 {
        return None;
    }
    let rate = ev.rows as f64 / ev.secs;
    let target = ((rate * f64::from(chunk_seconds.max(1))) as u64).max(MIN_TARGET_ROWS);
    let tail = chunks.iter().rev().take_while(|c| never_leased(c)).count();
    let start = chunks.len() - tail;
    let mut out = Vec::new();
    let mut split = false;
    for c in &chunks[start..] {
        let bounds = c.record.bounds.clone().unwrap_or_else(ChunkBounds::all);
        let range = int_range(&bounds);
        let width = match range {
            Some((Some(lo), Some(hi))) if hi > lo => Some(hi - lo),
            _ => None,
        };
        let pieces = width.map_or(1, |w| {
            let est = w as f64 * density;
            if est > SPLIT_OVER * target as f64 {
                ((est / target as f64).ceil() as i64).min(w).max(1)
            } else {
                1
            }
        });
        match (range, width) {
            (Some((Some(lo), Some(hi))), Some(w)) if pieces > 1 => {
                split = true;
                let step = (w / pieces).max(1);
                let int = |v: i64| KeyTuple::of(vec![KeyValue::from_int(v)]);
                for k in 0..pieces {
                    let a = lo + k * step;
                    let b = if k + 1 == pieces { hi } else { a + step };
                    out.push(ChunkBounds::range(Some(int(a)), Some(int(b))));
                }
            }
            _ => out.push(bounds),
        }
    }
    if !split || out.len() > MAX_RESPLIT_CHUNKS {
        return None;
    }
    Some(Resplit {
        from: start as u32 + 1,
        bounds: out,
        replaced: tail,
        target,
        rate,
    })
}

impl Scheduler {
    /// Re-splits an auto job's never-leased chunks when the measured rate
    /// says they are too large (see the module's rule); logs and leaves the
    /// plan as it is when the store refuses.
    pub(super) async fn resplit(self: Arc<Self>, job_id: String) {
        let mut st = self.state.lock().await;
        let Some(job) = st.jobs.get_mut(&job_id) else {
            return;
        };
        job.adaptive.queued = false;
        if job.state() != JobState::Running || job.writing > 0 || job.retiring {
            return;
        }
        let seconds = job
            .record
            .spec
            .as_ref()
            .and_then(|s| s.chunk_seconds)
            .unwrap_or(DEFAULT_CHUNK_SECONDS);
        let Some(plan) = decide(&job.chunks, &job.adaptive, seconds) else {
            return;
        };
        let from = plan.from;
        let records: Vec<ChunkRecord> = plan
            .bounds
            .iter()
            .zip(from..)
            .map(|(b, n)| ChunkRecord {
                job_id: job_id.clone(),
                chunk_no: n,
                bounds: Some(b.clone()),
                state: ChunkState::Pending as i32,
                ..Default::default()
            })
            .collect();
        let start = from as usize - 1;
        let expected: Vec<u64> = job.chunks[start..].iter().map(|c| c.version).collect();
        let mut record = job.record.clone();
        record.chunks_total = (start + records.len()) as u32;
        match self
            .store
            .replace_unleased(&record, from, &expected, &records)
            .await
        {
            Ok(versions) => {
                job.chunks.truncate(start);
                job.chunks.extend(
                    records
                        .into_iter()
                        .zip(versions)
                        .map(|(record, version)| ChunkRt { record, version }),
                );
                job.record = record;
                job.recount();
                job.ready.retain(|n| *n < from);
                job.ready.extend(from..=job.chunks.len() as u32);
                tracing::info!(
                    job = %job_id,
                    from,
                    "re-split the chunks not yet leased: {} ranges → {} chunks, target {} rows at {:.0} rows/s",
                    plan.replaced,
                    plan.bounds.len(),
                    plan.target,
                    plan.rate
                );
            }
            Err(e) => {
                tracing::warn!(job = %job_id, error = %e, "cannot re-split the chunks not yet leased; they run as planned");
            }
        }
        drop(st);
        self.ready.notify_waiters();
        self.changed();
    }
}

#[cfg(test)]
#[path = "resplit_tests.rs"]
mod tests;

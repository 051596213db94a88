//! The scheduler's side of the connection budget (`crate::budget`): the
//! chunks it leases and the sessions it opens itself take their connections
//! from the budget; a job that cannot get them waits and says on which
//! connection ("waiting for connections on <name>").

use std::sync::Arc;
use std::time::Instant;

use ferry_common::connections::ENV_PREFIX;
use ferry_common::proto::{Consistency, JobSpec};

use crate::budget::limits::MAX_SUFFIX;
use crate::budget::{Budget, ChunkUse, Reservation};
use crate::error::{FieldError, Reason};

use super::state::{JobRuntime, State};
use super::Scheduler;

/// Tells the budget every chunk leased now; returns how many it did not
/// know of or still counted (0 when the incremental counts agreed). The
/// tick's consistency check and recovery's first count.
pub(super) fn sync(budget: &Budget, st: &State, now: Instant) -> usize {
    if !budget.is_limited() {
        return 0;
    }
    let live = st.jobs.values().flat_map(|job| {
        let spec = job.record.spec.as_ref();
        job.live.keys().filter_map(move |n| {
            let spec = spec?;
            let c = job.chunk(*n)?;
            Some(ChunkUse {
                job_id: &job.record.job_id,
                chunk_no: *n,
                worker: &c.record.worker_id,
                source: &spec.source,
                target: &spec.target,
            })
        })
    });
    budget.sync_chunks(live, now)
}

/// Gives back the sessions of chunk `n` of `job_id`, whose lease ended.
pub(super) fn release(budget: &Budget, job_id: &str, n: u32) {
    if budget.is_limited() {
        budget.release_chunk(job_id, n, Instant::now());
    }
}

/// Counts chunk `n` of `job` as leased to `worker` again (its release was
/// noted but the lease stands).
pub(super) fn hold(budget: &Budget, job: &JobRuntime, n: u32, worker: &str) {
    let Some(spec) = job.record.spec.as_ref().filter(|_| budget.is_limited()) else {
        return;
    };
    let c = ChunkUse {
        job_id: &job.record.job_id,
        chunk_no: n,
        worker,
        source: &spec.source,
        target: &spec.target,
    };
    budget.hold_chunk(&c, Instant::now());
}

/// Gives back the sessions of every chunk of `job` in flight.
pub(super) fn release_job(budget: &Budget, job: &JobRuntime) {
    for n in job.live.keys() {
        release(budget, &job.record.job_id, *n);
    }
}

/// Whether chunk `n` of `job` may be leased to `worker` now; when not, a job
/// with nothing running is marked (and logged once) as waiting.
pub(super) fn admit(
    budget: &Budget,
    job: &mut JobRuntime,
    n: u32,
    worker: &str,
    now: Instant,
) -> bool {
    if !budget.is_limited() {
        return true;
    }
    let Some(spec) = job.record.spec.as_ref() else {
        return true;
    };
    let verdict = budget.try_lease(
        &ChunkUse {
            job_id: &job.record.job_id,
            chunk_no: n,
            worker,
            source: &spec.source,
            target: &spec.target,
        },
        now,
    );
    match verdict {
        Ok(()) => {
            job.waiting_for.clear();
            true
        }
        Err(full) => {
            if job.live.is_empty() {
                mark_waiting(job, full);
            }
            false
        }
    }
}

/// Refuses a job that could never run within its connections' limits: one
/// chunk holds a source and a target session, and a SNAPSHOT job also holds
/// the snapshot's source session while it runs.
pub(super) fn check_spec(budget: &Budget, spec: &JobSpec) -> Result<(), FieldError> {
    let snapshot = u32::from(spec.consistency == Consistency::Snapshot as i32);
    let same = spec.source.eq_ignore_ascii_case(&spec.target);
    let needs = if same {
        vec![(&spec.source, 2 + snapshot, "spec.target")]
    } else {
        vec![
            (&spec.source, 1 + snapshot, "spec.source"),
            (&spec.target, 1, "spec.target"),
        ]
    };
    for (name, need, field) in needs {
        let Some(limit) = budget.explicit_limit(name) else {
            continue;
        };
        if limit >= need {
            continue;
        }
        let why = match (same, snapshot == 1) {
            (true, true) => "a chunk holds a source and a target session on it, and the job's exported snapshot one more",
            (true, false) => "a chunk holds a source and a target session on it",
            (false, _) => "a chunk holds a source session on it, and the job's exported snapshot one more",
        };
        let hint = if snapshot == 1 {
            " (or submit with --consistency none)"
        } else {
            ""
        };
        return Err(FieldError::new(field, Reason::InvalidValue, format!(
            "connection '{name}' is limited to {limit} session(s) ({ENV_PREFIX}{upper}{MAX_SUFFIX}={limit}) but {why}, so the job could never run: set {ENV_PREFIX}{upper}{MAX_SUFFIX}={need} or more on the coordinator{hint}",
            upper = name.to_ascii_uppercase(),
        )));
    }
    Ok(())
}

/// Marks `job` as waiting for `names`, logging when that is news.
fn mark_waiting(job: &mut JobRuntime, names: Vec<String>) {
    if job.waiting_for != names {
        let list = names.join(", ");
        tracing::info!(job = %job.record.job_id, connections = %list, "waiting for connections on {list}");
        job.waiting_for = names;
    }
}

impl Scheduler {
    /// The budget leases and coordinator sessions take from.
    pub(crate) fn budget(&self) -> &Arc<Budget> {
        &self.config.lifecycle.budget
    }

    /// Takes one session on each of `names` for a step of `job_id` (planning,
    /// verify, finalizing), waiting while the budget is full; the job shows
    /// what it waits for meanwhile.
    pub(crate) async fn reserve_for(&self, job_id: &str, names: &[&str]) -> Reservation {
        self.reserve_beside(job_id, names, 0).await
    }

    /// Takes the source session that holds `job_id`'s exported snapshot, only
    /// when a chunk's source session still fits beside it (so a job never
    /// holds a snapshot while no chunk of it can run).
    pub(crate) async fn reserve_snapshot_for(&self, job_id: &str, source: &str) -> Reservation {
        self.reserve_beside(job_id, &[source], 1).await
    }

    /// Takes one session on each of `names` when `spare` more still fit on
    /// each, waiting (and showing it on the job) while they do not.
    async fn reserve_beside(&self, job_id: &str, names: &[&str], spare: u32) -> Reservation {
        let budget = Arc::clone(self.budget());
        for n in names {
            budget.ensure(n).await;
        }
        if let Some(r) = budget.try_reserve(names, spare) {
            return r;
        }
        let mut full = budget.full(names);
        if full.is_empty() {
            // not full, but the spare place asked for is taken
            full = names.iter().map(|n| n.to_string()).collect();
        }
        if let Some(job) = self.state.lock().await.jobs.get_mut(job_id) {
            mark_waiting(job, full);
        }
        self.changed();
        let r = budget.wait_reserve(names, spare).await;
        if let Some(job) = self.state.lock().await.jobs.get_mut(job_id) {
            job.waiting_for.clear();
        }
        self.changed();
        r
    }

    /// Reads the limits leases are waiting for, in the background.
    pub(super) fn resolve_budget(&self) {
        let budget = Arc::clone(self.budget());
        if budget.has_pending() {
            budget.spawn_resolve();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;

    #[test]
    fn one_session_for_source_and_target_is_refused_naming_the_fix() {
        let limits = BTreeMap::from([("solo".to_string(), 1), ("src".to_string(), 1)]);
        let budget = Budget::new(None, limits, 0.25, Duration::ZERO);
        let spec = |source: &str, target: &str| JobSpec {
            source: source.into(),
            target: target.into(),
            ..Default::default()
        };
        let e = check_spec(&budget, &spec("solo", "SOLO")).unwrap_err();
        assert!(
            e.message.contains("FERRY_CONN_SOLO_MAX_CONNECTIONS=2"),
            "{}",
            e.message
        );
        // apart, one session each is enough
        assert!(check_spec(&budget, &spec("src", "solo")).is_ok());
        assert!(check_spec(&budget, &spec("dst", "dst")).is_ok());
    }

    #[test]
    fn a_snapshot_job_needs_one_more_source_session() {
        let limits = BTreeMap::from([("two".to_string(), 2), ("one".to_string(), 1)]);
        let budget = Budget::new(None, limits, 0.25, Duration::ZERO);
        let spec = |source: &str, target: &str| JobSpec {
            source: source.into(),
            target: target.into(),
            consistency: Consistency::Snapshot as i32,
            ..Default::default()
        };
        let e = check_spec(&budget, &spec("two", "two")).unwrap_err();
        assert!(
            e.message.contains("FERRY_CONN_TWO_MAX_CONNECTIONS=3")
                && e.message.contains("--consistency none"),
            "{}",
            e.message
        );
        let e = check_spec(&budget, &spec("one", "dst")).unwrap_err();
        assert_eq!(e.field, "spec.source");
        assert!(check_spec(&budget, &spec("two", "one")).is_ok());
    }
}

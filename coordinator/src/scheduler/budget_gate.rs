//! The scheduler's side of the connection budget (`crate::budget`): the
//! chunks it leases and the sessions it opens itself take their connections
//! from the budget; a job that cannot get them waits and says on which
//! connection ("waiting for connections on <name>").

use std::sync::Arc;
use std::time::Instant;

use ferry_common::connections::ENV_PREFIX;
use ferry_common::proto::JobSpec;

use crate::budget::limits::MAX_SUFFIX;
use crate::budget::{Budget, ChunkUse, Reservation};
use crate::error::{FieldError, Reason};

use super::state::{JobRuntime, State};
use super::Scheduler;

/// Tells the budget which chunks are leased now (releases and recoveries).
pub(super) fn sync(budget: &Budget, st: &State, now: Instant) {
    if !budget.is_limited() {
        return;
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
    budget.sync_chunks(live, now);
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

/// Refuses a job whose one chunk could never fit: source and target on the
/// same connection limited to a single session.
pub(super) fn check_spec(budget: &Budget, spec: &JobSpec) -> Result<(), FieldError> {
    if !spec.source.eq_ignore_ascii_case(&spec.target) {
        return Ok(());
    }
    match budget.explicit_limit(&spec.source) {
        Some(limit) if limit < 2 => Err(FieldError::new("spec.target", Reason::InvalidValue, format!(
            "connection '{name}' is limited to {limit} session ({ENV_PREFIX}{upper}{MAX_SUFFIX}={limit}) but a chunk holds a source and a target session on it, so the job could never run: set {ENV_PREFIX}{upper}{MAX_SUFFIX}=2 or more on the coordinator",
            name = spec.source,
            upper = spec.source.to_ascii_uppercase(),
        ))),
        _ => Ok(()),
    }
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
        let budget = Arc::clone(self.budget());
        for n in names {
            budget.ensure(n).await;
        }
        if let Some(r) = budget.try_reserve(names, 0) {
            return r;
        }
        let full = budget.full(names);
        if let Some(job) = self.state.lock().await.jobs.get_mut(job_id) {
            mark_waiting(job, full);
        }
        self.changed();
        let r = budget.wait_reserve(names).await;
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
}

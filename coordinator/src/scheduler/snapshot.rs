//! One snapshot across hosts: the leader holds a SNAPSHOT job's exported
//! source snapshot from planning until the job ends, and every chunk reads
//! in it. When the snapshot is lost (a new leader took over, or the session
//! holding it ended), the job's chunks wait while it is replaced: the same
//! instant when the source still has it, otherwise a new one, and then a
//! job split on a key reads on and is marked not consistent, while one split
//! on `ctid` starts over or fails (see `consistency::when_lost`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ferry_common::proto::WriteMode;
use ferry_common::timing::SNAPSHOT_RETRY;
use ferry_connectors::postgres::snapshot::SnapshotId;

use super::consistency::{wants_snapshot, when_lost, WhenLost};
use super::state::State;
use super::Scheduler;
use crate::planner::PlanError;
use crate::snapshot_session::{open_snapshot_session, retryable, SnapshotSession};

/// The snapshot sessions this leader holds, by job; closed all at once when
/// its term ends.
#[derive(Default)]
pub(crate) struct Holds {
    sessions: std::sync::Mutex<HashMap<String, SnapshotSession>>,
    closed: AtomicBool,
}

impl Holds {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SnapshotSession>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The id of the snapshot held for `job_id`, if any.
    fn id(&self, job_id: &str) -> Option<SnapshotId> {
        self.lock().get(job_id).map(|s| s.id.clone())
    }

    /// Keeps `session` for `job_id` (closing one held before); closes it at
    /// once when the term has ended.
    fn insert(&self, job_id: &str, session: SnapshotSession) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        self.lock().insert(job_id.to_string(), session);
    }

    /// Touches `job_id`'s snapshot session now (see `SnapshotSession::probe`).
    pub(crate) fn probe(&self, job_id: &str) {
        if let Some(s) = self.lock().get(job_id) {
            s.probe();
        }
    }

    /// Closes `job_id`'s snapshot session (the job ended).
    pub(crate) fn release(&self, job_id: &str) {
        self.lock().remove(job_id);
    }

    /// Closes every session; none is kept after (the term ended).
    pub(crate) fn close_all(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.lock().clear();
    }

    fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// Marks the running SNAPSHOT jobs of a recovered state as waiting for their
/// snapshot (no chunk is leased meanwhile) and returns them.
pub(super) fn recovered_jobs(st: &mut State) -> Vec<String> {
    let mut out = Vec::new();
    for job in st.jobs.values_mut() {
        if job.state() == ferry_common::proto::JobState::Running && wants_snapshot(&job.record) {
            job.snapshot_pending = true;
            out.push(job.record.job_id.clone());
        }
    }
    out
}

impl Scheduler {
    /// The snapshot a SNAPSHOT job plans and reads in, exported now unless
    /// held already; None for a job without one.
    pub(super) async fn hold_snapshot(
        self: &Arc<Self>,
        job_id: &str,
    ) -> Result<Option<SnapshotId>, PlanError> {
        let source = {
            let st = self.state.lock().await;
            match st.jobs.get(job_id) {
                Some(job) if wants_snapshot(&job.record) => job
                    .record
                    .spec
                    .as_ref()
                    .map(|s| s.source.clone())
                    .unwrap_or_default(),
                _ => return Ok(None),
            }
        };
        if let Some(id) = self.snapshots.id(job_id) {
            return Ok(Some(id));
        }
        let session = self.open_snapshot(job_id, &source, None).await?;
        let id = session.id.clone();
        let mut st = self.state.lock().await;
        let Some(job) = st.jobs.get_mut(job_id) else {
            return Ok(None);
        };
        if job.state().is_terminal() {
            return Ok(None);
        }
        // stored with the plan (`start`)
        job.record.snapshot_id = id.to_string();
        self.snapshots.insert(job_id, session);
        tracing::info!(job = %job_id, snapshot = %id, source = %source, "source snapshot exported: every chunk reads the source as of this instant");
        Ok(Some(id))
    }

    /// Opens a snapshot session for `job_id` (see `open_snapshot_session`);
    /// its loss starts `replace_snapshot`.
    async fn open_snapshot(
        &self,
        job_id: &str,
        source: &str,
        adopt: Option<&SnapshotId>,
    ) -> Result<SnapshotSession, PlanError> {
        let me = self.me.clone();
        let id = job_id.to_string();
        let place = self.reserve_snapshot_for(job_id, source).await;
        let session = open_snapshot_session(
            &self.config.connections,
            source,
            job_id,
            adopt,
            move |why| {
                if let Some(s) = me.upgrade() {
                    s.snapshot_lost(id, why);
                }
            },
        )
        .await?;
        Ok(session.counted(place))
    }

    /// A chunk of `job_id` found its snapshot gone: touches the session
    /// holding it now, so its loss starts `replace_snapshot` at once.
    pub(crate) fn probe_snapshot(&self, job_id: &str) {
        self.snapshots.probe(job_id);
    }

    /// The session holding `job_id`'s snapshot ended: its chunks wait until
    /// the snapshot is replaced.
    pub(crate) fn snapshot_lost(self: &Arc<Self>, job_id: String, why: String) {
        if self.snapshots.closed() {
            return;
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            {
                let mut st = me.state.lock().await;
                match st.jobs.get_mut(&job_id) {
                    Some(job) if !job.state().is_terminal() => job.snapshot_pending = true,
                    _ => return,
                }
            }
            me.replace_snapshot(job_id, why).await;
        });
    }

    /// Replaces a running job's lost snapshot (the job waits with
    /// `snapshot_pending` set): adopts the old one when the source still has
    /// it, else exports a new one and continues, starts over or fails; `why`
    /// is empty when no chunk landed in the old one (nothing is lost).
    pub(crate) async fn replace_snapshot(self: Arc<Self>, job_id: String, why: String) {
        let (old, source, target_pg) = {
            let st = self.state.lock().await;
            let Some(job) = st.jobs.get(&job_id) else {
                return;
            };
            let spec = job.record.spec.clone().unwrap_or_default();
            let target_pg = super::restart::target_is_postgres(&self, &spec);
            (
                SnapshotId::parse(&job.record.snapshot_id).ok(),
                spec.source,
                target_pg,
            )
        };
        self.snapshots.release(&job_id);
        let session = loop {
            if self.snapshots.closed() || !self.job_running(&job_id).await {
                return;
            }
            match self.open_snapshot(&job_id, &source, old.as_ref()).await {
                Ok(s) => break s,
                Err(e) if retryable(&e) => {
                    tracing::warn!(job = %job_id, error = %e, "cannot export the source snapshot; trying again");
                    tokio::time::sleep(SNAPSHOT_RETRY).await;
                }
                Err(e) => {
                    self.fail_for_snapshot(
                        &job_id,
                        format!("cannot export the source snapshot: {e}"),
                    )
                    .await;
                    return;
                }
            }
        };
        if session.adopted {
            tracing::info!(job = %job_id, snapshot = %session.id, "source snapshot taken over: the job keeps its instant");
            self.resume_in(&job_id, session, None).await;
            return;
        }
        if why.is_empty() {
            // no chunk landed in the old snapshot: nothing to be consistent with
            tracing::info!(job = %job_id, snapshot = %session.id, "source snapshot exported: every chunk reads the source as of this instant");
            self.resume_in(&job_id, session, None).await;
            return;
        }
        let action = {
            let st = self.state.lock().await;
            match st.jobs.get(&job_id) {
                Some(job) => when_lost(&job.record, target_pg),
                None => return,
            }
        };
        match action {
            WhenLost::Continue => {
                let lost = format!(
                    "{why}; chunks copied from then on read a new snapshot, so the copy is not of one instant"
                );
                tracing::warn!(job = %job_id, snapshot = %session.id, "consistency lost: {lost}");
                self.resume_in(&job_id, session, Some(lost)).await;
            }
            WhenLost::StartOver => self.start_over(&job_id, session, &why).await,
            WhenLost::Fail(message) => self.fail_for_snapshot(&job_id, message).await,
        }
    }

    pub(super) async fn job_running(&self, job_id: &str) -> bool {
        let st = self.state.lock().await;
        st.jobs
            .get(job_id)
            .is_some_and(|j| j.state() == ferry_common::proto::JobState::Running)
    }

    pub(super) async fn fail_for_snapshot(&self, job_id: &str, message: String) {
        let mut st = self.state.lock().await;
        if let Some(job) = st.jobs.get_mut(job_id) {
            job.snapshot_pending = false;
            if let Err(e) = self.fail_job(job, message).await {
                tracing::warn!(job = %job_id, error = %e, "cannot mark a job failed");
            }
        }
    }

    /// Records the job's new snapshot (and why its consistency was lost) and
    /// lets its chunks be leased again.
    async fn resume_in(&self, job_id: &str, session: SnapshotSession, lost: Option<String>) {
        let mut st = self.state.lock().await;
        let Some(job) = st.jobs.get_mut(job_id) else {
            return;
        };
        if job.state().is_terminal() {
            return;
        }
        job.record.snapshot_id = session.id.to_string();
        if let Some(lost) = lost {
            job.record.consistency_lost = lost;
        }
        if let Err(e) = self.store.update_job(&job.record).await {
            tracing::warn!(job = %job_id, error = %e, "cannot record the job's new snapshot");
        }
        job.snapshot_pending = false;
        self.snapshots.insert(job_id, session);
        drop(st);
        self.ready.notify_waiters();
        self.changed();
    }

    /// Starts a job split on `ctid` over in a new snapshot: every chunk is
    /// made PENDING again (attempts in flight lose their lease), the target
    /// (replace: the load table) is emptied and the job's ledger rows are
    /// forgotten, then every chunk runs again.
    async fn start_over(&self, job_id: &str, session: SnapshotSession, why: &str) {
        let (spec, table) = {
            let mut st = self.state.lock().await;
            let Some(job) = st.jobs.get_mut(job_id) else {
                return;
            };
            let spec = job.record.spec.clone().unwrap_or_default();
            let table = job
                .record
                .load
                .clone()
                .or_else(|| job.record.target.clone());
            let transitions = super::restart::start_over_transitions(job_id, job);
            job.ready.clear();
            job.delayed.clear();
            super::budget_gate::release_job(self.budget(), job);
            job.live.clear();
            for t in &transitions {
                job.hold(t);
            }
            let (_st, written) = self.write_transitions(st, transitions).await;
            if let Err(e) = written {
                tracing::warn!(job = %job_id, error = %e, "cannot reset the chunks of a job starting over");
            }
            (spec, table)
        };
        let Some(table) = table else {
            self.fail_for_snapshot(
                job_id,
                "the job has no target table to start over in".into(),
            )
            .await;
            return;
        };
        match self.empty_target(job_id, &spec, &table).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                self.fail_for_snapshot(
                    job_id,
                    format!(
                        "the job split on ctid lost its source snapshot and cannot start over: {e}"
                    ),
                )
                .await;
                return;
            }
        }
        let mode = WriteMode::try_from(spec.mode).unwrap_or(WriteMode::Append);
        {
            let mut st = self.state.lock().await;
            let Some(job) = st.jobs.get_mut(job_id) else {
                return;
            };
            if job.state().is_terminal() {
                return;
            }
            super::restart::ready_all(job);
            tracing::warn!(job = %job_id, snapshot = %session.id, mode = ?mode, "job started over: {why}; the job is split on ctid block ranges (rows move between blocks when updated), so the target was emptied and every chunk is copied again in a new snapshot");
        }
        self.resume_in(job_id, session, None).await;
    }
}

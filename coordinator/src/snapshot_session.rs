//! The source session that holds a job's exported snapshot: opened by the
//! leader when a SNAPSHOT job starts, kept open by a task of its own (which
//! touches it every `SNAPSHOT_PING`, so the source never ends it as idle and
//! a lost session is noticed), and closed when the job ends or the leader's
//! term does (dropping the `SnapshotSession` ends the task, which rolls the
//! transaction back and closes the session).
//!
//! `open_snapshot_session` is the one place such a session is opened: the
//! connection budget reserves its connection there.

use std::sync::Arc;

use ferry_common::connections::ConnectionRegistry;
use ferry_common::errors::ErrorClass;
use ferry_common::timing::SNAPSHOT_PING;
use ferry_connectors::postgres::session;
use ferry_connectors::postgres::snapshot::{self, SnapshotId};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::budget::Reservation;
use crate::planner::PlanError;

/// A snapshot held open on the source; dropping it closes the session.
#[derive(Debug)]
pub struct SnapshotSession {
    /// The id chunks read in (`SET TRANSACTION SNAPSHOT`).
    pub id: SnapshotId,
    /// Whether it is the very snapshot asked to be adopted (the same instant
    /// as before), rather than a new one.
    pub adopted: bool,
    stop: CancellationToken,
    /// Wakes the keeper to touch the session now (a chunk found the snapshot gone).
    probe: Arc<Notify>,
    /// The session's place in the connection budget, given back with it.
    reservation: Option<Reservation>,
}

impl SnapshotSession {
    /// The session, counted in the connection budget by `reservation` until
    /// it is closed.
    pub fn counted(mut self, reservation: Reservation) -> Self {
        self.reservation = Some(reservation);
        self
    }

    /// Touches the session now instead of at the next `SNAPSHOT_PING`, so a
    /// lost session is noticed (and replaced) before chunks use up their
    /// retries on it.
    pub fn probe(&self) {
        self.probe.notify_one();
    }
}

impl Drop for SnapshotSession {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Opens a session on `source` for job `job_id`, starts a repeatable-read
/// read-only transaction and exports its snapshot; with `adopt`, reads in
/// that snapshot first when the source still has it (so the job keeps its
/// instant) and exports a new one otherwise. `on_lost` is called once if the
/// session dies while held (not when it is closed on purpose).
pub async fn open_snapshot_session(
    conns: &ConnectionRegistry,
    source: &str,
    job_id: &str,
    adopt: Option<&SnapshotId>,
    on_lost: impl FnOnce(String) + Send + 'static,
) -> Result<SnapshotSession, PlanError> {
    let url = conns
        .url(source)
        .map_err(|e| PlanError::invalid(e.to_string()))?;
    let client = session::open(source, url).await?;
    session::tag(&client, &format!("ferry:snapshot:{job_id}")).await?;
    let mut adopted = false;
    let id = match adopt {
        Some(old) => match snapshot::adopt(&client, old).await {
            Ok(id) => {
                adopted = true;
                id
            }
            Err(f) if snapshot::is_lost(&f) => snapshot::export(&client).await?,
            Err(f) => return Err(f.into()),
        },
        None => snapshot::export(&client).await?,
    };
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let probe = Arc::new(Notify::new());
    let probed = Arc::clone(&probe);
    let job = job_id.to_string();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stopped.cancelled() => {
                    let _ = session::exec(&client, "ROLLBACK").await;
                    tracing::debug!(job = %job, "source snapshot released");
                    return;
                }
                _ = tokio::time::sleep(SNAPSHOT_PING) => {}
                _ = probed.notified() => {}
            }
            if let Err(e) = client.simple_query("SELECT 1").await {
                if !stopped.is_cancelled() {
                    on_lost(format!(
                        "the source session holding the snapshot ended: {e}"
                    ));
                }
                return;
            }
        }
    });
    Ok(SnapshotSession {
        id,
        adopted,
        stop,
        probe,
        reservation: None,
    })
}

/// Whether a failure to open the snapshot session is worth trying again.
pub fn retryable(e: &PlanError) -> bool {
    e.class == ErrorClass::Transient
}

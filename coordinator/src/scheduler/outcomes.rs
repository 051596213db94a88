//! What happens when a chunk attempt ends: success lands the chunk; a
//! transient failure waits out its backoff and runs again; a permanent one
//! fails the job at once. Reports with a stale fencing token are refused.

use std::sync::Arc;
use std::time::Instant;

use ferry_common::errors::ErrorClass;
use ferry_common::proto::{ChunkAssignment, ChunkRef, ChunkState, JobState, WriteMode};
use ferry_connectors::db::target as db_target;
use ferry_connectors::postgres::sql::show_table;

use super::budget_gate;
use super::concurrency;
use super::grant;
use super::progress;
use super::state::{now_ms, JobRuntime, State, CLAIMED};
use super::transitions::{After, Transition};
use super::Scheduler;
use crate::error::CoordinatorError;
use crate::planner::open_target;

/// Finds the chunk a report is about and checks the reporter still holds it:
/// the chunk is LEASED under the report's fencing token to this very worker.
/// An empty or unknown worker id never passes.
fn current_chunk<'a>(
    st: &'a mut State,
    r: &ChunkRef,
    worker_id: &str,
) -> Result<&'a mut JobRuntime, CoordinatorError> {
    let stale = || CoordinatorError::StaleToken {
        job_id: r.job_id.clone(),
        chunk_no: r.chunk_no,
    };
    let job = st
        .jobs
        .get_mut(&r.job_id)
        .ok_or_else(|| CoordinatorError::JobNotFound(r.job_id.clone()))?;
    let c = job.chunk(r.chunk_no).ok_or_else(stale)?;
    if c.record.state != ChunkState::Leased as i32
        || c.record.fencing_token != r.fencing_token
        || worker_id.is_empty()
        || c.record.worker_id != worker_id
    {
        return Err(stale());
    }
    Ok(job)
}

/// Whether the job's rejected rows passed its `max_failed_rows` or
/// `max_failed_ratio`; the message says which and by how much.
fn rejects_over_limit(job: &JobRuntime) -> Option<String> {
    let spec = job.record.spec.as_ref()?;
    let (written, rejected) = job.rows_committed();
    if let Some(max) = spec.max_failed_rows {
        if rejected > max {
            return Some(format!(
                "{rejected} rows rejected, more than max_failed_rows {max}: see `ferry rejects {}`, fix the data or raise --max-failed-rows",
                job.record.job_id
            ));
        }
    }
    if let Some(ratio) = spec.max_failed_ratio {
        let total = job.record.rows_estimated.max(written + rejected).max(1);
        let share = rejected as f64 / total as f64;
        if share > ratio {
            return Some(format!(
                "{rejected} of {total} rows rejected ({:.4}%), more than max_failed_ratio {ratio}: see `ferry rejects {}`",
                share * 100.0,
                job.record.job_id
            ));
        }
    }
    None
}

impl Scheduler {
    /// Records a chunk committed in the target (or found committed in the ledger).
    ///
    /// The report is checked and the chunk claimed under the state lock, then
    /// written; when the store's writes wait on the network the lock is
    /// released meanwhile, so concurrent reports reach the store together.
    /// While the write is in flight the chunk stays LEASED with the token
    /// `CLAIMED`: no other report matches it, and it is not counted done before
    /// it is stored. Runs to the end once it has claimed the chunk (see `acquire`).
    ///
    /// With `want_next` it also leases up to that many ready chunks to the
    /// worker (see `lease_next`) and returns them. When the store's writes
    /// wait, the next chunks are claimed under the same lock as the report
    /// and written together with it, so a group-committing store (etcd)
    /// carries the completion and the next lease in one transaction.
    pub async fn complete(
        self: &Arc<Self>,
        worker_id: &str,
        r: ChunkRef,
        rows_written: u64,
        rows_rejected: u64,
        already_committed: bool,
        want_next: u32,
    ) -> Result<Vec<ChunkAssignment>, CoordinatorError> {
        let mut st = self.state.lock().await;
        let registered = st.workers.contains_key(worker_id);
        let job = current_chunk(&mut st, &r, worker_id)?;
        let Some(c) = job.chunk(r.chunk_no) else {
            return Ok(Vec::new());
        };
        let old = c.record.clone();
        let version = c.version;
        let retried = old.retries > 0;
        let mut rec = old.clone();
        rec.state = ChunkState::Succeeded as i32;
        rec.rows_written = rows_written;
        rec.rows_rejected = rows_rejected;
        rec.repair = false;
        rec.last_error.clear();
        let together = self.store.writes_wait();
        let mut next_claims = Vec::new();
        let mut freed = None;
        let (written, leases) = if together {
            let mut claimed = old.clone();
            claimed.fencing_token = CLAIMED;
            job.set_chunk(r.chunk_no, claimed, version);
            if want_next > 0 && registered {
                // the reported chunk no longer takes a place of the job's max_in_flight
                freed = job.live.remove(&r.chunk_no);
                budget_gate::release(self.budget(), &r.job_id, r.chunk_no);
                next_claims = grant::claim_ready(&mut st, self.budget(), worker_id, want_next);
            }
            drop(st);
            let both = futures::future::join(
                self.store.update_chunk(&rec, version),
                self.write_leases(&next_claims),
            )
            .await;
            st = self.state.lock().await;
            both
        } else {
            (self.store.update_chunk(&rec, version).await, Vec::new())
        };
        // the next leases stand on their own, whatever became of the report
        let next = self
            .apply_leases(&mut st, next_claims, leases)
            .unwrap_or_else(|e| {
                tracing::warn!(worker = %worker_id, error = %e, "cannot lease the next chunk with a completion");
                Vec::new()
            });
        let Some(job) = st.jobs.get_mut(&r.job_id) else {
            return Ok(next);
        };
        match written {
            Ok(v) => job.set_chunk(r.chunk_no, rec, v),
            Err(e) => {
                job.set_chunk(r.chunk_no, old, version);
                if let Some(live) = freed {
                    job.live.insert(r.chunk_no, live);
                    budget_gate::hold(self.budget(), job, r.chunk_no, worker_id);
                }
                return Err(e.into());
            }
        }
        let ended = job.live.remove(&r.chunk_no);
        if ended.is_some() {
            budget_gate::release(self.budget(), &r.job_id, r.chunk_no);
        }
        let mut resplit = false;
        if let Some(live) = ended.or(freed) {
            let in_flight = job.live.len() as u32 + 1;
            concurrency::observe(job, r.chunk_no, rows_written, live.leased_at, in_flight);
            let took = live.leased_at.elapsed();
            resplit = super::resplit::observe(job, r.chunk_no, rows_written, took);
        }
        if retried {
            crate::metrics::events().retries_succeeded.add(1, &[]);
        }
        let over_limit = rejects_over_limit(job);
        let log_line = || {
            if already_committed {
                tracing::info!(job = %r.job_id, chunk = r.chunk_no, "chunk was already committed by another attempt; not copied again");
            }
            progress::log_chunk_completed(&r.job_id, r.chunk_no, rows_written, rows_rejected);
        };
        // The guide's per-chunk line is written after the lock is released,
        // except by the completion that ends the job: it precedes the job's
        // closing lines.
        let ends_job = over_limit.is_some() || job.succeeded() as usize == job.chunks.len();
        if ends_job {
            log_line();
        }
        if let Some(error) = over_limit {
            self.fail_job(job, error).await?;
        }
        self.maybe_finish(&mut st, &r.job_id).await?;
        drop(st);
        if !ends_job {
            log_line();
        }
        if resplit {
            tokio::spawn(Arc::clone(self).resplit(r.job_id.clone()));
        }
        self.ready.notify_waiters();
        self.changed();
        if together || want_next == 0 {
            return Ok(next);
        }
        Ok(self.lease_next(worker_id, want_next).await)
    }

    /// Records a failed chunk attempt (rolled back in the target).
    pub async fn fail(
        self: &Arc<Self>,
        worker_id: &str,
        r: ChunkRef,
        class: ErrorClass,
        aborted: bool,
        message: &str,
    ) -> Result<(), CoordinatorError> {
        let mut st = self.state.lock().await;
        current_chunk(&mut st, &r, worker_id)?;
        self.record_failure(
            &mut st,
            &r.job_id,
            r.chunk_no,
            r.fencing_token,
            class,
            message,
            aborted,
        )
        .await?;
        drop(st);
        self.ready.notify_waiters();
        self.changed();
        Ok(())
    }

    /// Applies a failed attempt: retry after backoff, fail the chunk and job,
    /// or (aborted on request) cancel or requeue it without counting a retry.
    /// One write, under the lock (see `transitions` for many at once).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn record_failure(
        &self,
        st: &mut State,
        job_id: &str,
        chunk_no: u32,
        token: u64,
        class: ErrorClass,
        message: &str,
        aborted: bool,
    ) -> Result<(), CoordinatorError> {
        let Some(job) = st.jobs.get_mut(job_id) else {
            return Ok(());
        };
        let Some(t) = failure_transition(job, chunk_no, token, class, message, aborted) else {
            return Ok(());
        };
        budget_gate::release(self.budget(), job_id, chunk_no);
        let v = match self.store.update_chunk(&t.new, t.version).await {
            Ok(v) => v,
            Err(e) => {
                job.set_chunk(t.n, t.old, t.version);
                return Err(e.into());
            }
        };
        job.set_chunk(chunk_no, t.new, v);
        match t.after {
            After::Stay => {}
            After::Ready { front: true } => job.ready.push_front(chunk_no),
            After::Ready { front: false } => job.ready.push_back(chunk_no),
            After::Delayed(at) => job.delayed.push((at, chunk_no)),
            After::FailJob(error) => self.fail_job(job, error).await?,
        }
        Ok(())
    }

    /// Marks a job FAILED with `error`; chunks in flight are aborted at their next heartbeat.
    pub(crate) async fn fail_job(
        &self,
        job: &mut JobRuntime,
        error: String,
    ) -> Result<(), CoordinatorError> {
        if job.state().is_terminal() {
            return Ok(());
        }
        job.record.state = JobState::Failed as i32;
        job.record.error = error.clone();
        self.changed();
        job.record.finished_at_ms = now_ms();
        self.store.update_job(&job.record).await?;
        self.job_ended(job);
        job.ready.clear();
        job.delayed.clear();
        let (written, rejected) = job.rows_committed();
        tracing::error!(
            job = %job.record.job_id,
            "Parallel processing failed: {error} ({} rows landed, {} rejected, {}/{} chunks done)",
            progress::thousands(written),
            progress::thousands(rejected),
            job.succeeded(),
            job.chunks.len()
        );
        Ok(())
    }

    /// Ends a running job whose chunks all landed: SUCCEEDED, after the
    /// one-time index build and swap of mode replace.
    pub(crate) async fn maybe_finish(
        self: &Arc<Self>,
        st: &mut State,
        job_id: &str,
    ) -> Result<(), CoordinatorError> {
        let Some(job) = st.jobs.get_mut(job_id) else {
            return Ok(());
        };
        if job.state() != JobState::Running || job.succeeded() as usize != job.chunks.len() {
            return Ok(());
        }
        let replace = job
            .record
            .spec
            .as_ref()
            .is_some_and(|s| s.mode == WriteMode::Replace as i32);
        if replace && !job.record.replaced {
            if !job.finalizing {
                job.finalizing = true;
                let me = Arc::clone(self);
                let id = job_id.to_string();
                tokio::spawn(async move { me.finalize_replace(id).await });
            }
            return Ok(());
        }
        self.succeed(job).await
    }

    /// Marks a job SUCCEEDED and logs the guide's closing lines.
    async fn succeed(&self, job: &mut JobRuntime) -> Result<(), CoordinatorError> {
        job.record.state = JobState::Succeeded as i32;
        job.record.finished_at_ms = now_ms();
        self.store.update_job(&job.record).await?;
        self.job_ended(job);
        self.changed();
        let (written, rejected) = job.rows_committed();
        let elapsed = job.started.map(|s| Instant::now() - s).unwrap_or_default();
        let total = job.chunks.len() as u32;
        progress::log_progress(&job.record.job_id, total, total, written, elapsed);
        progress::log_complete(&job.record.job_id, written, rejected, elapsed);
        Ok(())
    }

    /// Builds the indexes of a replace job's new table and swaps it in, then
    /// finishes the job; the swap is recorded so it never runs twice.
    async fn finalize_replace(self: Arc<Self>, job_id: String) {
        let (spec, table, load, columns) = {
            let st = self.state.lock().await;
            let Some(job) = st.jobs.get(&job_id) else {
                return;
            };
            (
                job.record.spec.clone().unwrap_or_default(),
                job.record.target.clone().unwrap_or_default(),
                job.record.load.clone().unwrap_or_default(),
                job.record
                    .columns
                    .iter()
                    .map(|c| c.target.clone())
                    .collect::<Vec<_>>(),
            )
        };
        tracing::info!(job = %job_id, table = %show_table(&table), "all chunks landed: building indexes on the new table and swapping it in");
        let session = self.reserve_for(&job_id, &[&spec.target]).await;
        let result = async {
            let mut conn = open_target(&self.config.connections, &spec, &job_id)
                .await
                .map_err(|e| e.message)?;
            let names: Vec<&str> = columns.iter().map(String::as_str).collect();
            db_target::finalize_replace(&mut conn, &table, &load, &job_id, &names)
                .await
                .map_err(|e| e.message)
        }
        .await;
        drop(session);
        let mut st = self.state.lock().await;
        let Some(job) = st.jobs.get_mut(&job_id) else {
            return;
        };
        job.finalizing = false;
        let outcome = match result {
            Ok(()) => {
                job.record.replaced = true;
                job.record.load = job.record.target.clone();
                tracing::info!(job = %job_id, "new table swapped in");
                if job.state() == JobState::Running {
                    self.succeed(job).await
                } else {
                    Ok(())
                }
            }
            Err(e) => self.fail_job(job, format!("replace failed while building indexes or swapping: {e}; `ferry resume {job_id}` tries again")).await,
        };
        if let Err(e) = outcome {
            tracing::error!(job = %job_id, error = %e, "cannot record the end of a replace job");
        }
    }
}

/// What a failed attempt of chunk `chunk_no` (under `token`) changes, or
/// None when the attempt no longer holds the chunk. Logs the guide's retry
/// or give-up line; the caller writes the transition.
pub(crate) fn failure_transition(
    job: &mut JobRuntime,
    chunk_no: u32,
    token: u64,
    class: ErrorClass,
    message: &str,
    aborted: bool,
) -> Option<Transition> {
    let c = job.chunk(chunk_no)?;
    if c.record.fencing_token != token || c.record.state != ChunkState::Leased as i32 {
        return None;
    }
    let old = c.record.clone();
    let version = c.version;
    let mut rec = old.clone();
    job.live.remove(&chunk_no);
    let retry = job.retry();
    rec.last_error = message.to_string();
    let job_state = job.state();
    let job_id = job.record.job_id.clone();
    let after = if job_state != JobState::Running {
        // cancelled or failed meanwhile: the attempt rolled back, the chunk stays undone
        rec.state = if job_state == JobState::Cancelled {
            ChunkState::Cancelled as i32
        } else {
            ChunkState::Pending as i32
        };
        After::Stay
    } else if aborted {
        rec.state = ChunkState::Pending as i32;
        After::Ready { front: true }
    } else if class == ErrorClass::Transient && rec.retries < retry.allowed_retries() {
        crate::metrics::events().chunk_failed(class);
        crate::metrics::events().retries.add(1, &[]);
        rec.retries += 1;
        let delay = retry.delay(rec.retries, &mut rand::rng());
        rec.state = ChunkState::RetryWait as i32;
        rec.retry_at_ms = now_ms() + delay.as_millis() as i64;
        job.retries += 1;
        progress::log_chunk_retry(
            &job_id,
            chunk_no,
            message,
            rec.retries,
            retry.allowed_retries(),
        );
        After::Delayed(rec.retry_at_ms)
    } else {
        crate::metrics::events().chunk_failed(class);
        rec.state = ChunkState::Failed as i32;
        let why = match class {
            ErrorClass::Transient => format!("{} retries exhausted", retry.allowed_retries()),
            ErrorClass::Permanent => "permanent error".to_string(),
            ErrorClass::Data => "data error".to_string(),
        };
        progress::log_chunk_gave_up(&job_id, chunk_no, message, &why);
        After::FailJob(format!("chunk {chunk_no} failed ({why}): {message}"))
    };
    Some(Transition {
        job_id,
        n: chunk_no,
        old,
        version,
        new: rec,
        after,
    })
}

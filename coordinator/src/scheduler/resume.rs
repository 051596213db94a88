//! Running a finished job again: `resume` re-runs the chunks that did not
//! land (the ledger decides what did), `repair` re-copies chunks whose target
//! rows differ, and verify/rejects read a job's chunks.

use std::sync::Arc;
use std::time::Instant;

use ferry_common::proto::{self, ChunkCheck, ChunkRecord, ChunkState, JobState, Reject};

use super::state::{describe_range, now_ms};
use super::transitions::{After, Transition};
use super::Scheduler;
use crate::error::{CoordinatorError, Reason};

impl Scheduler {
    /// Resumes a FAILED or CANCELLED job: its unfinished chunks run again with
    /// a fresh retry budget; a job that never planned plans again.
    pub async fn resume(self: &Arc<Self>, job_id: &str) -> Result<proto::Job, CoordinatorError> {
        self.rerun(job_id, None).await
    }

    /// Copies the given chunks again (delete the range, copy, one transaction);
    /// with no chunks given, those that verify finds differing.
    pub async fn repair(
        self: &Arc<Self>,
        job_id: &str,
        chunks: Vec<u32>,
    ) -> Result<proto::Job, CoordinatorError> {
        let chunks = if chunks.is_empty() {
            self.verify(job_id)
                .await?
                .into_iter()
                .filter(|c| !c.matches)
                .map(|c| c.chunk_no)
                .collect()
        } else {
            chunks
        };
        if chunks.is_empty() {
            return self.get_job(job_id).await;
        }
        self.check_repairable(job_id).await?;
        self.rerun(job_id, Some(chunks)).await
    }

    /// Refuses a repair whose key ranges would hold other rows in the
    /// target (see `verify::check_repairable`); keyless jobs are judged by `rerun`.
    async fn check_repairable(&self, job_id: &str) -> Result<(), CoordinatorError> {
        let (record, chunks) = {
            let st = self.state.lock().await;
            let job = st.job(job_id)?;
            (job.record.clone(), job.chunks.len())
        };
        let spec = record.spec.clone().unwrap_or_default();
        let _sessions = self
            .reserve_for(job_id, &[&spec.source, &spec.target])
            .await;
        crate::verify::check_repairable(&self.config.connections, &record, chunks).await
    }

    async fn rerun(
        self: &Arc<Self>,
        job_id: &str,
        repair: Option<Vec<u32>>,
    ) -> Result<proto::Job, CoordinatorError> {
        let mut st = self.state.lock().await;
        let job = st
            .jobs
            .get_mut(job_id)
            .ok_or_else(|| CoordinatorError::JobNotFound(job_id.to_string()))?;
        let state = job.state();
        let allowed = match repair {
            None => matches!(state, JobState::Failed | JobState::Cancelled),
            Some(_) => state.is_terminal(),
        };
        if job.retiring {
            return Err(CoordinatorError::Busy(format!(
                "job {job_id} is past its retention and being retired: its history row remains (`ferry history`)"
            )));
        }
        if job.writing > 0 {
            return Err(CoordinatorError::Busy(format!(
                "job {job_id} is still writing {} chunk state changes (a cancel or failure in progress): try again in a moment",
                job.writing
            )));
        }
        if !allowed || job.finalizing {
            return Err(CoordinatorError::precondition(
                "job_id",
                Reason::JobState,
                format!(
                    "job {job_id} is {}: {}",
                    state.label(),
                    if repair.is_some() {
                        "repair a job once it has ended"
                    } else {
                        "only FAILED or CANCELLED jobs resume"
                    }
                ),
            ));
        }
        let spec = job.record.spec.clone().unwrap_or_default();
        let target_pg = super::restart::target_is_postgres(self, &spec);
        let restart = repair.is_some()
            && super::restart::repair_starts_over(&job.record, job.chunks.len(), target_pg);
        if restart {
            return self.repair_by_starting_over(st, job_id).await;
        }
        if repair.is_some() && !crate::verify::key_copied(&job.record) && job.chunks.len() > 1 {
            return Err(CoordinatorError::precondition(
                "job_id",
                Reason::NoKeyInTarget,
                if job.record.key.iter().any(|k| k.r#type == "tid") {
                    "repair deletes a chunk's rows by key, but this job was split on ctid block ranges of the source, which the target's rows cannot be mapped back to, and its mode keeps the target's other rows, so it cannot start over: submit the job again with --mode truncate or --mode replace to copy the whole table again (repair then starts such a job over)"
                } else {
                    "repair deletes key ranges, but the key column is not copied into the target: add it to the query and the target, or submit the job again with --mode truncate or --mode replace"
                },
            ));
        }
        job.record.error.clear();
        job.record.finished_at_ms = 0;
        job.record.runs = job.record.runs.max(1) + 1;
        super::lifecycle::new_run_trace(&mut job.record);
        if job.chunks.is_empty() {
            job.record.state = JobState::Pending as i32;
            self.store.update_job(&job.record).await?;
            drop(st);
            self.spawn_planning(job_id.to_string());
            return self.get_job(job_id).await;
        }
        let mut transitions = Vec::new();
        for c in &job.chunks {
            let n = c.record.chunk_no;
            let pick = match &repair {
                None => {
                    c.record.state != ChunkState::Succeeded as i32
                        && c.record.state != ChunkState::Leased as i32
                }
                Some(list) => list.contains(&n) && c.record.state != ChunkState::Leased as i32,
            };
            if !pick {
                continue;
            }
            let mut new = c.record.clone();
            new.state = ChunkState::Pending as i32;
            new.retries = 0;
            new.repair = repair.is_some();
            transitions.push(Transition {
                job_id: job_id.to_string(),
                n,
                old: c.record.clone(),
                version: c.version,
                new,
                after: After::Ready { front: false },
            });
        }
        let rerun = transitions.len() as u32;
        for t in &transitions {
            job.hold(t);
        }
        job.record.state = JobState::Running as i32;
        job.record.started_at_ms = now_ms();
        job.started = Some(Instant::now());
        // its snapshot was released when it ended: chunks wait for a new one
        let new_snapshot = super::consistency::wants_snapshot(&job.record) && rerun > 0;
        job.snapshot_pending = new_snapshot;
        self.store.update_job(&job.record).await?;
        self.job_started(job);
        let what = if repair.is_some() { "repair" } else { "resume" };
        tracing::info!(job = %job_id, chunks = rerun, "job {what}: running {rerun} chunks again");
        if rerun > 0 {
            progress::log_start(job_id, job.max_in_flight().min(rerun), rerun);
        }
        let (mut st, result) = self.write_transitions(st, transitions).await;
        result?;
        let job_id = job_id.to_string();
        if new_snapshot {
            let landed = st.jobs.get(&job_id).is_some_and(|j| j.succeeded() > 0);
            let why = if landed {
                format!("the job was run again ({what}): chunks that landed before read an earlier snapshot")
            } else {
                String::new()
            };
            tokio::spawn(Arc::clone(self).replace_snapshot(job_id.clone(), why));
        }
        self.maybe_finish(&mut st, &job_id).await?;
        drop(st);
        self.ready.notify_waiters();
        self.changed();
        self.get_job(&job_id).await
    }

    /// Compares every chunk of a planned job in source and target.
    pub async fn verify(&self, job_id: &str) -> Result<Vec<ChunkCheck>, CoordinatorError> {
        let (record, chunks) = {
            let st = self.state.lock().await;
            let job = st.job(job_id)?;
            (
                job.record.clone(),
                job.chunks
                    .iter()
                    .map(|c| ChunkRecord {
                        range: describe_range(&c.record, &job.record.key),
                        ..c.record.clone()
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let spec = record.spec.clone().unwrap_or_default();
        let _sessions = self
            .reserve_for(job_id, &[&spec.source, &spec.target])
            .await;
        crate::verify::verify(&self.config.connections, &record, &chunks).await
    }

    /// The rows a job's target refused.
    pub async fn rejects(
        &self,
        job_id: &str,
        limit: u32,
    ) -> Result<(Vec<Reject>, u64), CoordinatorError> {
        let record = {
            let st = self.state.lock().await;
            st.jobs
                .get(job_id)
                .ok_or_else(|| CoordinatorError::JobNotFound(job_id.to_string()))?
                .record
                .clone()
        };
        crate::verify::list_rejects(
            &self.config.connections,
            &self.config.ledger_schema,
            &record,
            limit,
        )
        .await
    }
}

use super::progress;

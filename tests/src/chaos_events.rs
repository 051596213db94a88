//! What the chaos suite records and reads back: the faults it injected, the
//! workers and leaders it took out, and the coordinator's requeue lines and
//! the workers' commit lines that show what happened to their chunks.

use crate::log_lines::{chunk_no_of_line, line_unix_secs, log_field, CHUNK_COMMITTED};

/// A fault injected into the running job.
#[derive(Debug, Clone)]
pub struct Fault {
    /// What was done and when, for the report (`SIGKILL worker w0 (w12) @3.2s`).
    pub what: String,
    /// Whether the job still ran then (no coordinator had logged
    /// `Parallel processing complete`).
    pub mid_job: bool,
}

/// A worker taken out by SIGKILL or SIGSTOP, whose chunks must come back.
#[derive(Debug, Clone)]
pub struct DeadWorker {
    /// `worker w0 (ids)`, for messages.
    pub label: String,
    /// The worker ids it had registered under.
    pub ids: Vec<String>,
    /// SIGKILL / SIGSTOP time (Unix seconds).
    pub at: f64,
    /// SIGCONT time for a frozen worker; infinity for a killed one.
    pub until: f64,
}

impl DeadWorker {
    /// True for a worker frozen and thawed rather than killed.
    pub fn frozen(&self) -> bool {
        self.until.is_finite()
    }

    /// Requeues of its chunks while it was out (a frozen worker's own after
    /// its thaw are not its death's).
    pub fn requeues<'a>(&'a self, all: &'a [Requeue]) -> impl Iterator<Item = &'a Requeue> + 'a {
        all.iter().filter(move |r| {
            r.worker
                .as_ref()
                .is_some_and(|w| self.ids.iter().any(|id| id == w))
                && r.at >= self.at - 0.05
                && r.at <= self.until + 0.5
        })
    }
}

/// A leader coordinator SIGKILLed, and the standby's takeover.
#[derive(Debug, Clone)]
pub struct Takeover {
    /// SIGKILL time (Unix seconds).
    pub killed_at: f64,
    /// The timestamp of the standby's `became the leader coordinator` line.
    pub took_over_at: f64,
}

impl Takeover {
    /// Seconds from the kill to the takeover.
    pub fn secs(&self) -> f64 {
        self.took_over_at - self.killed_at
    }
}

/// `(attempt, max)` of a `… will retry (i/max)` line.
fn retry_of_line(line: &str) -> Option<(i32, i32)> {
    let rest = line.rsplit_once("will retry (")?.1;
    let (i, rest) = rest.split_once('/')?;
    let max = rest.split(')').next()?;
    Some((i.trim().parse().ok()?, max.trim().parse().ok()?))
}

/// A coordinator's `Chunk N failed with exception: …, will retry (A/max)`:
/// attempt A of chunk N given up and the chunk queued for another attempt.
#[derive(Debug, Clone)]
pub struct Requeue {
    /// Chunk number.
    pub chunk: u64,
    /// The attempt given up.
    pub attempt: i32,
    /// When (Unix seconds, the line's timestamp).
    pub at: f64,
    /// The worker named by `… exception: worker W …`, if any.
    pub worker: Option<String>,
    /// The line as logged.
    pub line: String,
}

impl Requeue {
    /// Parses a requeue line of `job`; `None` for any other line.
    pub fn parse(line: &str, job: &str) -> Option<Requeue> {
        if !line.contains("failed with exception: ") || log_field(line, "job") != Some(job) {
            return None;
        }
        let (attempt, _) = retry_of_line(line)?;
        let worker = line
            .split_once("failed with exception: worker ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .map(str::to_string);
        Some(Requeue {
            chunk: chunk_no_of_line(line)?,
            attempt,
            at: line_unix_secs(line)?,
            worker,
            line: line.to_string(),
        })
    }
}

/// A worker's `chunk committed job=J chunk=N attempt=A …` line.
#[derive(Debug, Clone)]
pub struct Commit {
    /// Chunk number.
    pub chunk: u64,
    /// The attempt that committed.
    pub attempt: i32,
    /// When (Unix seconds, the line's timestamp).
    pub at: f64,
    /// The line as logged.
    pub line: String,
}

impl Commit {
    /// Parses a commit line of `job`; `None` for any other line.
    pub fn parse(line: &str, job: &str) -> Option<Commit> {
        if !line.contains(CHUNK_COMMITTED) || log_field(line, "job") != Some(job) {
            return None;
        }
        Some(Commit {
            chunk: log_field(line, "chunk")?.parse().ok()?,
            attempt: log_field(line, "attempt")?.parse().ok()?,
            at: line_unix_secs(line)?,
            line: line.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requeue_and_commit_lines() {
        let requeue = "2026-11-25T07:00:01.250000Z  WARN ferry: Chunk 7 failed with exception: \
                       worker w12 lease expired, will retry (2/3) job=j1";
        let r = Requeue::parse(requeue, "j1").expect("a requeue line");
        assert_eq!(
            (r.chunk, r.attempt, r.worker.as_deref()),
            (7, 2, Some("w12"))
        );
        assert!(Requeue::parse(requeue, "j2").is_none());
        let commit = "2026-11-25T07:00:02Z  INFO ferry_worker: chunk committed job=j1 chunk=7 \
                      attempt=3 rows=20000";
        let c = Commit::parse(commit, "j1").expect("a commit line");
        assert_eq!((c.chunk, c.attempt), (7, 3));
        assert!(c.at > r.at);
    }
}

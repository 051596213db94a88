//! Following a job: a live progress bar on a terminal, plain lines otherwise,
//! and a closing summary.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use ferry_common::client::{is_failover_status, Coordinators};
use ferry_common::proto::{Job, JobState, WatchJobRequest};
use ferry_common::timing::{CLIENT_OUTAGE_LIMIT, CLIENT_RECONNECT};
use indicatif::{ProgressBar, ProgressStyle};

use crate::output::print_json;

/// How often plain (non-terminal) progress lines are printed.
const PLAIN_INTERVAL: Duration = Duration::from_secs(2);

fn state(job: &Job) -> JobState {
    JobState::try_from(job.state).unwrap_or(JobState::Unspecified)
}

/// Follows `job_id` until it ends and returns its last state; survives a
/// coordinator failover by reconnecting. With `json`, prints each event as a
/// line of JSON on stdout instead of the progress bar and lines. Fails with
/// the coordinator's status (its code decides the exit code;
/// `describe_status` explains it).
pub async fn follow(
    coordinators: &Coordinators,
    job_id: &str,
    json: bool,
) -> Result<Job, tonic::Status> {
    let tty = std::io::stderr().is_terminal() && !json;
    let bar = if tty {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {human_pos}/{human_len} rows ({per_sec}, ETA {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let mut last_plain = Instant::now() - PLAIN_INTERVAL;
    let mut outage_since: Option<Instant> = None;
    loop {
        let mut client = coordinators.jobs();
        let stream = client
            .watch_job(WatchJobRequest {
                job_id: job_id.to_string(),
            })
            .await;
        let mut stream = match stream {
            Ok(s) => s.into_inner(),
            Err(s)
                if is_failover_status(&s)
                    && outage_since.is_none_or(|t| t.elapsed() < CLIENT_OUTAGE_LIMIT) =>
            {
                outage_since.get_or_insert_with(Instant::now);
                coordinators.failover(&s);
                tokio::time::sleep(CLIENT_RECONNECT).await;
                continue;
            }
            Err(s) => {
                bar.finish_and_clear();
                return Err(s);
            }
        };
        outage_since = None;
        loop {
            match stream.message().await {
                Ok(Some(ev)) => {
                    if json {
                        print_json(&ev);
                    }
                    let Some(job) = ev.job else { continue };
                    bar.set_length(job.rows_estimated.max(job.rows_written));
                    bar.set_position(job.rows_written);
                    bar.set_message(format!(
                        "{} {}/{} chunks",
                        state(&job).label(),
                        job.chunks_succeeded,
                        job.chunks_total
                    ));
                    if !tty
                        && !json
                        && (last_plain.elapsed() >= PLAIN_INTERVAL || state(&job).is_terminal())
                    {
                        last_plain = Instant::now();
                        eprintln!(
                            "{} {}: {}/{} chunks, {} rows",
                            job.job_id,
                            state(&job).label(),
                            job.chunks_succeeded,
                            job.chunks_total,
                            job.rows_written
                        );
                    }
                    if state(&job).is_terminal() {
                        bar.finish_and_clear();
                        return Ok(job);
                    }
                }
                Ok(None) => break,
                Err(s) if is_failover_status(&s) => {
                    coordinators.failover(&s);
                    tokio::time::sleep(CLIENT_RECONNECT).await;
                    break;
                }
                Err(s) => {
                    bar.finish_and_clear();
                    return Err(s);
                }
            }
        }
    }
}

/// Prints the closing summary of a finished job on stderr.
pub fn summarize(job: &Job) {
    let secs = if job.finished_at_ms > job.started_at_ms && job.started_at_ms > 0 {
        (job.finished_at_ms - job.started_at_ms) as f64 / 1000.0
    } else {
        0.0
    };
    let rate = if secs > 0.0 {
        job.rows_written as f64 / secs
    } else {
        0.0
    };
    match state(job) {
        JobState::Succeeded => eprintln!(
            "job {} SUCCEEDED: {} rows copied ({} rejected) in {:.1}s, {:.0} rows/s, {} chunks, {} retries",
            job.job_id, job.rows_written, job.rows_rejected, secs, rate, job.chunks_total, job.retries
        ),
        s => eprintln!(
            "job {} {}: {} ({} rows landed in {}/{} chunks)",
            job.job_id,
            s.label(),
            if job.error.is_empty() { "no error recorded" } else { &job.error },
            job.rows_written,
            job.chunks_succeeded,
            job.chunks_total
        ),
    }
}

//! The end of a chaos case: wait for the job, measure what the faults did,
//! append the report row, then assert that nothing was lost, doubled or
//! committed late, and that recovery stayed within its bounds.

use crate::chaos::{sleep_secs, ChaosRun, MAX_TAKEOVER_SECS, ROWS};
use crate::chaos_events::{Requeue, Takeover};
use crate::cli_output::JobState;
use crate::clock::{format_unix_secs, unix_now};
use crate::data::table_checksum;
use crate::databases::ITEMS_TABLE;
use crate::ledger::ledger_summary;
use crate::log_lines::parse_start_line;
use crate::report::{append_row, ReportRow};

use std::time::Duration;

/// How long after the coordinator gave an attempt up a `chunk committed` of
/// that attempt still counts as racing the give-up (the commit round trip;
/// the log line is written after COMMIT returns) rather than as a late commit.
pub const LATE_COMMIT_TOLERANCE_SECS: f64 = 1.0;
/// Fail-safe for a job to finish after its faults.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(180);

/// What the end of a case measured.
pub struct Outcome {
    /// Per dead worker: seconds to the first requeue of its chunks.
    pub relets: Vec<f64>,
    /// Chunk attempts given up while a frozen worker was out.
    pub frozen_requeues: Vec<Requeue>,
}

/// Waits for the job to end, measures everything, appends the report row,
/// then asserts: SUCCEEDED; target == source, nothing lost or doubled;
/// exactly one ledger row per chunk, agreeing with the start line and
/// `ferry status`; no late commit; every fault mid-job; re-lease and
/// takeover within their bounds.
pub async fn finish(case: &str, run: &ChaosRun, job: &str) -> Outcome {
    let cluster = &run.cluster;
    let job_state = cluster.wait_terminal(job, JOB_TIMEOUT);
    let took = run.since_submit();
    let state_text = match &job_state {
        Ok(s) => s.label().to_string(),
        Err(e) => format!("unknown ({e})"),
    };
    eprintln!(
        "[{}] job {job} ended {state_text} after {took:.1}s",
        format_unix_secs(unix_now())
    );
    // A thawed zombie may still try to finish what it held.
    sleep_secs(1.0).await;
    let status = cluster.try_status(job);

    let source = cluster.dbs().source().await;
    let target = cluster.dbs().target().await;
    let src = table_checksum(&source, ITEMS_TABLE).await;
    let dst = table_checksum(&target, ITEMS_TABLE).await;
    let row = target
        .query_one("SELECT count(*), count(DISTINCT id) FROM items", &[])
        .await
        .expect("count target rows");
    let (landed, distinct): (i64, i64) = (row.get(0), row.get(1));
    let rows_lost = src.0 - distinct;
    let rows_duplicated = landed - distinct;
    let ledger = ledger_summary(&target, job).await;

    let requeues = run.requeues(job);
    let mut relets = Vec::new();
    for dead in run.dead_workers() {
        let first = dead
            .requeues(&requeues)
            .min_by(|a, b| a.at.total_cmp(&b.at));
        match first {
            Some(r) => {
                let s = r.at - dead.at;
                eprintln!(
                    "re-lease of {}'s chunk took {s:.2}s: {}",
                    dead.label, r.line
                );
                relets.push(s);
            }
            None => eprintln!(
                "{} held no chunk when taken out (no requeue line)",
                dead.label
            ),
        }
    }
    let commits = run.commits(job);
    let late: Vec<String> = requeues
        .iter()
        .flat_map(|r| {
            commits
                .iter()
                .filter(move |c| {
                    c.chunk == r.chunk
                        && c.attempt == r.attempt
                        && c.at > r.at + LATE_COMMIT_TOLERANCE_SECS
                })
                .map(move |c| format!("given up: {}\ncommitted: {}", r.line, c.line))
        })
        .collect();

    append_row(&ReportRow {
        case: case.to_string(),
        faults: run.faults().iter().map(|f| f.what.clone()).collect(),
        relet_secs: relets.iter().copied().reduce(f64::max),
        takeover_secs: run.takeovers().iter().map(Takeover::secs).reduce(f64::max),
        rows_lost,
        rows_duplicated,
        job_state: format!("{state_text} in {took:.0}s"),
    });

    assert_eq!(
        job_state,
        Ok(JobState::Succeeded),
        "job {job} did not succeed; status: {status:?}\ncoordinators:\n{}",
        cluster.coordinator_tails(40)
    );
    assert_eq!(
        rows_lost, 0,
        "rows lost: the source has {} rows, {distinct} distinct ids landed",
        src.0
    );
    assert_eq!(
        rows_duplicated, 0,
        "rows duplicated: {landed} rows landed, {distinct} distinct ids; ledger {ledger:?}"
    );
    assert_eq!(
        dst, src,
        "target (count, checksum) differs from the source's"
    );
    let status = status.unwrap_or_else(|e| panic!("{e}"));
    let chunks = status.chunks_total as i64;
    let (_, started) = cluster
        .coordinators()
        .iter()
        .flat_map(|c| c.logs())
        .find_map(|l| parse_start_line(&l))
        .unwrap_or_else(|| {
            panic!(
                "no coordinator logged the start line; coordinators:\n{}",
                cluster.coordinator_tails(40)
            )
        });
    assert_eq!(
        started as i64, chunks,
        "start line and status disagree on the chunk count"
    );
    assert_eq!(
        status.chunks_succeeded as i64, chunks,
        "ferry status: not every chunk succeeded: {status:?}"
    );
    assert_eq!(ledger.rows, chunks, "one ledger row per chunk: {ledger:?}");
    assert_eq!(ledger.distinct_chunks, chunks, "{ledger:?}");
    assert_eq!(ledger.rows_written, ROWS as i64, "{ledger:?}");
    assert_eq!(ledger.rows_rejected, 0, "{ledger:?}");
    assert!(
        late.is_empty(),
        "{} chunk attempt(s) committed more than {LATE_COMMIT_TOLERANCE_SECS}s after the \
         coordinator had given them up (the worker should have fenced itself):\n{}",
        late.len(),
        late.join("\n")
    );
    for f in run.faults() {
        assert!(
            f.mid_job,
            "fault `{}` came after the job had finished: the case exercised nothing",
            f.what
        );
    }
    for t in run.takeovers() {
        assert!(
            t.secs() < MAX_TAKEOVER_SECS,
            "leader takeover took {:.2}s (bound {MAX_TAKEOVER_SECS}s)",
            t.secs()
        );
    }
    for dead in run.dead_workers() {
        let bound = run.relet_bound(dead);
        if let Some(r) = dead
            .requeues(&requeues)
            .min_by(|a, b| a.at.total_cmp(&b.at))
        {
            assert!(
                r.at - dead.at < bound,
                "re-leasing a chunk of {} took {:.2}s (bound {bound:.1}s): {}",
                dead.label,
                r.at - dead.at,
                r.line
            );
        }
    }
    let frozen_requeues = run
        .dead_workers()
        .iter()
        .filter(|d| d.frozen())
        .flat_map(|d| d.requeues(&requeues).cloned().collect::<Vec<_>>())
        .collect();
    Outcome {
        relets,
        frozen_requeues,
    }
}

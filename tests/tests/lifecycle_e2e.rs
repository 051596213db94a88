//! Graceful lifecycle (issue 12) with real processes: real etcd, real
//! PostgreSQL, coordinators and workers as separate `ferry` processes.
//!
//! - A worker sent SIGTERM mid-chunk with a long drain timeout finishes the
//!   chunks it holds and exits 0; with a short one it rolls them back and
//!   hands them back at once (`released`: no retry counted, nothing waits out a
//!   lease) and exits 0. Either way no chunk is lost or doubled: the target
//!   table has no key, so a chunk landing twice would show in count and
//!   checksum, and the ledger holds exactly one row per chunk.
//! - A leader coordinator sent SIGTERM resigns (revokes its election lease)
//!   and exits 0; the standby leads at once and the job succeeds exactly. The
//!   time from the SIGTERM to the standby's `became the leader coordinator`
//!   line is printed (a figure for the report, not a timed assertion).
//!
//! Every chunk's COPY into the target stalls in a statement trigger
//! (`data::slow_down_inserts`) so the signals land while chunks are in flight.

use std::time::Duration;

use ferry_tests::cli::Submit;
use ferry_tests::cli_output::JobState;
use ferry_tests::clock::unix_now;
use ferry_tests::cluster::{Cluster, WorkerOptions};
use ferry_tests::data::slow_down_inserts;
use ferry_tests::databases::{Databases, ITEMS_TABLE};
use ferry_tests::ledger::ledger_summary;
use ferry_tests::log_lines::{
    line_unix_secs, log_field, BECAME_LEADER, CHUNK_COMMITTED, WORKER_LEFT,
};
use ferry_tests::node::Node;

/// Rows per chunk.
const CHUNK_SIZE: u64 = 20_000;
/// Fail-safe for a job to end.
const JOB_TIMEOUT: Duration = Duration::from_secs(180);
/// Fail-safe for a log line or an exit we wait for.
const LINE_TIMEOUT: Duration = Duration::from_secs(60);

/// A cluster over one etcd member whose target is keyless (a chunk landing
/// twice would show) and slow to commit each chunk by `stall_ms`.
async fn start(
    rows: u64,
    stall_ms: u64,
    coordinators: usize,
    workers: Vec<WorkerOptions>,
) -> Cluster {
    let dbs = Databases::one_cluster().await;
    dbs.prepare_items_keyless_target(rows).await;
    slow_down_inserts(&dbs.target().await, ITEMS_TABLE, stall_ms).await;
    let mut builder = Cluster::builder()
        .databases(dbs)
        .etcd(1)
        .coordinators(coordinators);
    for w in workers {
        builder = builder.worker(w);
    }
    builder.start().await
}

/// A worker with `--drain-timeout`.
fn draining(timeout: &str) -> WorkerOptions {
    WorkerOptions::new().arg("--drain-timeout").arg(timeout)
}

/// Submits the items copy; returns the job id. With `--fixed-workers`
/// every worker holds chunks from the start: adaptive concurrency starts a
/// job at 2 chunks in flight, which one worker can hold while the other
/// idles, and these tests signal a worker that must hold chunks.
fn submit(cluster: &Cluster) -> String {
    cluster.submit(
        &Submit::items()
            .chunk_size(CHUNK_SIZE)
            .args(&["--fixed-workers"]),
    )
}

/// The job ends SUCCEEDED, every source row landed exactly once, and the
/// ledger holds one row per chunk, their counts adding up to the source.
async fn assert_exact(cluster: &Cluster, job: &str, rows: u64) {
    let state = cluster.wait_terminal(job, JOB_TIMEOUT);
    assert_eq!(state, Ok(JobState::Succeeded), "job {job}");
    cluster.dbs().assert_copied_exactly(ITEMS_TABLE).await;
    let ledger = ledger_summary(&cluster.dbs().target().await, job).await;
    let chunks = rows.div_ceil(CHUNK_SIZE) as i64;
    assert!(
        ledger.rows >= chunks && ledger.rows == ledger.distinct_chunks,
        "one ledger row per chunk: {ledger:?}"
    );
    assert_eq!(ledger.rows_written, rows as i64, "{ledger:?}");
}

/// Log lines of `node` containing `needle`, written at or after `since` (Unix s).
fn lines_since(node: &Node, needle: &str, since: f64) -> Vec<String> {
    node.log()
        .lines()
        .filter(|l| l.contains(needle) && line_unix_secs(l).is_some_and(|t| t >= since))
        .map(str::to_string)
        .collect()
}

/// Panics if a coordinator counted a retry or requeued a chunk because a
/// worker's lease ran out: a drain must do neither.
fn assert_no_retry(cluster: &Cluster) {
    let bad: Vec<String> = cluster
        .coordinator_lines()
        .into_iter()
        .filter(|l| {
            l.contains("will retry")
                || l.contains("stopped heartbeating")
                || l.contains("lease expired in etcd")
                || l.contains("not retrying")
        })
        .collect();
    assert!(
        bad.is_empty(),
        "a drained worker must cost no retry and no lease expiry: {bad:#?}"
    );
}

/// Sends SIGTERM to `worker` half a second after its first committed chunk
/// (its slots then hold their next chunks, mid-stall); returns the time sent.
async fn sigterm_mid_chunk(worker: &Node) -> f64 {
    assert!(
        worker.wait_for_log(CHUNK_COMMITTED, LINE_TIMEOUT),
        "{} committed nothing",
        worker.label()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at = unix_now();
    worker.terminate();
    at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_sigterm_with_a_long_grace_finishes_its_chunks() {
    const ROWS: u64 = 400_000;
    let cluster = start(ROWS, 2_000, 1, vec![draining("60s"), WorkerOptions::new()]).await;
    let a = cluster.worker(0);
    let job = submit(&cluster);
    let termed = sigterm_mid_chunk(a).await;
    let status = a
        .wait_exit(LINE_TIMEOUT)
        .unwrap_or_else(|| panic!("worker-a still runs after SIGTERM:\n{}", a.log_tail(30)));
    assert!(status.success(), "a drained worker exits 0, got {status}");
    let finished = lines_since(a, "chunk committed", termed);
    assert!(
        !finished.is_empty(),
        "the chunks worker-a held at SIGTERM finish within the grace:\n{}",
        a.log_tail(30)
    );
    for never in ["drain timeout reached", "rolled back and handed back"] {
        assert!(
            lines_since(a, never, termed).is_empty(),
            "no chunk in flight is rolled back with a long grace: {never}\n{}",
            a.log_tail(30)
        );
    }
    assert_exact(&cluster, &job, ROWS).await;
    assert_no_retry(&cluster);
    // it told the coordinator it left: its session ended at once, not when
    // its lease would have run out
    let ids = a.ids();
    let left = cluster.coordinator_lines().into_iter().find(|l| {
        l.contains(WORKER_LEFT)
            && log_field(l, "worker").is_some_and(|w| ids.iter().any(|i| i == w))
    });
    assert!(
        left.is_some(),
        "the coordinator never logged that worker-a ({ids:?}) left:\n{}",
        cluster.coordinator(0).log_tail(20)
    );
    eprintln!(
        "long grace: worker-a finished {} chunk(s) after SIGTERM and exited 0",
        finished.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_sigterm_with_a_short_grace_hands_its_chunks_back() {
    const ROWS: u64 = 240_000;
    let cluster = start(ROWS, 6_000, 1, vec![draining("1s"), WorkerOptions::new()]).await;
    let a = cluster.worker(0);
    let a_ids = a.ids();
    let job = submit(&cluster);
    let termed = sigterm_mid_chunk(a).await;
    let status = a
        .wait_exit(LINE_TIMEOUT)
        .unwrap_or_else(|| panic!("worker-a still runs after SIGTERM:\n{}", a.log_tail(30)));
    let exited = unix_now();
    assert!(status.success(), "a drained worker exits 0, got {status}");
    assert!(
        !lines_since(a, "drain timeout reached", termed).is_empty(),
        "worker-a held chunks past its 1 s drain timeout:\n{}",
        a.log_tail(30)
    );
    assert_exact(&cluster, &job, ROWS).await;
    let released: Vec<String> = lines_since(
        cluster.coordinator(0),
        "chunk released by its worker",
        termed,
    )
    .into_iter()
    .filter(|l| log_field(l, "worker").is_some_and(|w| a_ids.iter().any(|id| id == w)))
    .collect();
    assert!(
        !released.is_empty(),
        "the coordinator took worker-a's chunks back as released:\n{}",
        cluster.coordinator(0).log_tail(40)
    );
    assert_no_retry(&cluster);
    eprintln!(
        "short grace: worker-a handed back {} chunk(s) and exited 0 {:.1} s after SIGTERM (drain timeout 1 s)",
        released.len(),
        exited - termed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_sigterm_resigns_and_the_standby_leads_at_once() {
    const ROWS: u64 = 400_000;
    let cluster = start(
        ROWS,
        1_000,
        2,
        vec![WorkerOptions::new(), WorkerOptions::new()],
    )
    .await;
    let job = submit(&cluster);
    let leader = cluster.coordinator(0);
    assert!(
        leader
            .wait_for_line(
                |l| l.contains("Chunk ") && l.contains(" completed"),
                LINE_TIMEOUT
            )
            .is_some(),
        "no chunk completed before the SIGTERM"
    );
    let termed = unix_now();
    leader.terminate();
    let status = leader
        .wait_exit(LINE_TIMEOUT)
        .expect("the leader exits after SIGTERM");
    assert!(status.success(), "a resigning leader exits 0, got {status}");
    assert!(
        leader.log().contains("resigned leadership"),
        "the leader revokes its election lease before exiting:\n{}",
        leader.log_tail(20)
    );
    let line = cluster
        .coordinator(1)
        .wait_for_line(|l| l.contains(BECAME_LEADER), LINE_TIMEOUT)
        .expect("the standby takes over");
    let took = line_unix_secs(&line).expect("timestamped line") - termed;
    assert_exact(&cluster, &job, ROWS).await;
    eprintln!("leader SIGTERM -> standby `became the leader coordinator`: {took:.2} s");
}

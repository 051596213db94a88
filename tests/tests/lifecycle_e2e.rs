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

use ferry_tests::data::slow_down_inserts;
use ferry_tests::etcd::EtcdCluster;
use ferry_tests::ferry::{run_cli, start_coordinator, FerryProcess};
use ferry_tests::job::{
    job_id, ledger_summary, line_unix_secs, log_field, submit_args, unix_now, wait_for_state,
    CLI_TIMEOUT, TERMINAL_STATES,
};
use ferry_tests::scenario::{Databases, ITEMS_QUERY, ITEMS_TABLE};

/// Rows per chunk.
const CHUNK_SIZE: u64 = 20_000;
/// Fail-safe for a job to end.
const JOB_TIMEOUT: Duration = Duration::from_secs(180);
/// Fail-safe for a log line or an exit we wait for.
const LINE_TIMEOUT: Duration = Duration::from_secs(60);

/// The databases (keyless target, slowed commits), one etcd member and one
/// coordinator leading through it.
struct Bed {
    dbs: Databases,
    coordinator: FerryProcess,
    url: String,
    env: Vec<(String, String)>,
    /// Declared last: dropped after the ferry processes.
    _etcd: EtcdCluster,
}

impl Bed {
    async fn start(rows: u64, stall_ms: u64) -> Bed {
        let dbs = Databases::one_cluster().await;
        dbs.prepare_items_keyless_target(rows).await;
        slow_down_inserts(&dbs.target().await, ITEMS_TABLE, stall_ms).await;
        let etcd = EtcdCluster::start(1);
        let env = dbs.conn_env();
        let (coordinator, url) = start_coordinator(&["--etcd", &etcd.endpoint(0)], &env);
        assert!(
            coordinator.wait_for_log("became the leader coordinator", LINE_TIMEOUT),
            "the coordinator never led"
        );
        Bed {
            dbs,
            coordinator,
            url,
            env,
            _etcd: etcd,
        }
    }

    /// `ferry worker` against this bed's coordinators (`urls`), with `extra` flags.
    fn worker(&self, name: &str, urls: &str, extra: &[&str]) -> FerryProcess {
        let mut args = vec!["worker", "--coordinator", urls, "--concurrency", "2"];
        args.extend_from_slice(extra);
        let w = FerryProcess::spawn(name, &args, &self.env);
        assert!(
            w.wait_for_log("registered with coordinator", LINE_TIMEOUT),
            "{name} never registered"
        );
        w
    }

    /// Submits the items copy through `urls`; returns the job id.
    fn submit(&self, urls: &str) -> String {
        let size = CHUNK_SIZE.to_string();
        let out = run_cli(
            &submit_args(urls, ITEMS_QUERY, ITEMS_TABLE, &["--chunk-size", &size]),
            &[] as &[(&str, &str)],
            CLI_TIMEOUT,
        );
        job_id(&out)
    }

    /// The job ends SUCCEEDED, every source row landed exactly once, and the
    /// ledger holds one row per chunk, their counts adding up to the source.
    async fn assert_exact(&self, urls: &str, job: &str, rows: u64) {
        let state = wait_for_state(urls, job, &TERMINAL_STATES, JOB_TIMEOUT);
        assert_eq!(state, "SUCCEEDED", "job {job} ended {state}");
        self.dbs.assert_copied_exactly(ITEMS_TABLE).await;
        let ledger = ledger_summary(&self.dbs.target().await, job).await;
        let chunks = rows.div_ceil(CHUNK_SIZE) as i64;
        assert!(
            ledger.rows >= chunks && ledger.rows == ledger.distinct_chunks,
            "one ledger row per chunk: {ledger:?}"
        );
        assert_eq!(ledger.rows_written, rows as i64, "{ledger:?}");
    }
}

/// The worker id a worker process registered under.
fn worker_id(w: &FerryProcess) -> String {
    w.log()
        .lines()
        .find(|l| l.contains("registered with coordinator"))
        .and_then(|l| log_field(l, "worker"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{} logged no worker id", w.name()))
}

/// Log lines of `p` containing `needle`, written at or after `since` (Unix s).
fn lines_since(p: &FerryProcess, needle: &str, since: f64) -> Vec<String> {
    p.log()
        .lines()
        .filter(|l| l.contains(needle) && line_unix_secs(l).is_some_and(|t| t >= since))
        .map(str::to_string)
        .collect()
}

/// Panics if the coordinator counted a retry or requeued a chunk because a
/// worker's lease ran out: a drain must do neither.
fn assert_no_retry(coordinator: &FerryProcess) {
    let log = coordinator.log();
    let bad: Vec<&str> = log
        .lines()
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
async fn sigterm_mid_chunk(worker: &FerryProcess) -> f64 {
    assert!(
        worker.wait_for_log("chunk committed", LINE_TIMEOUT),
        "{} committed nothing",
        worker.name()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let at = unix_now();
    worker.terminate();
    at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_sigterm_with_a_long_grace_finishes_its_chunks() {
    const ROWS: u64 = 400_000;
    let bed = Bed::start(ROWS, 2_000).await;
    let a = bed.worker("worker-a", &bed.url, &["--drain-timeout", "60s"]);
    let _b = bed.worker("worker-b", &bed.url, &[]);
    let job = bed.submit(&bed.url);
    let termed = sigterm_mid_chunk(&a).await;
    let status = a
        .wait_exit(LINE_TIMEOUT)
        .unwrap_or_else(|| panic!("worker-a still runs after SIGTERM:\n{}", a.log_tail(30)));
    assert!(status.success(), "a drained worker exits 0, got {status}");
    let finished = lines_since(&a, "chunk committed", termed);
    assert!(
        !finished.is_empty(),
        "the chunks worker-a held at SIGTERM finish within the grace:\n{}",
        a.log_tail(30)
    );
    for never in ["drain timeout reached", "rolled back and handed back"] {
        assert!(
            lines_since(&a, never, termed).is_empty(),
            "no chunk in flight is rolled back with a long grace: {never}\n{}",
            a.log_tail(30)
        );
    }
    bed.assert_exact(&bed.url, &job, ROWS).await;
    assert_no_retry(&bed.coordinator);
    eprintln!(
        "long grace: worker-a finished {} chunk(s) after SIGTERM and exited 0",
        finished.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_sigterm_with_a_short_grace_hands_its_chunks_back() {
    const ROWS: u64 = 240_000;
    let bed = Bed::start(ROWS, 6_000).await;
    let a = bed.worker("worker-a", &bed.url, &["--drain-timeout", "1s"]);
    let a_id = worker_id(&a);
    let _b = bed.worker("worker-b", &bed.url, &[]);
    let job = bed.submit(&bed.url);
    let termed = sigterm_mid_chunk(&a).await;
    let status = a
        .wait_exit(LINE_TIMEOUT)
        .unwrap_or_else(|| panic!("worker-a still runs after SIGTERM:\n{}", a.log_tail(30)));
    let exited = unix_now();
    assert!(status.success(), "a drained worker exits 0, got {status}");
    assert!(
        !lines_since(&a, "drain timeout reached", termed).is_empty(),
        "worker-a held chunks past its 1 s drain timeout:\n{}",
        a.log_tail(30)
    );
    bed.assert_exact(&bed.url, &job, ROWS).await;
    let released: Vec<String> =
        lines_since(&bed.coordinator, "chunk released by its worker", termed)
            .into_iter()
            .filter(|l| log_field(l, "worker") == Some(a_id.as_str()))
            .collect();
    assert!(
        !released.is_empty(),
        "the coordinator took worker-a's chunks back as released:\n{}",
        bed.coordinator.log_tail(40)
    );
    assert_no_retry(&bed.coordinator);
    eprintln!(
        "short grace: worker-a handed back {} chunk(s) and exited 0 {:.1} s after SIGTERM (drain timeout 1 s)",
        released.len(),
        exited - termed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_sigterm_resigns_and_the_standby_leads_at_once() {
    const ROWS: u64 = 400_000;
    let bed = Bed::start(ROWS, 1_000).await;
    let etcd = bed._etcd.endpoint(0);
    let (standby, standby_url) = start_coordinator(&["--etcd", &etcd], &bed.env);
    assert!(
        standby.wait_for_log("following the leader coordinator", LINE_TIMEOUT),
        "the second coordinator never followed"
    );
    let urls = format!("{},{}", bed.url, standby_url);
    let _w0 = bed.worker("worker-0", &urls, &[]);
    let _w1 = bed.worker("worker-1", &urls, &[]);
    let job = bed.submit(&urls);
    assert!(
        bed.coordinator
            .wait_for_line(
                |l| l.contains("Chunk ") && l.contains(" completed"),
                LINE_TIMEOUT
            )
            .is_some(),
        "no chunk completed before the SIGTERM"
    );
    let termed = unix_now();
    bed.coordinator.terminate();
    let status = bed
        .coordinator
        .wait_exit(LINE_TIMEOUT)
        .expect("the leader exits after SIGTERM");
    assert!(status.success(), "a resigning leader exits 0, got {status}");
    assert!(
        bed.coordinator.log().contains("resigned leadership"),
        "the leader revokes its election lease before exiting:\n{}",
        bed.coordinator.log_tail(20)
    );
    let line = standby
        .wait_for_line(
            |l| l.contains("became the leader coordinator"),
            LINE_TIMEOUT,
        )
        .expect("the standby takes over");
    let took = line_unix_secs(&line).expect("timestamped line") - termed;
    bed.assert_exact(&urls, &job, ROWS).await;
    eprintln!("leader SIGTERM -> standby `became the leader coordinator`: {took:.2} s");
}

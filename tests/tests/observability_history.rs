//! Issue 10, job history: exactly one `ferry.job_history` row per job
//! across a leader killed mid-job (real etcd, two coordinators) and across
//! `resume` (which counts runs); `ferry history` lists it; past the
//! retention a finished job leaves memory and etcd (request id included)
//! and `ferry status` and `ferry watch` answer from the history.

use std::time::Duration;

use ferry_tests::cli::{Submit, CLI_TIMEOUT};
use ferry_tests::cli_output::JobState;
use ferry_tests::cluster::Cluster;
use ferry_tests::data::slow_down_inserts;
use ferry_tests::databases::ITEMS_TABLE;
use ferry_tests::log_lines::BECAME_LEADER;
use ferry_tests::observability::etcd_count;
use ferry_tests::sql::query_i64;
use tokio_postgres::Client;

const ROWS: u64 = 200_000;
const JOB_TIMEOUT: Duration = Duration::from_secs(240);
const LINE_TIMEOUT: Duration = Duration::from_secs(60);

/// `(rows, state, runs, rows_written)` of the job's history rows.
async fn history(target: &Client, job: &str) -> (i64, String, i64, i64) {
    let rows = query_i64(
        target,
        &format!("SELECT count(*) FROM ferry.job_history WHERE job_id = '{job}'"),
    )
    .await;
    let r = target
        .query_one(
            "SELECT state, runs::bigint, rows_written FROM ferry.job_history WHERE job_id = $1",
            &[&job],
        )
        .await
        .unwrap_or_else(|e| panic!("history row of {job}: {e}"));
    (rows, r.get(0), r.get(1), r.get(2))
}

/// The job's history once its row says SUCCEEDED (the row is written after
/// the state changes), or what it says after 10 s.
async fn settled_history(target: &Client, job: &str) -> (i64, String, i64, i64) {
    let mut seen = history(target, job).await;
    for _ in 0..50 {
        if seen.1 == JobState::Succeeded.label() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        seen = history(target, job).await;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_has_one_row_for_a_job_whose_leader_was_killed() {
    let cluster = Cluster::builder()
        .etcd(1)
        .coordinators(2)
        .workers(2)
        .start()
        .await;
    cluster.dbs().prepare_items(ROWS).await;
    slow_down_inserts(&cluster.dbs().target().await, ITEMS_TABLE, 400).await;

    let job = cluster.submit(&Submit::items().chunk_size(10_000));
    let finished = cluster.wait_first_chunk(LINE_TIMEOUT);
    assert!(!finished, "the job ended before the leader could be killed");
    cluster.coordinator(0).kill();
    cluster
        .coordinator(1)
        .expect_log(BECAME_LEADER, LINE_TIMEOUT);
    assert_eq!(
        cluster.wait_terminal(&job, JOB_TIMEOUT),
        Ok(JobState::Succeeded),
        "{}",
        cluster.coordinator(1).log_tail(30)
    );
    cluster.dbs().assert_copied_exactly(ITEMS_TABLE).await;

    let target = cluster.dbs().target().await;
    assert_eq!(
        settled_history(&target, &job).await,
        (1, "SUCCEEDED".to_string(), 1, ROWS as i64),
        "history of {job}"
    );
    let total = query_i64(&target, "SELECT count(*) FROM ferry.job_history").await;
    assert_eq!(total, 1, "one job, one history row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_updates_the_row_and_counts_runs() {
    let cluster = Cluster::builder().workers(1).start().await;
    cluster.dbs().prepare_items(ROWS).await;
    slow_down_inserts(&cluster.dbs().target().await, ITEMS_TABLE, 300).await;
    let url = cluster.urls();
    let job = cluster.submit(&Submit::items().chunk_size(10_000));
    cluster.wait_first_chunk(LINE_TIMEOUT);
    let out = cluster.cancel(&job);
    assert!(out.success(), "{out}");
    assert_eq!(
        cluster.wait_for_state(&job, &[JobState::Cancelled], JOB_TIMEOUT),
        Ok(JobState::Cancelled)
    );
    let history_cli = |state: &str| {
        cluster.cli(
            &["history", "--coordinator", url, "--state", state],
            CLI_TIMEOUT,
        )
    };
    let out = history_cli("cancelled");
    assert!(out.success() && out.stdout.contains(&job), "{out}");

    let out = cluster.resume(&job);
    assert!(out.success(), "{out}");
    cluster.dbs().assert_copied_exactly(ITEMS_TABLE).await;
    let target = cluster.dbs().target().await;
    assert_eq!(
        settled_history(&target, &job).await,
        (1, "SUCCEEDED".to_string(), 2, ROWS as i64),
        "history of {job}"
    );

    let out = history_cli("succeeded");
    assert!(out.success(), "{out}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&job))
        .unwrap_or_else(|| panic!("ferry history lists no {job}: {out}"));
    assert!(
        line.contains("SUCCEEDED") && line.contains(&ROWS.to_string()),
        "{line}"
    );
    let out = history_cli("cancelled");
    assert!(
        !out.stdout.contains(&job),
        "a succeeded job listed as cancelled: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_leave_memory_and_etcd_after_the_retention() {
    let cluster = Cluster::builder()
        .etcd(1)
        .coordinator_env("FERRY_JOB_RETENTION", "30s")
        .workers(1)
        .start()
        .await;
    cluster.dbs().prepare_items_keyless_target(20_000).await;
    let endpoint = cluster.etcd().endpoint(0);
    let submit = Submit::items().flag("--request-id", "nightly-1");
    let job = cluster.submit(&submit);
    assert_eq!(
        cluster.wait_for_state(&job, &[JobState::Succeeded], JOB_TIMEOUT),
        Ok(JobState::Succeeded)
    );
    // within the retention the request id still names the same job
    assert_eq!(cluster.submit(&submit), job);
    assert_eq!(
        job_keys(&endpoint, &job),
        3,
        "job record, plan page and chunk state"
    );
    assert_eq!(etcd_count(&endpoint, "/ferry/requests/nightly-1"), 1);

    cluster
        .coordinator(0)
        .expect_log("finished job retired", Duration::from_secs(120));
    assert_eq!(job_keys(&endpoint, &job), 0);
    assert_eq!(etcd_count(&endpoint, "/ferry/requests/nightly-1"), 0);
    let status = cluster
        .try_status(&job)
        .unwrap_or_else(|e| panic!("status of a retired job: {e}"));
    assert_eq!(status.state, JobState::Succeeded, "{status:?}");
    assert_eq!(status.rows_written, 20_000, "{status:?}");
    let out = cluster.jobs();
    assert!(
        !out.stdout.contains(&job),
        "a retired job is still listed: {out}"
    );
    let out = cluster.watch(&job);
    assert!(out.success(), "watch of a retired job: {out}");
}

/// The etcd keys stored for `job` (store format 3: its record, plan pages
/// and chunk states), plus any under format 2's `jobs/<job>`.
fn job_keys(endpoint: &str, job: &str) -> u64 {
    [
        format!("/ferry/v3/jobs/{job}"),
        format!("/ferry/v3/plans/{job}/"),
        format!("/ferry/v3/chunks/{job}/"),
        format!("/ferry/jobs/{job}"),
    ]
    .iter()
    .map(|prefix| etcd_count(endpoint, prefix))
    .sum()
}

//! Issue 10, job history: exactly one `ferry.job_history` row per job
//! across a leader killed mid-job (real etcd, two coordinators) and across
//! `resume` (which counts runs); `ferry history` lists it; past the
//! retention a finished job leaves memory and etcd (request id included)
//! and `ferry status` answers from the history.

use std::time::Duration;

use ferry_tests::data::slow_down_inserts;
use ferry_tests::etcd::EtcdCluster;
use ferry_tests::ferry::{run_cli, start_coordinator, start_coordinator_on, start_worker};
use ferry_tests::issue5::query_i64;
use ferry_tests::job::{job_id, job_verb, submit_args, wait_for_state, CLI_TIMEOUT};
use ferry_tests::net::free_ports;
use ferry_tests::observability::etcd_count;
use ferry_tests::scenario::{Databases, ITEMS_QUERY, ITEMS_TABLE};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_has_one_row_for_a_job_whose_leader_was_killed() {
    let dbs = Databases::one_cluster().await;
    dbs.prepare_items(ROWS).await;
    slow_down_inserts(&dbs.target().await, ITEMS_TABLE, 400).await;
    let env = dbs.conn_env();
    let etcd = EtcdCluster::start(1);
    let endpoints = etcd.endpoints().join(",");
    let args = ["--etcd", endpoints.as_str()];
    let ports = free_ports(2);
    let (c0, _) = start_coordinator_on(ports[0], &args, &env);
    assert!(
        c0.wait_for_log("became the leader coordinator", LINE_TIMEOUT),
        "{}",
        c0.log_tail(20)
    );
    let (c1, _) = start_coordinator_on(ports[1], &args, &env);
    assert!(
        c1.wait_for_log("following the leader coordinator", LINE_TIMEOUT),
        "{}",
        c1.log_tail(20)
    );
    let urls = format!(
        "http://127.0.0.1:{},http://127.0.0.1:{}",
        ports[0], ports[1]
    );
    let _w1 = start_worker(&urls, 2, &env);
    let _w2 = start_worker(&urls, 2, &env);

    let out = run_cli(
        &submit_args(&urls, ITEMS_QUERY, ITEMS_TABLE, &["--chunk-size", "10000"]),
        &env,
        CLI_TIMEOUT,
    );
    let job = job_id(&out);
    assert!(
        c0.wait_for_log("Chunk ", LINE_TIMEOUT),
        "no chunk landed before the kill:\n{}",
        c0.log_tail(20)
    );
    c0.kill();
    assert!(
        c1.wait_for_log("became the leader coordinator", LINE_TIMEOUT),
        "the standby did not take over:\n{}",
        c1.log_tail(20)
    );
    let state = wait_for_state(
        &urls,
        &job,
        &["SUCCEEDED", "FAILED", "CANCELLED"],
        JOB_TIMEOUT,
    );
    assert_eq!(state, "SUCCEEDED", "{}", c1.log_tail(30));
    dbs.assert_copied_exactly(ITEMS_TABLE).await;

    let target = dbs.target().await;
    let mut seen = history(&target, &job).await;
    for _ in 0..50 {
        if seen.1 == "SUCCEEDED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        seen = history(&target, &job).await;
    }
    assert_eq!(
        seen,
        (1, "SUCCEEDED".to_string(), 1, ROWS as i64),
        "history of {job}"
    );
    let total = query_i64(&target, "SELECT count(*) FROM ferry.job_history").await;
    assert_eq!(total, 1, "one job, one history row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_updates_the_row_and_counts_runs() {
    let dbs = Databases::one_cluster().await;
    dbs.prepare_items(ROWS).await;
    slow_down_inserts(&dbs.target().await, ITEMS_TABLE, 300).await;
    let env = dbs.conn_env();
    let (coordinator, url) = start_coordinator(&[], &env);
    let _w = start_worker(&url, 2, &env);
    let out = run_cli(
        &submit_args(&url, ITEMS_QUERY, ITEMS_TABLE, &["--chunk-size", "10000"]),
        &env,
        CLI_TIMEOUT,
    );
    let job = job_id(&out);
    assert!(
        coordinator.wait_for_log("Chunk ", LINE_TIMEOUT),
        "{}",
        coordinator.log_tail(20)
    );
    let out = job_verb("cancel", &url, &job, CLI_TIMEOUT);
    assert!(out.success(), "{out}");
    assert_eq!(
        wait_for_state(&url, &job, &["CANCELLED"], JOB_TIMEOUT),
        "CANCELLED"
    );
    let out = run_cli::<_, &str, &str>(
        &["history", "--coordinator", &url, "--state", "cancelled"],
        &[],
        CLI_TIMEOUT,
    );
    assert!(out.success() && out.stdout.contains(&job), "{out}");

    let out = job_verb("resume", &url, &job, JOB_TIMEOUT);
    assert!(out.success(), "{out}");
    dbs.assert_copied_exactly(ITEMS_TABLE).await;
    let target = dbs.target().await;
    let mut seen = history(&target, &job).await;
    for _ in 0..50 {
        if seen.1 == "SUCCEEDED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        seen = history(&target, &job).await;
    }
    assert_eq!(
        seen,
        (1, "SUCCEEDED".to_string(), 2, ROWS as i64),
        "history of {job}"
    );

    let out = run_cli::<_, &str, &str>(
        &["history", "--coordinator", &url, "--state", "succeeded"],
        &[],
        CLI_TIMEOUT,
    );
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
    let out = run_cli::<_, &str, &str>(
        &["history", "--coordinator", &url, "--state", "cancelled"],
        &[],
        CLI_TIMEOUT,
    );
    assert!(
        !out.stdout.contains(&job),
        "a succeeded job listed as cancelled: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_leave_memory_and_etcd_after_the_retention() {
    let dbs = Databases::one_cluster().await;
    dbs.prepare_items_keyless_target(20_000).await;
    let mut env = dbs.conn_env();
    env.push(("FERRY_JOB_RETENTION".to_string(), "30s".to_string()));
    let etcd = EtcdCluster::start(1);
    let endpoint = etcd.endpoints()[0].clone();
    let (coordinator, url) = start_coordinator(&["--etcd", &endpoint], &env);
    assert!(coordinator.wait_for_log("became the leader coordinator", LINE_TIMEOUT));
    let _w = start_worker(&url, 2, &env);
    let submit = submit_args(
        &url,
        ITEMS_QUERY,
        ITEMS_TABLE,
        &["--request-id", "nightly-1"],
    );
    let job = job_id(&run_cli(&submit, &env, CLI_TIMEOUT));
    assert_eq!(
        wait_for_state(&url, &job, &["SUCCEEDED"], JOB_TIMEOUT),
        "SUCCEEDED"
    );
    // within the retention the request id still names the same job
    assert_eq!(job_id(&run_cli(&submit, &env, CLI_TIMEOUT)), job);
    assert_eq!(
        etcd_count(&endpoint, &format!("/ferry/jobs/{job}")),
        2,
        "job and its chunk"
    );
    assert_eq!(etcd_count(&endpoint, "/ferry/requests/nightly-1"), 1);

    assert!(
        coordinator.wait_for_log("finished job retired", Duration::from_secs(120)),
        "the job was not retired:\n{}",
        coordinator.log_tail(20)
    );
    assert_eq!(etcd_count(&endpoint, &format!("/ferry/jobs/{job}")), 0);
    assert_eq!(etcd_count(&endpoint, "/ferry/requests/nightly-1"), 0);
    let out = job_verb("status", &url, &job, CLI_TIMEOUT);
    assert!(out.success(), "status of a retired job: {out}");
    assert!(out.stdout.starts_with("SUCCEEDED"), "{out}");
    assert!(out.stdout.contains("20000 rows written"), "{out}");
    let out = run_cli::<_, &str, &str>(&["jobs", "--coordinator", &url], &[], CLI_TIMEOUT);
    assert!(
        !out.stdout.contains(&job),
        "a retired job is still listed: {out}"
    );
    let out = job_verb("watch", &url, &job, CLI_TIMEOUT);
    assert!(out.success(), "watch of a retired job: {out}");
}

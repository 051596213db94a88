//! Issue 16, a cluster that runs for months: twenty jobs at once over real
//! processes (etcd, a coordinator, four workers) each land exactly, then
//! leave the coordinator's memory and etcd past the job retention and stay
//! readable from the history; `ferry gc` removes the ledger rows of jobs
//! gone past a retention and keeps those of a job the coordinator holds,
//! and a new leader does the same on its own schedule; `ferry gc` collects
//! MariaDB and SQLite targets' ledgers too, and names each.

use std::time::{Duration, Instant};

use ferry_tests::cli::{Submit, CLI_TIMEOUT};
use ferry_tests::cli_output::JobState;
use ferry_tests::cluster::Cluster;
use ferry_tests::data::{create_items_table, table_checksum};
use ferry_tests::databases::ITEMS_QUERY;
use ferry_tests::mariadb::MariaDb;
use ferry_tests::observability::etcd_count;
use ferry_tests::sql::{exec, query_i64};
use ferry_tests::sqlite_file::SqliteFile;
use tokio_postgres::Client;

const JOBS: usize = 20;
const ROWS: u64 = 20_000;
const JOB_TIMEOUT: Duration = Duration::from_secs(300);
/// Fail-safe for retention (30 s) plus its sweep, on a busy machine.
const RETIRE_TIMEOUT: Duration = Duration::from_secs(180);
const RETIRED: &str = "finished job retired";

/// Submits every job at once (one thread each); returns their ids.
fn submit_all(cluster: &Cluster, jobs: &[Submit]) -> Vec<String> {
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|job| s.spawn(move || cluster.submit(job)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("submit thread"))
            .collect()
    })
}

/// Waits until the coordinator's current life has retired `n` jobs; panics
/// with its log's tail after the fail-safe.
fn wait_retired(cluster: &Cluster, n: usize) {
    let deadline = Instant::now() + RETIRE_TIMEOUT;
    loop {
        let seen = cluster.coordinator(0).log().matches(RETIRED).count();
        if seen >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{seen} of {n} jobs retired; coordinator:\n{}",
            cluster.coordinator(0).log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

async fn ledger_rows(target: &Client, job: &str) -> i64 {
    query_i64(
        target,
        &format!("SELECT count(*) FROM ferry.ledger WHERE job_id = '{job}'"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_jobs_at_once_are_exact_then_leave_memory_and_etcd() {
    let cluster = Cluster::builder()
        .etcd(1)
        .coordinator_env("FERRY_JOB_RETENTION", "30s")
        .workers(4)
        .start()
        .await;
    cluster.dbs().prepare_items(ROWS).await;
    let source = cluster.dbs().source().await;
    let target = cluster.dbs().target().await;
    let want = table_checksum(&source, "public.items").await;
    let jobs: Vec<Submit> = (0..JOBS)
        .map(|i| {
            Submit::new(ITEMS_QUERY, format!("public.t{i}"))
                .chunk_size(2_000)
                .flag("--min-rows-for-parallel", 1)
                .flag("--request-id", format!("many-{i}"))
        })
        .collect();
    for i in 0..JOBS {
        create_items_table(&target, &format!("public.t{i}")).await;
    }
    let ids = submit_all(&cluster, &jobs);
    let mut chunks = Vec::new();
    for (i, job) in ids.iter().enumerate() {
        assert_eq!(
            cluster.wait_terminal(job, JOB_TIMEOUT),
            Ok(JobState::Succeeded),
            "job {i} ({job}): {:?}",
            cluster.try_status(job)
        );
        assert_eq!(
            table_checksum(&target, &format!("public.t{i}")).await,
            want,
            "t{i} is not an exact copy"
        );
        let status = cluster.status(job);
        assert_eq!(status.rows_written, ROWS, "{status:?}");
        assert_eq!(
            ledger_rows(&target, job).await,
            status.chunks_total as i64,
            "job {i}: one ledger row per chunk"
        );
        chunks.push(status.chunks_total);
    }
    let endpoint = cluster.etcd().endpoint(0);
    assert!(etcd_count(&endpoint, "/ferry/v3/") > 0);
    assert_eq!(etcd_count(&endpoint, "/ferry/requests/"), JOBS as u64);

    wait_retired(&cluster, JOBS);
    assert_eq!(
        etcd_count(&endpoint, "/ferry/v3/"),
        0,
        "jobs, plans and chunk states of retired jobs stay in etcd"
    );
    assert_eq!(etcd_count(&endpoint, "/ferry/requests/"), 0);
    assert_eq!(etcd_count(&endpoint, "/ferry/assign/"), 0);
    let listed = cluster.jobs();
    for job in &ids {
        assert!(
            !listed.stdout.contains(job.as_str()),
            "{job} still listed: {listed}"
        );
    }
    for (i, job) in ids.iter().enumerate() {
        let status = cluster
            .try_status(job)
            .unwrap_or_else(|e| panic!("status of retired job {i}: {e}"));
        assert_eq!(status.state, JobState::Succeeded, "{status:?}");
        assert_eq!(status.rows_written, ROWS, "{status:?}");
        assert_eq!(status.chunks_total, chunks[i], "{status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_ledger_rows_of_jobs_gone_and_keeps_jobs_held() {
    let mut cluster = Cluster::builder()
        .etcd(1)
        .coordinator_env("FERRY_JOB_RETENTION", "30s")
        .coordinator_env("FERRY_LEDGER_RETENTION", "30d")
        .workers(1)
        .start()
        .await;
    cluster.dbs().prepare_items(ROWS).await;
    let source = cluster.dbs().source().await;
    let target = cluster.dbs().target().await;
    create_items_table(&target, "public.held").await;
    let gone = cluster.submit(
        &Submit::items()
            .chunk_size(2_000)
            .flag("--min-rows-for-parallel", 1),
    );
    assert_eq!(
        cluster.wait_terminal(&gone, JOB_TIMEOUT),
        Ok(JobState::Succeeded)
    );
    let gone_rows = ledger_rows(&target, &gone).await;
    assert!(gone_rows > 1, "{gone_rows} ledger rows");
    wait_retired(&cluster, 1);

    // a job the coordinator holds: planned, and no worker to run it
    cluster.worker(0).terminate();
    assert!(
        cluster
            .worker(0)
            .wait_exit(Duration::from_secs(60))
            .is_some(),
        "the worker did not stop"
    );
    let held = cluster.submit(
        &Submit::new(ITEMS_QUERY, "public.held")
            .chunk_size(2_000)
            .flag("--min-rows-for-parallel", 1),
    );
    assert_eq!(
        cluster.wait_for_state(&held, &[JobState::Running], JOB_TIMEOUT),
        Ok(JobState::Running)
    );
    // the ledger as it would stand a month and more later
    exec(
        &target,
        &format!(
            "UPDATE ferry.ledger SET committed_at = now() - interval '40 days' WHERE job_id = '{gone}';
             INSERT INTO ferry.ledger (job_id, chunk_no, attempt, fencing_token, worker, committed_at) VALUES
               ('{held}', 1000000, 1, 1, 'w', now() - interval '40 days'),
               ('old-job', 1, 1, 1, 'w', now() - interval '40 days'),
               ('old-job', 2, 1, 1, 'w', now() - interval '35 days'),
               ('mixed-job', 1, 1, 1, 'w', now() - interval '40 days'),
               ('mixed-job', 2, 1, 1, 'w', now() - interval '1 day'),
               ('recent-job', 1, 1, 1, 'w', now())"
        ),
    )
    .await;

    let refused = cluster.cli(
        &["gc", "--coordinator", cluster.urls(), "--older-than", "0"],
        CLI_TIMEOUT,
    );
    assert_eq!(refused.status.code(), Some(2), "{refused}");
    assert!(refused.stderr.contains("--older-than"), "{refused}");

    let out = cluster.cli(
        &["gc", "--coordinator", cluster.urls(), "--older-than", "30d"],
        CLI_TIMEOUT,
    );
    assert!(out.success(), "{out}");
    assert!(
        out.stdout.contains(&format!(
            "dst: removed {} ledger rows of 2 jobs",
            gone_rows + 2
        )),
        "{out}"
    );
    assert!(
        !out.stdout.contains("src:"),
        "the source has no ledger: {out}"
    );
    assert_eq!(
        ledger_rows(&target, &gone).await,
        0,
        "the retired job's rows"
    );
    assert_eq!(ledger_rows(&target, "old-job").await, 0);
    assert_eq!(
        ledger_rows(&target, "mixed-job").await,
        2,
        "a recent row keeps its job"
    );
    assert_eq!(ledger_rows(&target, "recent-job").await, 1);
    assert_eq!(
        ledger_rows(&target, &held).await,
        1,
        "the held job's row stays"
    );

    // the held job still runs exactly once its worker is back
    cluster.worker_mut(0).restart();
    assert_eq!(
        cluster.wait_terminal(&held, JOB_TIMEOUT),
        Ok(JobState::Succeeded),
        "{:?}",
        cluster.try_status(&held)
    );
    assert_eq!(
        table_checksum(&target, "public.held").await,
        table_checksum(&source, "public.items").await
    );
    let held_rows = ledger_rows(&target, &held).await;

    // a new leader sweeps on its own, past FERRY_LEDGER_RETENTION
    exec(
        &target,
        "UPDATE ferry.ledger SET committed_at = now() - interval '40 days' WHERE job_id = 'recent-job'",
    )
    .await;
    cluster.coordinator_mut(0).restart();
    cluster
        .coordinator(0)
        .expect_log("ledger rows removed", RETIRE_TIMEOUT);
    assert_eq!(ledger_rows(&target, "recent-job").await, 0);
    assert_eq!(ledger_rows(&target, "mixed-job").await, 2);
    assert_eq!(ledger_rows(&target, &held).await, held_rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_ledger_rows_in_mariadb_and_sqlite_targets() {
    const SMALL: u64 = 6_000;
    let my = MariaDb::start();
    my.create_db("dst").await;
    my.create_items("dst", "items").await;
    let lite = SqliteFile::create("").await;
    lite.create_items("items").await;
    let cluster = Cluster::builder()
        .etcd(1)
        .coordinator_env("FERRY_JOB_RETENTION", "30s")
        .coordinator_env("FERRY_LEDGER_RETENTION", "30d")
        .workers(1)
        .connection("my", my.url("dst"))
        .connection("lite", lite.url())
        .start()
        .await;
    cluster.dbs().prepare_items(SMALL).await;
    let items = |target: &str| {
        Submit::new("SELECT * FROM items", "items")
            .target(target)
            .chunk_size(2_000)
            .flag("--min-rows-for-parallel", 0)
    };
    let to_my = cluster.submit(&items("my"));
    let to_lite = cluster.submit(&items("lite"));
    let mut chunks = Vec::new();
    for job in [&to_my, &to_lite] {
        assert_eq!(
            cluster.wait_terminal(job, JOB_TIMEOUT),
            Ok(JobState::Succeeded),
            "{:?}",
            cluster.try_status(job)
        );
        let status = cluster.status(job);
        assert!(status.chunks_total > 1, "{status:?}");
        chunks.push(status.chunks_total as i64);
    }
    let my_ledger = |table: &str, job: &str| {
        format!("SELECT count(*) FROM ferry.{table} WHERE job_id = '{job}'")
    };
    let lite_ledger =
        |job: &str| format!("SELECT count(*) FROM ferry_ledger WHERE job_id = '{job}'");
    assert_eq!(
        my.query_i64("", &my_ledger("ledger", &to_my)).await,
        chunks[0]
    );
    assert!(my.query_i64("", &my_ledger("attempts", &to_my)).await >= chunks[0]);
    assert_eq!(lite.query_i64(&lite_ledger(&to_lite)).await, chunks[1]);
    wait_retired(&cluster, 2);

    // the ledgers as they would stand a month and more later
    my.exec(
        "",
        &format!(
            "UPDATE ferry.ledger SET committed_at = NOW(6) - INTERVAL 40 DAY WHERE job_id = '{to_my}';
             INSERT INTO ferry.ledger (job_id, chunk_no, attempt, fencing_token, worker, committed_at) VALUES
               ('mixed-job', 1, 1, 1, 'w', NOW(6) - INTERVAL 40 DAY),
               ('mixed-job', 2, 1, 1, 'w', NOW(6) - INTERVAL 1 DAY)"
        ),
    )
    .await;
    let ago = |days: u32| format!("strftime('%Y-%m-%d %H:%M:%f', 'now', '-{days} days')");
    lite.exec(&format!(
        "UPDATE ferry_ledger SET committed_at = {old} WHERE job_id = '{to_lite}';
         INSERT INTO ferry_ledger (job_id, chunk_no, attempt, fencing_token, worker, committed_at) VALUES
           ('old-job', 1, 1, 1, 'w', {old}),
           ('mixed-job', 1, 1, 1, 'w', {old}),
           ('mixed-job', 2, 1, 1, 'w', {recent})",
        old = ago(40),
        recent = ago(1),
    ))
    .await;

    let out = cluster.cli(
        &["gc", "--coordinator", cluster.urls(), "--older-than", "30d"],
        CLI_TIMEOUT,
    );
    assert!(out.success(), "{out}");
    assert!(!out.stderr.contains("warning"), "{out}");
    assert!(
        out.stdout
            .contains(&format!("my: removed {} ledger rows of 1 jobs", chunks[0])),
        "{out}"
    );
    assert!(
        out.stdout.contains(&format!(
            "lite: removed {} ledger rows of 2 jobs",
            chunks[1] + 1
        )),
        "{out}"
    );
    assert_eq!(my.query_i64("", &my_ledger("ledger", &to_my)).await, 0);
    assert_eq!(
        my.query_i64("", &my_ledger("attempts", &to_my)).await,
        0,
        "the collected job's attempts"
    );
    assert_eq!(my.query_i64("", &my_ledger("ledger", "mixed-job")).await, 2);
    assert_eq!(lite.query_i64(&lite_ledger(&to_lite)).await, 0);
    assert_eq!(lite.query_i64(&lite_ledger("old-job")).await, 0);
    assert_eq!(lite.query_i64(&lite_ledger("mixed-job")).await, 2);
}

//! Every way a chunk or a plan can end, decided by typed errors: a
//! transient failure while planning is retried (never taken for "table does
//! not exist"); rows are isolated with the server speaking French (no
//! decision reads message text); a chunk attempt that panics is rolled back,
//! reported and retried; a stalled older attempt is ended without touching
//! any session that is not an older attempt of the same chunk.

use std::time::Duration;

use ferry_tests::cli::Submit;
use ferry_tests::cli_output::JobState;
use ferry_tests::cluster::{Cluster, WorkerOptions};
use ferry_tests::data::{create_items_table, fill_items, row_count};
use ferry_tests::databases::{ITEMS_QUERY, ITEMS_TABLE};
use ferry_tests::ledger::{ledger_summary, rejects_count};
use ferry_tests::log_lines::WILL_RETRY;
use ferry_tests::sql::{exec, query_i64};
use tokio_postgres::{Client, NoTls};

const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// A client of the target database, for sessions of the test's own.
async fn session(cluster: &Cluster) -> Client {
    let (client, conn) = tokio_postgres::connect(&cluster.dbs().target_url(), NoTls)
        .await
        .expect("connect to the target");
    tokio::spawn(conn);
    client
}

async fn assert_exact_job(cluster: &Cluster, job: &str, rows: i64) {
    assert_eq!(
        cluster.wait_terminal(job, JOB_TIMEOUT),
        Ok(JobState::Succeeded),
        "job {job}; coordinator:\n{}",
        cluster.coordinator(0).log_tail(40)
    );
    cluster.dbs().assert_copied_exactly(ITEMS_TABLE).await;
    let ledger = ledger_summary(&cluster.dbs().target().await, job).await;
    assert_eq!(ledger.rows, ledger.distinct_chunks, "{ledger:?}");
    assert_eq!(ledger.rows_written, rows, "{ledger:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_while_planning_is_retried() {
    let cluster = Cluster::builder().workers(2).start().await;
    cluster.dbs().prepare_items(200_000).await;
    // end the planner's sessions twice (57P01, as a server restart or an
    // administrator would): planning must be retried, not failed
    let killer = session(&cluster).await;
    let kills = tokio::spawn(async move {
        let mut killed = 0;
        for _ in 0..3000 {
            let n: i64 = killer
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                      WHERE application_name LIKE 'ferry:plan:%' AND pid <> pg_backend_pid()",
                    &[],
                )
                .await
                .expect("terminate planner sessions")
                .get(0);
            killed += n;
            if killed >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        killed
    });
    let job = cluster.submit(&Submit::items().chunk_size(50_000));
    let killed = kills.await.expect("killer task");
    assert!(
        killed >= 2,
        "the planner's sessions were never seen ({killed} ended)"
    );
    assert_exact_job(&cluster, &job, 200_000).await;
    let log = cluster.coordinator(0).log();
    assert!(
        log.contains("Planning failed with exception") && log.contains(WILL_RETRY),
        "the coordinator should say planning will be retried:\n{}",
        cluster.coordinator(0).log_tail(30)
    );
    assert!(
        !log.contains("does not exist"),
        "a dropped session was taken for a missing table"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_are_isolated_when_the_server_speaks_french() {
    let cluster = Cluster::builder().workers(2).start().await;
    let dbs = cluster.dbs();
    let source = dbs.source().await;
    create_items_table(&source, ITEMS_TABLE).await;
    fill_items(&source, ITEMS_TABLE, 300_000).await;
    exec(&source, "UPDATE items SET amount = -1 WHERE id % 10007 = 3").await;
    let bad = query_i64(&source, "SELECT count(*) FROM items WHERE amount < 0").await;
    let target = dbs.target().await;
    exec(
        &target,
        "ALTER DATABASE dst SET lc_messages = 'fr_FR.UTF-8';
         CREATE TABLE items (id bigint primary key, customer_id int not null,
           amount numeric(12,2) not null check (amount >= 0), status text not null,
           note text, created_at timestamptz not null)",
    )
    .await;
    let out = cluster.submit_watch(&Submit::items().chunk_size(50_000));
    assert!(out.success(), "the job with refused rows failed: {out}");
    let job = out.job_id();
    let target = dbs.target().await;
    assert_eq!(row_count(&target, "items").await, 300_000 - bad);
    assert_eq!(rejects_count(&target, &job).await, bad);
    let message: String = target
        .query_one(
            "SELECT min(message) FROM ferry.rejects WHERE job_id = $1",
            &[&job],
        )
        .await
        .expect("a reject's message")
        .get(0);
    assert!(
        message.contains("viole la contrainte"),
        "the server did not speak French, so the test proved nothing: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_attempt_that_panics_is_retried() {
    let cluster = Cluster::builder()
        .worker(WorkerOptions::new().env("FERRY_FAULT", "panic_mid_copy:2"))
        .workers(1)
        .start()
        .await;
    cluster.dbs().prepare_items(300_000).await;
    // a fixed level, so the faulty worker gets its second chunk (adaptive
    // concurrency starts at 2 in flight, which the other worker may take)
    let job = cluster.submit(
        &Submit::items()
            .chunk_size(50_000)
            .args(&["--fixed-workers"]),
    );
    assert_exact_job(&cluster, &job, 300_000).await;
    let worker = cluster.worker(0).log();
    assert!(
        worker.contains("chunk attempt panicked"),
        "the panic was not logged by the worker:\n{}",
        cluster.worker(0).log_tail(20)
    );
    let retry = cluster
        .coordinator(0)
        .log()
        .lines()
        .any(|l| l.contains("worker panicked") && l.contains(WILL_RETRY));
    assert!(
        retry,
        "the coordinator should retry the panicked chunk:\n{}",
        cluster.coordinator(0).log_tail(30)
    );
    assert_eq!(cluster.status(&job).retries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_zombie_touches_no_other_session() {
    let mut cluster = Cluster::builder()
        .lease_ttl(Duration::from_secs(3))
        .workers(2)
        .start()
        .await;
    cluster.dbs().prepare_items(600_000).await;
    // at a fixed level: worker 0 must hold chunk transactions when it is
    // frozen (adaptive concurrency starts at 2 in flight, and both may go to
    // the other worker, leaving worker 0 nothing to be a zombie with)
    let job = cluster.submit(
        &Submit::new(ITEMS_QUERY, ITEMS_TABLE)
            .chunk_size(50_000)
            .args(&["--fixed-workers"]),
    );
    // sessions that are not older attempts of a chunk of this job, each inside
    // a transaction: one whose name ends in no number, one of another job
    let mut decoys = Vec::new();
    for name in (1..=12)
        .map(|n| format!("ferry:{job}:{n}:not-a-number"))
        .chain(["ferry:jotherjob000:1:1".to_string()])
    {
        let s = session(&cluster).await;
        s.batch_execute(&format!("SET application_name = '{name}'; BEGIN; SELECT 1"))
            .await
            .expect("open a decoy transaction");
        decoys.push(s);
    }
    let too_late = cluster.wait_first_chunk(JOB_TIMEOUT);
    cluster.worker(0).freeze();
    cluster.add_worker();
    let state = cluster.wait_terminal(&job, JOB_TIMEOUT);
    cluster.worker(0).thaw();
    assert_eq!(
        state,
        Ok(JobState::Succeeded),
        "job {job}; coordinator:\n{}",
        cluster.coordinator(0).log_tail(40)
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_exact_job(&cluster, &job, 600_000).await;
    for (i, d) in decoys.iter().enumerate() {
        let alive = d.query_one("SELECT 1", &[]).await.is_ok();
        assert!(alive, "decoy session {i} was terminated");
    }
    let workers: String = cluster.workers().iter().map(|w| w.log()).collect();
    assert!(
        workers.contains("terminated older attempts"),
        "no attempt had to end a zombie: the test exercised nothing"
    );
    assert!(!too_late, "the job finished before the worker was frozen");
}

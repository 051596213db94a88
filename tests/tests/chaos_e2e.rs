//! End-to-end under failure: killed workers, a worker that dies between
//! commit and report, a restarted target database, a cancelled job. The
//! target must still hold every source row exactly once (or, when
//! cancelled, exactly what the ledger says landed).

use std::time::Duration;

use ferry_tests::data::row_count;
use ferry_tests::ferry::{run_cli, start_coordinator, start_worker, FerryProcess};
use ferry_tests::job::{
    is_chunk_completed_line, job_id, job_verb, ledger_summary, parse_start_line, submit_args,
    wait_for_state, CLI_TIMEOUT, TERMINAL_STATES,
};
use ferry_tests::scenario::{Databases, ITEMS_QUERY, ITEMS_TABLE};

const ROWS: u64 = 1_000_000;
/// Short worker leases so a dead worker's chunks come back within seconds.
const LEASE_TTL: &[&str] = &["--lease-ttl-ms", "3000"];
/// Fail-safe for a job to finish after a fault.
const JOB_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the first chunk may take to complete.
const FIRST_CHUNK_TIMEOUT: Duration = Duration::from_secs(60);

/// Submits the items job without `--watch` and returns its id.
fn submit(url: &str, env: &[(String, String)], chunk_size: u64) -> String {
    let chunk_size = chunk_size.to_string();
    let args = submit_args(
        url,
        ITEMS_QUERY,
        ITEMS_TABLE,
        &["--chunk-size", &chunk_size],
    );
    job_id(&run_cli(&args, env, CLI_TIMEOUT))
}

/// Waits for the coordinator's first `Chunk N completed` line; returns true
/// if the job had already finished by then (the fault would come too late).
fn wait_first_chunk(coordinator: &FerryProcess) -> bool {
    coordinator
        .wait_for_line(is_chunk_completed_line, FIRST_CHUNK_TIMEOUT)
        .unwrap_or_else(|| {
            panic!(
                "no `Chunk N completed` line within {FIRST_CHUNK_TIMEOUT:?}; coordinator log:\n{}",
                coordinator.log_tail(40)
            )
        });
    coordinator.log().contains("Parallel processing complete")
}

/// Asserts the job succeeded and the target equals the source, with one
/// ledger row per planned chunk and the right row total.
async fn assert_exact(dbs: &Databases, coordinator: &FerryProcess, url: &str, job: &str) {
    let state = wait_for_state(url, job, &TERMINAL_STATES, JOB_TIMEOUT);
    assert_eq!(
        state,
        "SUCCEEDED",
        "job {job} did not succeed; coordinator log:\n{}",
        coordinator.log_tail(40)
    );
    dbs.assert_copied_exactly(ITEMS_TABLE).await;
    let (_, chunks) =
        parse_start_line(&coordinator.log()).expect("start line names the chunk count");
    let ledger = ledger_summary(&dbs.target().await, job).await;
    assert_eq!(
        ledger.rows, chunks as i64,
        "one ledger row per chunk: {ledger:?}"
    );
    assert_eq!(ledger.distinct_chunks, chunks as i64, "{ledger:?}");
    assert_eq!(ledger.rows_written, ROWS as i64, "{ledger:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_job_is_replaced_and_job_is_exact() {
    let dbs = Databases::one_cluster().await;
    dbs.prepare_items(ROWS).await;
    let env = dbs.conn_env();
    let (coordinator, url) = start_coordinator(LEASE_TTL, &env);
    let victim = start_worker(&url, 2, &env);
    let _survivor = start_worker(&url, 2, &env);

    let job = submit(&url, &env, 50_000);
    let too_late = wait_first_chunk(&coordinator);
    victim.kill();
    let _replacement = start_worker(&url, 2, &env);

    assert_exact(&dbs, &coordinator, &url, &job).await;
    assert!(
        !too_late,
        "the job finished before the worker was killed: the test exercised nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_dying_between_commit_and_report_does_not_duplicate() {
    let dbs = Databases::one_cluster().await;
    dbs.prepare_items(ROWS).await;
    let env = dbs.conn_env();
    let (coordinator, url) = start_coordinator(LEASE_TTL, &env);
    let mut faulty_env = env.clone();
    faulty_env.push(("FERRY_FAULT".into(), "die_after_commit:3".into()));
    let faulty = start_worker(&url, 1, &faulty_env);
    let _normal = start_worker(&url, 1, &env);

    let job = submit(&url, &env, 50_000);
    assert_exact(&dbs, &coordinator, &url, &job).await;
    assert!(
        faulty.try_exit().is_some(),
        "the worker with FERRY_FAULT=die_after_commit:3 should have exited; its log:\n{}",
        faulty.log_tail(30)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_restart_mid_job_is_retried_and_job_is_exact() {
    let dbs = Databases::two_clusters().await;
    dbs.prepare_items(ROWS).await;
    let env = dbs.conn_env();
    let (coordinator, url) = start_coordinator(LEASE_TTL, &env);
    let _w1 = start_worker(&url, 2, &env);
    let _w2 = start_worker(&url, 2, &env);

    let job = submit(&url, &env, 50_000);
    let too_late = wait_first_chunk(&coordinator);
    dbs.target_cluster().restart();

    assert_exact(&dbs, &coordinator, &url, &job).await;
    assert!(
        !too_late,
        "the job finished before the target restarted: the test exercised nothing"
    );
    assert!(
        coordinator.log().contains("will retry ("),
        "chunks hit by the target restart should be retried (`will retry (`); coordinator log:\n{}",
        coordinator.log_tail(40)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_job_stops_cleanly_and_ledger_matches_target() {
    let dbs = Databases::one_cluster().await;
    dbs.prepare_items(ROWS).await;
    let env = dbs.conn_env();
    let (coordinator, url) = start_coordinator(&[], &env);
    let _worker = start_worker(&url, 1, &env);

    let job = submit(&url, &env, 20_000);
    let too_late = wait_first_chunk(&coordinator);
    let cancel = job_verb("cancel", &url, &job, CLI_TIMEOUT);
    assert!(cancel.success(), "ferry cancel failed: {cancel}");
    let state = wait_for_state(&url, &job, &["CANCELLED"], Duration::from_secs(30));
    assert_eq!(
        state,
        "CANCELLED",
        "job {job} not cancelled within 30 s; coordinator log:\n{}",
        coordinator.log_tail(40)
    );
    assert!(!too_late, "the job finished before it was cancelled");

    let target = dbs.target().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let landed = row_count(&target, ITEMS_TABLE).await;
    let ledger = ledger_summary(&target, &job).await;
    assert_eq!(
        landed, ledger.rows_written,
        "target rows must equal what the ledger says landed ({ledger:?})"
    );
    assert!(landed < ROWS as i64, "a cancelled job copied everything");

    // No ferry session on the target may still hold a transaction.
    let open_sql = "SELECT count(*) FROM pg_stat_activity \
                    WHERE datname = 'dst' AND application_name LIKE 'ferry:%' \
                    AND xact_start IS NOT NULL";
    let mut open: i64 = -1;
    for _ in 0..20 {
        open = target
            .query_one(open_sql, &[])
            .await
            .expect("query pg_stat_activity")
            .get(0);
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        open, 0,
        "ferry sessions still in a transaction on the target 10 s after cancel"
    );
    assert_eq!(
        row_count(&target, ITEMS_TABLE).await,
        landed,
        "rows kept landing after the job was cancelled"
    );
}

/// ARCHITECTURE.md: "Cancelling stops workers at the next buffer and rolls
/// their open chunk back." With 250,000-row chunks (~0.4 s each here) and one
/// worker, the chunk in flight when the cancel lands must not commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_rolls_back_the_chunk_in_flight() {
    let dbs = Databases::one_cluster().await;
    dbs.prepare_items(ROWS).await;
    let env = dbs.conn_env();
    let (coordinator, url) = start_coordinator(&[], &env);
    let _worker = start_worker(&url, 1, &env);

    let job = submit(&url, &env, 250_000);
    let too_late = wait_first_chunk(&coordinator);
    let cancel = job_verb("cancel", &url, &job, CLI_TIMEOUT);
    assert!(cancel.success(), "ferry cancel failed: {cancel}");
    let state = wait_for_state(&url, &job, &["CANCELLED"], Duration::from_secs(30));
    assert_eq!(state, "CANCELLED");
    assert!(!too_late, "the job finished before it was cancelled");

    tokio::time::sleep(Duration::from_secs(3)).await;
    let target = dbs.target().await;
    let ledger = ledger_summary(&target, &job).await;
    assert_eq!(
        ledger.rows,
        1,
        "only the chunk completed before the cancel may land ({ledger:?}); coordinator log:\n{}",
        coordinator.log_tail(15)
    );
    assert_eq!(row_count(&target, ITEMS_TABLE).await, ledger.rows_written);
}

/// A worker frozen mid-chunk (SIGSTOP: a VM pause, a long GC stall) keeps its
/// target transaction and ledger claim open. Its lease expires, the chunk is
/// leased again, the new attempt must get past the zombie's claim; when the
/// zombie wakes up it must not write a second copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_worker_is_fenced_and_never_duplicates() {
    let dbs = Databases::one_cluster().await;
    dbs.prepare_items(ROWS).await;
    let env = dbs.conn_env();
    let (coordinator, url) = start_coordinator(LEASE_TTL, &env);
    let zombie = start_worker(&url, 2, &env);
    let _healthy = start_worker(&url, 2, &env);

    let job = submit(&url, &env, 50_000);
    let too_late = wait_first_chunk(&coordinator);
    zombie.stop_signal();
    let _replacement = start_worker(&url, 2, &env);

    let state = wait_for_state(&url, &job, &TERMINAL_STATES, JOB_TIMEOUT);
    zombie.cont();
    assert_eq!(
        state,
        "SUCCEEDED",
        "job {job} did not succeed with a frozen worker; coordinator log:\n{}",
        coordinator.log_tail(40)
    );
    // Give the thawed zombie time to try to finish what it held.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_exact(&dbs, &coordinator, &url, &job).await;
    assert!(
        !too_late,
        "the job finished before the worker was frozen: the test exercised nothing"
    );
}

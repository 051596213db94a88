//! End-to-end under failure with one coordinator (no etcd): killed and
//! frozen workers, a worker that dies between commit and report, a restarted
//! target database, cancelled jobs. The target must still hold every source
//! row exactly once (or, when cancelled, exactly what the ledger says landed).

use std::time::Duration;

use ferry_tests::cli::Submit;
use ferry_tests::cli_output::JobState;
use ferry_tests::cluster::{Cluster, WorkerOptions};
use ferry_tests::data::row_count;
use ferry_tests::databases::{Pg, DST_DB, ITEMS_TABLE};
use ferry_tests::ledger::ledger_summary;
use ferry_tests::log_lines::{parse_start_line, ALREADY_COMMITTED, WILL_RETRY};
use ferry_tests::sql::wait_no_open_ferry_transactions;

const ROWS: u64 = 1_000_000;
/// Short worker leases so a dead worker's chunks come back within seconds.
const LEASE_TTL: Duration = Duration::from_secs(3);
/// Fail-safe for a job to finish after a fault.
const JOB_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the first chunk may take to complete.
const FIRST_CHUNK_TIMEOUT: Duration = Duration::from_secs(60);

/// Asserts the job succeeded and the target equals the source, with one
/// ledger row per planned chunk and the right row total.
async fn assert_exact(cluster: &Cluster, job: &str) {
    let state = cluster.wait_terminal(job, JOB_TIMEOUT);
    assert_eq!(
        state,
        Ok(JobState::Succeeded),
        "job {job} did not succeed; coordinator log:\n{}",
        cluster.coordinator(0).log_tail(40)
    );
    cluster.dbs().assert_copied_exactly(ITEMS_TABLE).await;
    let (_, chunks) =
        parse_start_line(&cluster.coordinator(0).log()).expect("start line names the chunk count");
    let ledger = ledger_summary(&cluster.dbs().target().await, job).await;
    assert_eq!(
        ledger.rows, chunks as i64,
        "one ledger row per chunk: {ledger:?}"
    );
    assert_eq!(ledger.distinct_chunks, chunks as i64, "{ledger:?}");
    assert_eq!(ledger.rows_written, ROWS as i64, "{ledger:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_job_is_replaced_and_job_is_exact() {
    let mut cluster = Cluster::builder()
        .lease_ttl(LEASE_TTL)
        .workers(2)
        .start()
        .await;
    cluster.dbs().prepare_items(ROWS).await;

    let job = cluster.submit(&Submit::items().chunk_size(50_000));
    let too_late = cluster.wait_first_chunk(FIRST_CHUNK_TIMEOUT);
    cluster.worker(0).kill();
    cluster.add_worker();

    assert_exact(&cluster, &job).await;
    assert!(
        !too_late,
        "the job finished before the worker was killed: the test exercised nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_dying_between_commit_and_report_does_not_duplicate() {
    let cluster = Cluster::builder()
        .lease_ttl(LEASE_TTL)
        .worker(
            WorkerOptions::new()
                .concurrency(1)
                .env("FERRY_FAULT", "die_after_commit:3"),
        )
        .worker(WorkerOptions::new().concurrency(1))
        .start()
        .await;
    cluster.dbs().prepare_items(ROWS).await;

    let job = cluster.submit(&Submit::items().chunk_size(50_000));
    assert_exact(&cluster, &job).await;
    let faulty = cluster.worker(0);
    assert!(
        faulty.exit_status().is_some(),
        "the worker with FERRY_FAULT=die_after_commit:3 should have exited; its log:\n{}",
        faulty.log_tail(30)
    );
    assert!(
        faulty.log().contains("exiting after commit 3"),
        "the worker exited, but not at its fault point; its log:\n{}",
        faulty.log_tail(30)
    );
    assert!(
        cluster.worker(1).log().contains(ALREADY_COMMITTED),
        "the chunk the faulty worker committed but never reported should have been \
         leased again and found in the ledger (`{ALREADY_COMMITTED}`); worker log:\n{}",
        cluster.worker(1).log_tail(30)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_restart_mid_job_is_retried_and_job_is_exact() {
    let cluster = Cluster::builder()
        .postgres(Pg::TwoClusters)
        .lease_ttl(LEASE_TTL)
        .workers(2)
        .start()
        .await;
    cluster.dbs().prepare_items(ROWS).await;

    let job = cluster.submit(&Submit::items().chunk_size(50_000));
    let too_late = cluster.wait_first_chunk(FIRST_CHUNK_TIMEOUT);
    cluster.dbs().target_cluster().restart();

    assert_exact(&cluster, &job).await;
    assert!(
        !too_late,
        "the job finished before the target restarted: the test exercised nothing"
    );
    assert!(
        cluster.coordinator(0).log().contains(WILL_RETRY),
        "chunks hit by the target restart should be retried (`{WILL_RETRY}`); coordinator log:\n{}",
        cluster.coordinator(0).log_tail(40)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_job_stops_cleanly_and_ledger_matches_target() {
    let cluster = Cluster::builder()
        .worker(WorkerOptions::new().concurrency(1))
        .start()
        .await;
    cluster.dbs().prepare_items(ROWS).await;

    let job = cluster.submit(&Submit::items().chunk_size(20_000));
    let too_late = cluster.wait_first_chunk(FIRST_CHUNK_TIMEOUT);
    let cancel = cluster.cancel(&job);
    assert!(cancel.success(), "ferry cancel failed: {cancel}");
    let state = cluster.wait_for_state(&job, &[JobState::Cancelled], Duration::from_secs(30));
    assert_eq!(
        state,
        Ok(JobState::Cancelled),
        "job {job} not cancelled within 30 s; coordinator log:\n{}",
        cluster.coordinator(0).log_tail(40)
    );
    assert!(!too_late, "the job finished before it was cancelled");

    let target = cluster.dbs().target().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let landed = row_count(&target, ITEMS_TABLE).await;
    let ledger = ledger_summary(&target, &job).await;
    assert_eq!(
        landed, ledger.rows_written,
        "target rows must equal what the ledger says landed ({ledger:?})"
    );
    assert!(landed < ROWS as i64, "a cancelled job copied everything");

    // No ferry session on the target may still hold a transaction.
    let open = wait_no_open_ferry_transactions(&target, DST_DB, Duration::from_secs(10)).await;
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
    let cluster = Cluster::builder()
        .worker(WorkerOptions::new().concurrency(1))
        .start()
        .await;
    cluster.dbs().prepare_items(ROWS).await;

    let job = cluster.submit(&Submit::items().chunk_size(250_000));
    let too_late = cluster.wait_first_chunk(FIRST_CHUNK_TIMEOUT);
    let cancel = cluster.cancel(&job);
    assert!(cancel.success(), "ferry cancel failed: {cancel}");
    let state = cluster.wait_for_state(&job, &[JobState::Cancelled], Duration::from_secs(30));
    assert_eq!(state, Ok(JobState::Cancelled));
    assert!(!too_late, "the job finished before it was cancelled");

    tokio::time::sleep(Duration::from_secs(3)).await;
    let target = cluster.dbs().target().await;
    let ledger = ledger_summary(&target, &job).await;
    assert_eq!(
        ledger.rows,
        1,
        "only the chunk completed before the cancel may land ({ledger:?}); coordinator log:\n{}",
        cluster.coordinator(0).log_tail(15)
    );
    assert_eq!(row_count(&target, ITEMS_TABLE).await, ledger.rows_written);
}

/// A worker frozen mid-chunk (SIGSTOP: a VM pause, a long GC stall) keeps its
/// target transaction and ledger claim open. Its lease expires, the chunk is
/// leased again, the new attempt must get past the zombie's claim; when the
/// zombie wakes up it must not write a second copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_worker_is_fenced_and_never_duplicates() {
    let mut cluster = Cluster::builder()
        .lease_ttl(LEASE_TTL)
        .workers(2)
        .start()
        .await;
    cluster.dbs().prepare_items(ROWS).await;

    let job = cluster.submit(&Submit::items().chunk_size(50_000));
    let too_late = cluster.wait_first_chunk(FIRST_CHUNK_TIMEOUT);
    cluster.worker(0).freeze();
    cluster.add_worker();

    let state = cluster.wait_terminal(&job, JOB_TIMEOUT);
    cluster.worker(0).thaw();
    assert_eq!(
        state,
        Ok(JobState::Succeeded),
        "job {job} did not succeed with a frozen worker; coordinator log:\n{}",
        cluster.coordinator(0).log_tail(40)
    );
    // Give the thawed zombie time to try to finish what it held.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_exact(&cluster, &job).await;
    assert!(
        !too_late,
        "the job finished before the worker was frozen: the test exercised nothing"
    );
}

//! Adjacent versions work together during a rolling upgrade (`helm upgrade`
//! replaces coordinators and workers one pod at a time): a worker built from
//! the previous release copies chunks for this version's coordinator, this
//! version's worker copies chunks for the previous coordinator, and old and
//! new workers share one job. Each job lands exactly (count and checksum into
//! a keyless target, one ledger row per chunk).
//!
//! The previous release's binary comes from `FERRY_PREVIOUS_BIN`;
//! `scripts/test-mixed-versions.sh` builds it from the commit it names and
//! runs these tests. Without it the tests are ignored, never passed silently.

use std::path::PathBuf;
use std::time::Duration;

use ferry_tests::cli::Submit;
use ferry_tests::cli_output::JobState;
use ferry_tests::cluster::{Cluster, ClusterBuilder, WorkerOptions};
use ferry_tests::data::table_checksum;
use ferry_tests::databases::{Databases, ITEMS_TABLE};
use ferry_tests::ledger::ledger_summary;

/// Rows of the source table.
const ROWS: u64 = 200_000;
/// Rows per chunk: 20 chunks.
const CHUNK_SIZE: u64 = 10_000;
/// Fail-safe for a job to end.
const JOB_TIMEOUT: Duration = Duration::from_secs(180);

/// The previous release's `ferry`, from `FERRY_PREVIOUS_BIN`.
fn previous_bin() -> String {
    let bin = std::env::var("FERRY_PREVIOUS_BIN").expect(
        "FERRY_PREVIOUS_BIN names the previous release's ferry: run scripts/test-mixed-versions.sh",
    );
    assert!(
        PathBuf::from(&bin).is_file(),
        "FERRY_PREVIOUS_BIN={bin} does not exist"
    );
    bin
}

/// A cluster on etcd whose target is keyless (a chunk landing twice would
/// show), built by `shape`.
async fn start(shape: impl FnOnce(ClusterBuilder) -> ClusterBuilder) -> Cluster {
    let dbs = Databases::one_cluster().await;
    dbs.prepare_items_keyless_target(ROWS).await;
    shape(Cluster::builder().databases(dbs).etcd(1))
        .start()
        .await
}

/// Runs the items job to the end and checks it landed exactly.
async fn copies_exactly(cluster: &Cluster, what: &str) {
    let job = cluster.submit(&Submit::items().chunk_size(CHUNK_SIZE));
    assert_eq!(
        cluster.wait_terminal(&job, JOB_TIMEOUT),
        Ok(JobState::Succeeded),
        "{what}: job {job} did not succeed:\n{}",
        cluster.coordinator_tails(40)
    );
    let source = cluster.dbs().source().await;
    let target = cluster.dbs().target().await;
    assert_eq!(
        table_checksum(&target, ITEMS_TABLE).await,
        table_checksum(&source, ITEMS_TABLE).await,
        "{what}: the target differs from the source"
    );
    let ledger = ledger_summary(&target, &job).await;
    assert_eq!(
        ledger.rows, ledger.distinct_chunks,
        "{what}: one ledger row per chunk"
    );
    assert_eq!(
        ledger.rows_written, ROWS as i64,
        "{what}: rows in the ledger"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs FERRY_PREVIOUS_BIN: run scripts/test-mixed-versions.sh"]
async fn a_previous_worker_copies_for_this_coordinator() {
    let old = previous_bin();
    let cluster = start(|b| b.worker(WorkerOptions::new().env("FERRY_BIN", old))).await;
    copies_exactly(&cluster, "previous worker, this coordinator").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs FERRY_PREVIOUS_BIN: run scripts/test-mixed-versions.sh"]
async fn this_worker_copies_for_a_previous_coordinator() {
    let old = previous_bin();
    let cluster = start(|b| b.coordinator_env("FERRY_BIN", old).workers(1)).await;
    copies_exactly(&cluster, "this worker, previous coordinator").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs FERRY_PREVIOUS_BIN: run scripts/test-mixed-versions.sh"]
async fn previous_and_current_workers_share_a_job() {
    let old = previous_bin();
    let cluster = start(|b| {
        b.worker(WorkerOptions::new().env("FERRY_BIN", old))
            .worker(WorkerOptions::new())
    })
    .await;
    copies_exactly(&cluster, "previous and current workers").await;
}

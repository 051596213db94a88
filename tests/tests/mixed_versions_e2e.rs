//! Adjacent versions work together during a rolling upgrade (`helm upgrade`
//! replaces coordinators and workers one pod at a time): a worker built from
//! the previous release copies chunks for this version's coordinator, this
//! version's worker copies chunks for the previous coordinator, and old and
//! new workers share one job; and the leader changes from a previous
//! coordinator to this one mid-job, and back (their etcd records of workers
//! differ: one lease per worker before, plain keys now). Each job lands
//! exactly (count and checksum into a keyless target, one ledger row per
//! chunk).
//!
//! The previous release's binary comes from `FERRY_PREVIOUS_BIN`, the
//! previous leader's from `FERRY_PREVIOUS_LEADER_BIN` (the last version that
//! kept an etcd lease per worker; the release is too old to read this
//! version's store format); `scripts/test-mixed-versions.sh` builds both from
//! the commits it names and runs these tests. Without them the tests are
//! ignored, never passed silently.

use std::path::PathBuf;
use std::time::Duration;

use ferry_tests::cli::Submit;
use ferry_tests::cli_output::JobState;
use ferry_tests::cluster::{Cluster, ClusterBuilder, WorkerOptions};
use ferry_tests::data::table_checksum;
use ferry_tests::databases::{Databases, ITEMS_TABLE};
use ferry_tests::ledger::ledger_summary;
use ferry_tests::log_lines::{log_field, BECAME_LEADER, RENEWED_ADOPTED};

/// Rows of the source table.
const ROWS: u64 = 200_000;
/// Rows per chunk: 20 chunks.
const CHUNK_SIZE: u64 = 10_000;
/// Fail-safe for a job to end.
const JOB_TIMEOUT: Duration = Duration::from_secs(180);
/// Fail-safe for one CLI call.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// The earlier `ferry` binary named by the environment variable `var`
/// (`scripts/test-mixed-versions.sh` sets it).
fn earlier_bin(var: &str) -> String {
    let bin = std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} names an earlier ferry: run scripts/test-mixed-versions.sh")
    });
    assert!(PathBuf::from(&bin).is_file(), "{var}={bin} does not exist");
    bin
}

/// The previous release's `ferry`, from `FERRY_PREVIOUS_BIN`.
fn previous_bin() -> String {
    earlier_bin("FERRY_PREVIOUS_BIN")
}

/// The previous leader's `ferry`, from `FERRY_PREVIOUS_LEADER_BIN`.
fn previous_leader_bin() -> String {
    earlier_bin("FERRY_PREVIOUS_LEADER_BIN")
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

/// Runs the items job to the end, checks it landed exactly, and returns
/// its id.
async fn copies_exactly(cluster: &Cluster, what: &str) -> String {
    let job = cluster.submit(&Submit::items().chunk_size(CHUNK_SIZE));
    lands_exactly(cluster, &job, what).await;
    job
}

/// Waits for `job` to end and checks it landed exactly.
async fn lands_exactly(cluster: &Cluster, job: &str, what: &str) {
    assert_eq!(
        cluster.wait_terminal(job, JOB_TIMEOUT),
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
    let ledger = ledger_summary(&target, job).await;
    assert_eq!(
        ledger.rows, ledger.distinct_chunks,
        "{what}: one ledger row per chunk"
    );
    assert_eq!(
        ledger.rows_written, ROWS as i64,
        "{what}: rows in the ledger"
    );
}

/// Two coordinators on etcd, `first` leading and `second` standing by (each
/// `None` for this version's binary, or the previous one's path), and two
/// workers of this version; kills the leader once the job's first chunk
/// landed, so the standby takes the job over mid-run, and checks it lands
/// exactly. Returns the cluster for more checks.
async fn hands_over(first: Option<String>, second: Option<String>, what: &str) -> Cluster {
    let bins = [first, second];
    let cluster = start(move |b| {
        b.coordinators(2)
            .coordinator_env_for(move |i| {
                bins[i]
                    .iter()
                    .map(|bin| ("FERRY_BIN".to_string(), bin.clone()))
                    .collect()
            })
            .workers(2)
    })
    .await;
    // small chunks, so the job is still running when its leader dies
    let job = cluster.submit(&Submit::items().chunk_size(1_000));
    cluster.wait_first_chunk(JOB_TIMEOUT);
    cluster.coordinator(0).kill();
    let took_over = cluster
        .coordinator(1)
        .wait_for_line(|l| l.contains(BECAME_LEADER), Duration::from_secs(30))
        .unwrap_or_else(|| {
            panic!(
                "{what}: the standby did not take over:\n{}",
                cluster.coordinator_tails(40)
            )
        });
    assert_eq!(
        log_field(&took_over, "running"),
        Some("1"),
        "{what}: the job should still run when the standby takes over: {took_over}"
    );
    lands_exactly(&cluster, &job, what).await;
    cluster
}

/// `ferry status JOB` as printed.
fn status(cluster: &Cluster, job: &str) -> String {
    let out = cluster.cli(
        &["status", job, "--coordinator", cluster.urls()],
        CLI_TIMEOUT,
    );
    assert!(out.success(), "ferry status {job}: {out}");
    out.all()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs FERRY_PREVIOUS_BIN: run scripts/test-mixed-versions.sh"]
async fn a_previous_worker_copies_for_this_coordinator() {
    let old = previous_bin();
    let cluster = start(|b| b.worker(WorkerOptions::new().env("FERRY_BIN", old))).await;
    let job = copies_exactly(&cluster, "previous worker, this coordinator").await;
    // it ignores the job's snapshot, so the job says it is not of one instant
    let shown = status(&cluster, &job);
    assert!(
        shown.contains("consistency lost") && shown.contains("outside the job's snapshot"),
        "a protocol-2 worker's reads are not in the snapshot: {shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs FERRY_PREVIOUS_BIN: run scripts/test-mixed-versions.sh"]
async fn this_worker_copies_for_a_previous_coordinator() {
    let old = previous_bin();
    let cluster = start(|b| b.coordinator_env("FERRY_BIN", old).workers(1)).await;
    let job = copies_exactly(&cluster, "this worker, previous coordinator").await;
    assert!(!status(&cluster, &job).contains("consistency lost"));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs FERRY_PREVIOUS_LEADER_BIN: run scripts/test-mixed-versions.sh"]
async fn a_previous_coordinator_hands_a_job_over_to_this_one() {
    let cluster = hands_over(
        Some(previous_leader_bin()),
        None,
        "previous leader, then this one",
    )
    .await;
    // the workers the previous leader registered, each under its own etcd
    // lease, are renewed by the new one instead of expiring under their chunks
    let renewed = cluster
        .coordinator(1)
        .wait_for_line(|l| l.contains(RENEWED_ADOPTED), Duration::from_secs(10))
        .expect("the new leader renews the workers' leases");
    assert!(
        renewed.contains("workers=2") && renewed.contains("renewed=2"),
        "both workers adopted, their leases renewed: {renewed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs FERRY_PREVIOUS_LEADER_BIN: run scripts/test-mixed-versions.sh"]
async fn this_coordinator_hands_a_job_over_to_a_previous_one() {
    hands_over(
        None,
        Some(previous_leader_bin()),
        "this leader, then a previous one",
    )
    .await;
}

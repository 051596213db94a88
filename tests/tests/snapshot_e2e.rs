//! One snapshot across hosts (issue 14, item 4): a PostgreSQL job's chunks
//! all read the source as of the snapshot the leader exported, even while
//! the source is written to; `--consistency none` says the copy is not
//! consistent; a leader killed mid-job leaves a job that still succeeds,
//! exactly once, marked not consistent with a log line saying why.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_tests::chaos::{ChaosRun, ChaosSetup, CHUNK_STALL_MS};
use ferry_tests::chaos_verdict::finish;
use ferry_tests::cli::Submit;
use ferry_tests::cli_output::JobState;
use ferry_tests::cluster::Cluster;
use ferry_tests::data::{slow_down_inserts, table_checksum};
use ferry_tests::databases::{Pg, ITEMS_TABLE};
use ferry_tests::log_lines::log_field;
use serde_json::Value;
use tokio_postgres::Client;

/// Rows of the written-to job (the size).
const ROWS: u64 = 2_000_000;
const CHUNK: u64 = 100_000;
/// Each chunk's COPY stalls this long in the target, so the job lasts long
/// enough for the writer to change rows under it.
const STALL_MS: u64 = 400;
const JOB_TIMEOUT: Duration = Duration::from_secs(300);
const LINE_TIMEOUT: Duration = Duration::from_secs(60);
/// The coordinator's line naming the exported snapshot.
const SNAPSHOT_EXPORTED: &str = "source snapshot exported";
/// The coordinator's line when a job continues in a new snapshot.
const CONSISTENCY_LOST: &str = "consistency lost";

/// `ferry status JOB --output json` as JSON.
fn status_json(cluster: &Cluster, job: &str) -> Value {
    let out = cluster.job_verb(
        "status",
        job,
        &["--output", "json"],
        Duration::from_secs(30),
    );
    assert!(out.success(), "status failed: {out}");
    let line = out.stdout.lines().next().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("status JSON {line:?}: {e}"))
}

fn text(v: &Value, field: &str) -> String {
    v.get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Waits for the coordinator's `source snapshot exported` line of `job` and
/// returns the snapshot id it names.
async fn exported_snapshot(cluster: &Cluster, job: &str) -> String {
    let deadline = Instant::now() + LINE_TIMEOUT;
    loop {
        let found = cluster
            .job_log(job)
            .into_iter()
            .find(|l| l.contains(SNAPSHOT_EXPORTED))
            .and_then(|l| log_field(&l, "snapshot").map(str::to_string));
        if let Some(id) = found {
            return id;
        }
        assert!(
            Instant::now() < deadline,
            "no `{SNAPSHOT_EXPORTED}` line for job {job}:\n{}",
            cluster.coordinator_tails(40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `(count, checksum)` of the source's items as of snapshot `id`, read in a
/// transaction of the test's own that imports it.
async fn checksum_in_snapshot(source: &Client, id: &str) -> (i64, String) {
    assert!(
        id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
        "odd snapshot id {id:?}"
    );
    source
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{id}'"
        ))
        .await
        .expect("import the job's snapshot while the job runs");
    let sum = table_checksum(source, ITEMS_TABLE).await;
    source.batch_execute("COMMIT").await.expect("commit");
    sum
}

/// Updates and inserts source rows until `stop`: every round changes 200
/// random rows across the key range and adds 100 new ones.
fn spawn_writer(
    source: Client,
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut next = ROWS as i64 + 1;
        while !stop.load(Ordering::SeqCst) {
            source
                .batch_execute(&format!(
                    "UPDATE items SET amount = amount + 1, note = 'written ' || now()
                       WHERE id IN (SELECT 1 + (random() * {ROWS})::bigint FROM generate_series(1, 200));
                     INSERT INTO items (id, customer_id, amount, status, note, created_at)
                       SELECT g, 1, 1.00, 'new', 'inserted', now() FROM generate_series({next}, {}) g",
                    next + 99
                ))
                .await
                .expect("write the source while the job runs");
            next += 100;
            rounds.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_equals_the_source_as_of_the_exported_snapshot() {
    let cluster = Cluster::builder().workers(2).start().await;
    cluster.dbs().prepare_items(ROWS).await;
    slow_down_inserts(&cluster.dbs().target().await, ITEMS_TABLE, STALL_MS).await;
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let writer = spawn_writer(cluster.dbs().source().await, stop.clone(), rounds.clone());
    while rounds.load(Ordering::SeqCst) < 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let job = cluster.submit(&Submit::items().chunk_size(CHUNK));
    let id = exported_snapshot(&cluster, &job).await;
    let as_of_snapshot = checksum_in_snapshot(&cluster.dbs().source().await, &id).await;
    let state = cluster.wait_terminal(&job, JOB_TIMEOUT);
    let during = rounds.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("writer");
    assert_eq!(
        state,
        Ok(JobState::Succeeded),
        "{}",
        cluster.coordinator_tails(40)
    );

    let target = table_checksum(&cluster.dbs().target().await, ITEMS_TABLE).await;
    let source_now = table_checksum(&cluster.dbs().source().await, ITEMS_TABLE).await;
    assert_eq!(
        target, as_of_snapshot,
        "the target must equal the source as of snapshot {id}"
    );
    assert_ne!(
        source_now, as_of_snapshot,
        "the writer ({during} rounds) changed nothing after the snapshot: the test proves nothing"
    );
    assert!(
        as_of_snapshot.0 > ROWS as i64,
        "rows inserted before the job are in its snapshot"
    );

    let status = status_json(&cluster, &job);
    assert!(
        status["chunks_total"].as_u64().unwrap_or(0) >= 10,
        "{status}"
    );
    assert_eq!(
        text(&status, "consistency"),
        "CONSISTENCY_SNAPSHOT",
        "{status}"
    );
    assert_eq!(text(&status, "consistency_lost"), "", "{status}");
    assert!(
        text(&status, "plan").contains("every chunk reads the source as of one instant"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistency_none_says_the_copy_is_not_consistent() {
    let cluster = Cluster::builder().workers(2).start().await;
    cluster.dbs().prepare_items(40_000).await;
    let out = cluster.submit_watch(
        &Submit::items()
            .chunk_size(10_000)
            .flag("--consistency", "none"),
    );
    assert!(out.success(), "copy failed: {out}");
    let job = out.job_id();
    cluster.dbs().assert_copied_exactly(ITEMS_TABLE).await;
    let status = status_json(&cluster, &job);
    assert_eq!(text(&status, "consistency"), "CONSISTENCY_NONE", "{status}");
    assert!(
        text(&status, "plan").contains("the copy is not consistent across chunks"),
        "{status}"
    );
    assert!(
        !cluster
            .job_log(&job)
            .iter()
            .any(|l| l.contains(SNAPSHOT_EXPORTED)),
        "no snapshot is exported with --consistency none"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_mid_snapshot_job_succeeds_marked_not_consistent() {
    let mut run = ChaosRun::start(ChaosSetup {
        pg: Pg::OneCluster,
        etcd_members: 1,
        lease_ttl: None,
        stall_ms: CHUNK_STALL_MS,
    })
    .await;
    let job = run.submit(&[]);
    run.wait_first_chunk();
    let killed = run.kill_leader();
    finish("snapshot: leader coordinator SIGKILLed", &run, &job).await;

    let survivor = &run.cluster.coordinator(1 - killed);
    let lost: Vec<String> = survivor
        .all_lines()
        .into_iter()
        .filter(|l| l.contains(CONSISTENCY_LOST) && log_field(l, "job") == Some(job.as_str()))
        .collect();
    assert_eq!(
        lost.len(),
        1,
        "one `{CONSISTENCY_LOST}` line expected:\n{}",
        run.cluster.coordinator_tails(40)
    );
    let status = status_json(&run.cluster, &job);
    assert_eq!(text(&status, "state"), "JOB_STATE_SUCCEEDED", "{status}");
    assert_eq!(
        text(&status, "consistency"),
        "CONSISTENCY_SNAPSHOT",
        "{status}"
    );
    let why = text(&status, "consistency_lost");
    assert!(
        why.contains("a new leader took over") && why.contains("not of one instant"),
        "the job must say why it is not consistent: {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_session_ended_mid_job_continues_in_a_new_snapshot() {
    let cluster = Cluster::builder().workers(2).start().await;
    cluster.dbs().prepare_items(600_000).await;
    slow_down_inserts(&cluster.dbs().target().await, ITEMS_TABLE, CHUNK_STALL_MS).await;
    let job = cluster.submit(&Submit::items().chunk_size(20_000));
    let id = exported_snapshot(&cluster, &job).await;

    // a session that read in the snapshot may export it again (what a new
    // leader does to keep a job's instant while the old session lives)
    let source = cluster.dbs().source().await;
    source
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{id}'"
        ))
        .await
        .expect("import the job's snapshot");
    let again: String = source
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .expect("export an imported snapshot again")
        .get(0);
    assert_ne!(again, id);
    source.batch_execute("COMMIT").await.expect("commit");

    cluster.wait_first_chunk(LINE_TIMEOUT);
    let ended: i64 = source
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&format!("ferry:snapshot:{job}")],
        )
        .await
        .expect("end the snapshot session")
        .get(0);
    assert_eq!(
        ended, 1,
        "the leader holds one snapshot session for the job"
    );
    let state = cluster.wait_terminal(&job, JOB_TIMEOUT);
    assert_eq!(
        state,
        Ok(JobState::Succeeded),
        "{}",
        cluster.coordinator_tails(40)
    );
    cluster.dbs().assert_copied_exactly(ITEMS_TABLE).await;
    let status = status_json(&cluster, &job);
    let why = text(&status, "consistency_lost");
    assert!(
        why.contains("the source session holding the snapshot ended"),
        "{status}"
    );
    assert!(
        cluster
            .job_log(&job)
            .iter()
            .any(|l| l.contains(CONSISTENCY_LOST)),
        "no `{CONSISTENCY_LOST}` line"
    );
}

//! Adaptive concurrency (issue 16, item 4): a job asking for 8 chunks in
//! flight (`--max-workers 8`) on a worker with 8 slots starts at 2 and
//! adapts to the rows/s its target takes, logging each change
//! (`concurrency dst: 2 → 3 (rows/s …)`), always within 1..=8, and lands
//! exactly; `--fixed-workers` keeps 8 and logs no change.

use std::time::Duration;

use ferry_tests::cli::Submit;
use ferry_tests::cli_output::JobState;
use ferry_tests::cluster::Cluster;
use ferry_tests::ledger::ledger_summary;

// 400 chunks: enough that chunks still wait after the first windows, so a
// probe can pay for itself (the controller probes no level it cannot repay)
const ROWS: u64 = 400_000;
const CHUNK: u64 = 1_000;
const CHUNKS: i64 = (ROWS / CHUNK) as i64;
const JOB_TIMEOUT: Duration = Duration::from_secs(300);
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// The levels `concurrency dst: A → B (…)` lines name, as (A, B).
fn changes(lines: &[String]) -> Vec<(u32, u32)> {
    lines
        .iter()
        .filter_map(|l| {
            let rest = &l[l.find("concurrency dst: ")? + "concurrency dst: ".len()..];
            let (from, rest) = rest.split_once(" → ")?;
            let to = rest.split_whitespace().next()?;
            Some((from.trim().parse().ok()?, to.parse().ok()?))
        })
        .collect()
}

/// The job's `concurrency` field from `ferry status --output json`.
fn concurrency_field(cluster: &Cluster, job: &str) -> u64 {
    let out = cluster.job_verb("status", job, &["--output", "json"], CLI_TIMEOUT);
    assert!(out.success(), "ferry status failed: {out}");
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("status is not JSON ({e}): {out}"));
    v.get("concurrency")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("no concurrency field: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_asked_adapts_within_one_to_eight_and_lands_exactly() {
    let cluster = Cluster::builder()
        .worker_concurrency(8)
        .workers(1)
        .start()
        .await;
    cluster.dbs().prepare_items(ROWS).await;

    let job = cluster.submit(
        &Submit::items()
            .chunk_size(CHUNK)
            .flag("--max-workers", 8)
            .flag("--min-rows-for-parallel", 0),
    );
    let state = tokio::task::block_in_place(|| {
        cluster.wait_for_state(&job, &[JobState::Succeeded, JobState::Failed], JOB_TIMEOUT)
    });
    assert_eq!(
        state,
        Ok(JobState::Succeeded),
        "coordinator:\n{}",
        cluster.coordinator_tails(60)
    );
    cluster.dbs().assert_copied_exactly("public.items").await;
    let ledger = ledger_summary(&cluster.dbs().target().await, &job).await;
    assert_eq!(ledger.distinct_chunks, CHUNKS, "one ledger row per chunk");
    assert_eq!(ledger.rows, CHUNKS, "one ledger row per chunk");

    let seen = changes(&cluster.job_log(&job));
    assert!(
        !seen.is_empty(),
        "no \"concurrency dst: A → B\" line; coordinator:\n{}",
        cluster.coordinator_tails(60)
    );
    assert_eq!(seen[0].0, 2, "it starts at 2: {seen:?}");
    for (from, to) in &seen {
        assert!((1..=8).contains(from) && (1..=8).contains(to), "{seen:?}");
        assert!(from != to, "a change changes: {seen:?}");
    }
    for w in seen.windows(2) {
        assert_eq!(w[0].1, w[1].0, "changes follow each other: {seen:?}");
    }
    let last = seen.last().map_or(2, |c| c.1);
    assert_eq!(
        concurrency_field(&cluster, &job),
        u64::from(last),
        "the job's concurrency field is its last level"
    );
    eprintln!("levels: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_workers_keeps_max_workers() {
    let cluster = Cluster::builder()
        .worker_concurrency(8)
        .workers(1)
        .start()
        .await;
    cluster.dbs().prepare_items(ROWS / 4).await;
    let job = cluster.submit(
        &Submit::items()
            .chunk_size(CHUNK)
            .flag("--max-workers", 8)
            .flag("--min-rows-for-parallel", 0)
            .args(&["--fixed-workers"]),
    );
    let state = tokio::task::block_in_place(|| {
        cluster.wait_for_state(&job, &[JobState::Succeeded, JobState::Failed], JOB_TIMEOUT)
    });
    assert_eq!(
        state,
        Ok(JobState::Succeeded),
        "coordinator:\n{}",
        cluster.coordinator_tails(60)
    );
    cluster.dbs().assert_copied_exactly("public.items").await;
    assert_eq!(changes(&cluster.job_log(&job)), Vec::new());
    assert_eq!(concurrency_field(&cluster, &job), 8);
}

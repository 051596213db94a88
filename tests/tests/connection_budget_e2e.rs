//! The cluster-wide connection budget (issue 14, item 6): with the source
//! connection limited to 4 sessions (`FERRY_CONN_SRC_MAX_CONNECTIONS=4`),
//! three jobs submitted at once to workers with many slots never hold more
//! than 4 sessions on the source database (sampled from `pg_stat_activity`
//! every 100 ms), all succeed exactly, and a job that had to wait said so
//! (`ferry status` and the coordinator's "waiting for connections on src").
//! A worker set to keep idle connections longer than the coordinator counts
//! them follows the coordinator.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_tests::cli::Submit;
use ferry_tests::cli_output::JobState;
use ferry_tests::cluster::Cluster;
use ferry_tests::data::{create_items_table, slow_down_inserts, table_checksum};
use ferry_tests::databases::SRC_DB;

const LIMIT: i64 = 4;
const ROWS: u64 = 60_000;
const CHUNK: u64 = 2_000;
const TARGETS: [&str; 3] = ["public.items_a", "public.items_b", "public.items_c"];
const JOB_TIMEOUT: Duration = Duration::from_secs(180);
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// Sessions on the source database other than the sampler's own: every
/// client backend there is Ferry's (the test's setup sessions are closed).
const COUNT_SOURCE_SESSIONS: &str = "SELECT count(*) FROM pg_stat_activity \
     WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()";

/// Samples the source's sessions every 100 ms until `stop`; keeps the most
/// seen in `max` and how many samples were taken in `samples`.
async fn sample(
    client: tokio_postgres::Client,
    stop: Arc<AtomicBool>,
    max: Arc<AtomicI64>,
    samples: Arc<AtomicI64>,
) {
    let mut every = tokio::time::interval(Duration::from_millis(100));
    while !stop.load(Ordering::Relaxed) {
        every.tick().await;
        let row = client
            .query_one(COUNT_SOURCE_SESSIONS, &[&SRC_DB])
            .await
            .expect("read pg_stat_activity");
        let n: i64 = row.get(0);
        max.fetch_max(n, Ordering::Relaxed);
        samples.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn three_jobs_share_four_source_connections() {
    let cluster = Cluster::builder()
        .coordinator_env("FERRY_CONN_SRC_MAX_CONNECTIONS", LIMIT.to_string())
        .worker_concurrency(8)
        .workers(2)
        .start()
        .await;
    cluster.dbs().prepare_items(ROWS).await;
    {
        let target = cluster.dbs().target().await;
        for t in TARGETS {
            create_items_table(&target, t).await;
            // each chunk takes a while, so the jobs overlap and queue
            slow_down_inserts(&target, t, 150).await;
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let max = Arc::new(AtomicI64::new(0));
    let samples = Arc::new(AtomicI64::new(0));
    let sampler = tokio::spawn(sample(
        cluster.dbs().source().await,
        Arc::clone(&stop),
        Arc::clone(&max),
        Arc::clone(&samples),
    ));

    let jobs: Vec<String> = TARGETS
        .iter()
        .map(|t| {
            cluster.submit(
                &Submit::new("SELECT * FROM items", *t)
                    .chunk_size(CHUNK)
                    .flag("--min-rows-for-parallel", 0),
            )
        })
        .collect();

    // follow the jobs through `ferry status` until all have ended
    let (states, waiting_seen) = tokio::task::block_in_place(|| {
        let deadline = Instant::now() + JOB_TIMEOUT;
        let mut waiting_seen = false;
        loop {
            let mut states = Vec::new();
            for job in &jobs {
                let out = cluster.job_verb("status", job, &[], CLI_TIMEOUT);
                assert!(out.success(), "ferry status failed: {out}");
                waiting_seen |= out.stdout.contains("waiting for connections on src");
                let state: JobState = out
                    .stdout
                    .split_whitespace()
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("no state in: {out}"));
                states.push(state);
            }
            if states.iter().all(|s| s.is_terminal()) || Instant::now() >= deadline {
                return (states, waiting_seen);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    stop.store(true, Ordering::Relaxed);
    sampler.await.expect("the sampler ran to its end");

    assert!(
        states.iter().all(|s| *s == JobState::Succeeded),
        "jobs ended {states:?}; coordinator:\n{}",
        cluster.coordinator_tails(40)
    );
    let most = max.load(Ordering::Relaxed);
    assert!(samples.load(Ordering::Relaxed) > 10, "too few samples");
    assert!(
        most <= LIMIT,
        "{most} sessions on the source at once, over the limit of {LIMIT}"
    );
    assert!(most >= 1, "the sampler never saw Ferry on the source");
    eprintln!(
        "at most {most} sessions on the source in {} samples",
        samples.load(Ordering::Relaxed)
    );

    let source = table_checksum(&cluster.dbs().source().await, "public.items").await;
    let target = cluster.dbs().target().await;
    for t in TARGETS {
        assert_eq!(
            table_checksum(&target, t).await,
            source,
            "{t} differs from the source"
        );
    }

    let waited: Vec<&String> = jobs
        .iter()
        .filter(|j| {
            cluster
                .job_log(j)
                .iter()
                .any(|l| l.contains("waiting for connections on src"))
        })
        .collect();
    assert!(
        !waited.is_empty(),
        "no job logged \"waiting for connections on src\"; coordinator:\n{}",
        cluster.coordinator_tails(60)
    );
    assert!(
        waiting_seen,
        "`ferry status` never showed a job waiting for connections on src"
    );
    // the counts kept as leases start and end agree with the tick's full count
    let off: Vec<String> = cluster
        .coordinator_lines()
        .into_iter()
        .filter(|l| l.contains("connection budget disagreed"))
        .collect();
    assert!(off.is_empty(), "the budget's counts drifted: {off:?}");
}

/// A worker told to keep idle connections for 120 s by a coordinator whose
/// budget counts them for 1 s follows the coordinator (else the budget's
/// count of the source's sessions would be short for two minutes after each
/// chunk): once the job ends its pooled sessions on the source close, and the
/// worker says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_keeping_idle_connections_longer_follows_the_coordinator() {
    let cluster = Cluster::builder()
        .coordinator_env("FERRY_POOL_IDLE_TIMEOUT", "1s")
        .worker_env("FERRY_POOL_IDLE_TIMEOUT", "120s")
        .worker_concurrency(2)
        .workers(1)
        .start()
        .await;
    cluster.dbs().prepare_items(20_000).await;
    let out = cluster.submit_watch(
        &Submit::new("SELECT * FROM items", "public.items")
            .chunk_size(CHUNK)
            .flag("--min-rows-for-parallel", 0),
    );
    assert!(out.success(), "the job failed: {out}");

    // the coordinator's linger for 1 s is 2.5 s; the worker's own would be 180 s
    let source = cluster.dbs().source().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let left = loop {
        let n: i64 = source
            .query_one(COUNT_SOURCE_SESSIONS, &[&SRC_DB])
            .await
            .expect("read pg_stat_activity")
            .get(0);
        if n == 0 || Instant::now() >= deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        left,
        0,
        "the worker still holds idle sessions on the source 30 s after the job; worker log:\n{}",
        cluster.worker(0).log_tail(20)
    );
    assert!(
        cluster
            .worker(0)
            .logs()
            .iter()
            .any(|l| l.contains("longer than the coordinator's")),
        "the worker does not say it follows the coordinator's idle timeout:\n{}",
        cluster.worker(0).log_tail(20)
    );
}

/// A SNAPSHOT job whose source and target are one connection holds three
/// sessions on it (the exported snapshot, a chunk's read and its write): the
/// limit derived from the server (here 1 % of 197 sessions) grants at least
/// that many, so the job runs instead of waiting for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_job_within_one_connection_runs_under_the_smallest_derived_limit() {
    let cluster = Cluster::builder()
        .coordinator_env("FERRY_CONNECTION_SHARE", "1%")
        .workers(1)
        .start()
        .await;
    cluster.dbs().prepare_items(10_000).await;
    let source = cluster.dbs().source().await;
    create_items_table(&source, "public.items_copy").await;
    let job = cluster.submit(
        &Submit::new("SELECT * FROM items", "public.items_copy")
            .source("src")
            .target("src")
            .chunk_size(CHUNK)
            .flag("--min-rows-for-parallel", 0),
    );
    assert_eq!(
        cluster.wait_terminal(&job, Duration::from_secs(60)),
        Ok(JobState::Succeeded),
        "coordinator:\n{}",
        cluster.coordinator_tails(30)
    );
    assert_eq!(
        table_checksum(&source, "public.items_copy").await,
        table_checksum(&source, "public.items").await
    );
    assert!(
        cluster
            .coordinator_lines()
            .iter()
            .any(|l| l.contains("connection budget derived from the server")
                && l.contains("limit=3")),
        "the derived limit is not logged as 3:\n{}",
        cluster.coordinator_tails(30)
    );
}

//! End-to-end: a coordinator and workers as real processes copy real tables
//! between real PostgreSQL databases; the target must equal the source, the
//! ledger must account for every chunk, and the planner must cut even chunks
//! and pick its scans as it says.

use ferry_tests::cli::Submit;
use ferry_tests::cli_output::JobState;
use ferry_tests::cluster::Cluster;
use ferry_tests::data::{create_items_table, fill_items, row_count};
use ferry_tests::databases::ITEMS_TABLE;
use ferry_tests::ledger::ledger_summary;
use ferry_tests::log_lines::{
    is_chunk_completed_line, parse_start_line, JOB_COMPLETE, JOB_STARTING,
};
use ferry_tests::sql::exec;

use std::time::Duration;

const ROWS: u64 = 1_000_000;
const CHUNK_SIZE: u64 = 50_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_copy_a_million_rows_exactly_once() {
    let cluster = Cluster::builder().workers(2).start().await;
    let dbs = cluster.dbs();
    dbs.prepare_items(ROWS).await;

    let out = cluster.submit_watch(&Submit::items().chunk_size(CHUNK_SIZE));
    assert!(out.success(), "submit --watch failed: {out}");
    let job = out.job_id();

    dbs.assert_copied_exactly(ITEMS_TABLE).await;

    let coordinator = cluster.coordinator(0);
    let log = coordinator.log();
    assert!(
        log.contains(JOB_STARTING),
        "coordinator log lacks the start line:\n{}",
        coordinator.log_tail(40)
    );
    assert!(
        log.contains(&format!("{JOB_COMPLETE}:")),
        "coordinator log lacks the completion line:\n{}",
        coordinator.log_tail(40)
    );
    assert!(
        log.lines().any(is_chunk_completed_line),
        "coordinator log has no `Chunk N completed` line:\n{}",
        coordinator.log_tail(40)
    );
    let (_, chunks) = parse_start_line(&log).expect("start line names the chunk count");
    let min_chunks = ROWS / CHUNK_SIZE;
    assert!(
        (min_chunks..=3 * min_chunks).contains(&chunks),
        "{ROWS} rows in chunks of {CHUNK_SIZE} should make about {min_chunks} chunks, planned {chunks}"
    );

    assert_eq!(cluster.state(&job), Ok(JobState::Succeeded));

    let ledger = ledger_summary(&dbs.target().await, &job).await;
    assert_eq!(
        ledger.rows, chunks as i64,
        "one ledger row per chunk: {ledger:?}"
    );
    assert_eq!(ledger.distinct_chunks, chunks as i64, "{ledger:?}");
    assert_eq!(ledger.rows_written, ROWS as i64, "{ledger:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_keys_still_make_even_chunks() {
    let cluster = Cluster::builder().workers(2).start().await;
    let dbs = cluster.dbs();
    dbs.prepare_skewed_items(ROWS).await;

    let out = cluster.submit_watch(&Submit::items().chunk_size(CHUNK_SIZE));
    assert!(out.success(), "submit --watch failed: {out}");
    let job = out.job_id();

    dbs.assert_copied_exactly(ITEMS_TABLE).await;
    let ledger = ledger_summary(&dbs.target().await, &job).await;
    assert_eq!(ledger.rows_written, ROWS as i64, "{ledger:?}");
    assert_eq!(ledger.rows, ledger.distinct_chunks, "{ledger:?}");
    assert!(
        ledger.max_rows_written <= 2 * CHUNK_SIZE as i64,
        "a chunk wrote {} rows, more than twice the chunk size {CHUNK_SIZE}: \
         the planner cut the key domain by width, not by rows ({ledger:?})\ncoordinator log:\n{}",
        ledger.max_rows_written,
        cluster.coordinator(0).log_tail(30)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_request_id_gives_the_same_job() {
    const SMALL: u64 = 10_000;
    let cluster = Cluster::builder().workers(1).start().await;
    cluster.dbs().prepare_items(SMALL).await;

    let job = Submit::items().flag("--request-id", "abc");
    let first = cluster.submit(&job);
    let second = cluster.submit(&job);
    assert_eq!(
        first, second,
        "the same --request-id must return the same job id"
    );

    let watch = cluster.watch(&first);
    assert!(
        watch.success(),
        "watch failed: {watch}\ncoordinator log:\n{}",
        cluster.coordinator(0).log_tail(30)
    );
    assert_eq!(
        row_count(&cluster.dbs().target().await, ITEMS_TABLE).await,
        SMALL as i64,
        "the job ran once: the target has each row once"
    );

    let jobs = cluster.jobs();
    assert!(jobs.success(), "ferry jobs failed: {jobs}");
    assert!(
        jobs.stdout.contains(&first),
        "ferry jobs does not list {first}: {jobs}"
    );
    let job_lines = jobs
        .stdout
        .lines()
        .filter(|l| {
            l.split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .any(|w| w.parse::<JobState>().is_ok())
        })
        .count();
    assert_eq!(
        job_lines, 1,
        "ferry jobs should list exactly one job: {jobs}"
    );
}

/// A source stored in key order is read by bitmap heap scans (the planner
/// says so); a shuffled one keeps PostgreSQL's own plan; both land exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_ordered_sources_are_read_by_bitmap_scans() {
    let cluster = Cluster::builder().workers(2).start().await;
    let dbs = cluster.dbs();
    let source = dbs.source().await;
    let target = dbs.target().await;
    for table in ["public.items", "public.shuffled"] {
        create_items_table(&source, table).await;
        create_items_table(&target, table).await;
    }
    fill_items(&source, "public.items", 200_000).await;
    exec(
        &source,
        "INSERT INTO public.shuffled SELECT * FROM public.items ORDER BY random();
         ANALYZE public.items; ANALYZE public.shuffled",
    )
    .await;
    for (table, bitmap) in [("public.items", true), ("public.shuffled", false)] {
        let job = cluster
            .submit(&Submit::new(format!("SELECT * FROM {table}"), table).chunk_size(20_000));
        let state = cluster.wait_terminal(&job, Duration::from_secs(60));
        assert_eq!(
            state,
            Ok(JobState::Succeeded),
            "{table}: {}",
            cluster.coordinator(0).log_tail(20)
        );
        let planned = cluster
            .job_log(&job)
            .into_iter()
            .find(|l| l.contains("job planned"))
            .expect("a `job planned` line");
        assert_eq!(
            planned.contains("bitmap heap scans"),
            bitmap,
            "{table}: bitmap scans expected: {bitmap}; {planned}"
        );
        dbs.assert_copied_exactly(table).await;
    }
}

/// `ferry local` (coordinator and workers in one process, no cluster)
/// copies the same way: exact, and SUCCEEDED in its summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_local_copies_exactly() {
    const SMALL: u64 = 100_000;
    let cluster = Cluster::builder().start().await;
    let dbs = cluster.dbs();
    dbs.prepare_items(SMALL).await;
    let job = Submit::items()
        .chunk_size(20_000)
        .flag("--min-rows-for-parallel", 0);
    let out = cluster.local(&job, 2);
    assert!(out.success(), "ferry local failed: {out}");
    let job = out.job_id();
    assert!(
        out.stderr.contains(&format!("job {job} SUCCEEDED")),
        "ferry local's summary should say the job SUCCEEDED: {out}"
    );
    dbs.assert_copied_exactly(ITEMS_TABLE).await;
    let ledger = ledger_summary(&dbs.target().await, &job).await;
    assert_eq!(ledger.rows_written, SMALL as i64, "{ledger:?}");
    assert_eq!(ledger.rows, ledger.distinct_chunks, "{ledger:?}");
    assert!(
        ledger.rows >= 2,
        "100,000 rows in chunks of 20,000: {ledger:?}"
    );
}

//! End-to-end: a coordinator and workers as real processes copy real tables
//! between real PostgreSQL databases; the target must equal the source.

use std::time::Duration;

use ferry_tests::data::row_count;
use ferry_tests::ferry::{run_cli, start_coordinator, start_worker};
use ferry_tests::job::{
    is_chunk_completed_line, job_id, job_state, job_verb, ledger_summary, parse_start_line,
    submit_args, submit_watch, CLI_TIMEOUT, JOB_STATES,
};
use ferry_tests::scenario::{Databases, ITEMS_QUERY, ITEMS_TABLE};

const ROWS: u64 = 1_000_000;
const CHUNK_SIZE: u64 = 50_000;
/// Fail-safe for one `submit --watch` of a million rows; a healthy run takes seconds.
const WATCH_TIMEOUT: Duration = Duration::from_secs(150);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_copy_a_million_rows_exactly_once() {
    let dbs = Databases::one_cluster().await;
    dbs.prepare_items(ROWS).await;
    let env = dbs.conn_env();
    let (coordinator, url) = start_coordinator(&[], &env);
    let _w1 = start_worker(&url, 2, &env);
    let _w2 = start_worker(&url, 2, &env);

    let chunk_size = CHUNK_SIZE.to_string();
    let out = submit_watch(
        &url,
        ITEMS_QUERY,
        ITEMS_TABLE,
        &["--chunk-size", &chunk_size],
        &env,
        WATCH_TIMEOUT,
    );
    assert!(out.success(), "submit --watch failed: {out}");
    let job = job_id(&out);

    dbs.assert_copied_exactly(ITEMS_TABLE).await;

    let log = coordinator.log();
    assert!(
        log.contains("Starting parallel processing with"),
        "coordinator log lacks the start line:\n{}",
        coordinator.log_tail(40)
    );
    assert!(
        log.contains("Parallel processing complete:"),
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

    assert_eq!(job_state(&url, &job).as_deref(), Ok("SUCCEEDED"));

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
    let dbs = Databases::one_cluster().await;
    dbs.prepare_skewed_items(ROWS).await;
    let env = dbs.conn_env();
    let (coordinator, url) = start_coordinator(&[], &env);
    let _w1 = start_worker(&url, 2, &env);
    let _w2 = start_worker(&url, 2, &env);

    let chunk_size = CHUNK_SIZE.to_string();
    let out = submit_watch(
        &url,
        ITEMS_QUERY,
        ITEMS_TABLE,
        &["--chunk-size", &chunk_size],
        &env,
        WATCH_TIMEOUT,
    );
    assert!(out.success(), "submit --watch failed: {out}");
    let job = job_id(&out);

    dbs.assert_copied_exactly(ITEMS_TABLE).await;
    let ledger = ledger_summary(&dbs.target().await, &job).await;
    assert_eq!(ledger.rows_written, ROWS as i64, "{ledger:?}");
    assert_eq!(ledger.rows, ledger.distinct_chunks, "{ledger:?}");
    assert!(
        ledger.max_rows_written <= 2 * CHUNK_SIZE as i64,
        "a chunk wrote {} rows, more than twice the chunk size {CHUNK_SIZE}: \
         the planner cut the key domain by width, not by rows ({ledger:?})\ncoordinator log:\n{}",
        ledger.max_rows_written,
        coordinator.log_tail(30)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_request_id_gives_the_same_job() {
    const SMALL: u64 = 10_000;
    let dbs = Databases::one_cluster().await;
    dbs.prepare_items(SMALL).await;
    let env = dbs.conn_env();
    let (coordinator, url) = start_coordinator(&[], &env);
    let _worker = start_worker(&url, 2, &env);

    let args = submit_args(&url, ITEMS_QUERY, ITEMS_TABLE, &["--request-id", "abc"]);
    let first = job_id(&run_cli(&args, &env, CLI_TIMEOUT));
    let second = job_id(&run_cli(&args, &env, CLI_TIMEOUT));
    assert_eq!(
        first, second,
        "the same --request-id must return the same job id"
    );

    let watch = job_verb("watch", &url, &first, WATCH_TIMEOUT);
    assert!(
        watch.success(),
        "watch failed: {watch}\ncoordinator log:\n{}",
        coordinator.log_tail(30)
    );
    assert_eq!(
        row_count(&dbs.target().await, ITEMS_TABLE).await,
        SMALL as i64,
        "the job ran once: the target has each row once"
    );

    let jobs = run_cli(&["jobs", "--coordinator", url.as_str()], &env, CLI_TIMEOUT);
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
                .any(|w| JOB_STATES.contains(&w))
        })
        .count();
    assert_eq!(
        job_lines, 1,
        "ferry jobs should list exactly one job: {jobs}"
    );
}

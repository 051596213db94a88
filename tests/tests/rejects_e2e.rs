//! Rejected rows: a million rows of which 50 break a CHECK on the
//! target and 30 are too long for a `varchar(10)`. The job succeeds with the
//! 999,920 good rows landed, the 80 bad ones in `ferry.rejects` with their
//! keys and the database's messages, the counts in the guide's chunk lines,
//! and `ferry rejects` lists them. With `--max-failed-rows` or
//! `--max-failed-ratio` below that, the job fails and says why.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ferry_tests::cli::Submit;
use ferry_tests::cli_output::JobState;
use ferry_tests::cluster::Cluster;
use ferry_tests::data::{create_items_table, fill_items, row_count};
use ferry_tests::databases::{Databases, DST_DB, ITEMS_QUERY};
use ferry_tests::ledger::{ledger_summary, rejects_count};
use ferry_tests::log_lines::{parse_start_line, ChunkCompleted, JOB_COMPLETE, JOB_FAILED};
use ferry_tests::sql::{exec, wait_no_open_ferry_transactions};

const ROWS: u64 = 1_000_000;
const CHUNK_SIZE: u64 = 50_000;

/// The `items` columns with a named CHECK on `amount` and `status varchar(10)`.
const TARGET_COLUMNS: &str = "id bigint primary key, \
     customer_id int not null, \
     amount numeric(12,2) not null constraint amount_not_negative check (amount >= 0), \
     status varchar(10) not null, \
     note text, \
     created_at timestamptz not null";

/// Keys whose `amount` the test makes negative (the CHECK refuses them): the
/// first row, two neighbours mid-table, and 47 spread over the table.
fn check_keys() -> Vec<i64> {
    let mut keys = vec![1, 500_000, 500_001];
    keys.extend((0..47).map(|i| 10_007 + i * 20_011));
    keys
}

/// Keys whose `status` the test makes 20 characters long (varchar(10) refuses
/// them): the last row and 29 spread over the table.
fn long_keys() -> Vec<i64> {
    let mut keys = vec![ROWS as i64];
    keys.extend((0..29).map(|i| 5_003 + i * 33_331));
    keys
}

/// Source `items` with 1,000,000 rows, 80 of them bad for the target; target
/// tables `items`, `items_rows_limit` and `items_ratio_limit`, all empty.
async fn prepare(dbs: &Databases) {
    let check: BTreeSet<i64> = check_keys().into_iter().collect();
    let long: BTreeSet<i64> = long_keys().into_iter().collect();
    assert_eq!(check.len(), 50, "check keys must be distinct");
    assert_eq!(long.len(), 30, "long keys must be distinct");
    assert!(check.is_disjoint(&long), "a row must be bad one way only");

    let source = dbs.source().await;
    create_items_table(&source, "public.items").await;
    fill_items(&source, "public.items", ROWS).await;
    let check: Vec<i64> = check.into_iter().collect();
    let long: Vec<i64> = long.into_iter().collect();
    let n = source
        .execute("UPDATE items SET amount = -1 WHERE id = ANY($1)", &[&check])
        .await
        .expect("make CHECK violations");
    assert_eq!(n, 50);
    let n = source
        .execute(
            "UPDATE items SET status = 'much too long status' WHERE id = ANY($1)",
            &[&long],
        )
        .await
        .expect("make too-long values");
    assert_eq!(n, 30);

    let target = dbs.target().await;
    for table in ["items", "items_rows_limit", "items_ratio_limit"] {
        exec(
            &target,
            &format!("CREATE TABLE public.{table} ({TARGET_COLUMNS})"),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_are_rejected_and_the_rest_lands() {
    let cluster = Cluster::builder().workers(2).start().await;
    let dbs = cluster.dbs();
    prepare(dbs).await;

    let out =
        cluster.submit_watch(&Submit::new(ITEMS_QUERY, "public.items").chunk_size(CHUNK_SIZE));
    assert!(
        out.success(),
        "a job with 80 bad rows and no limit must succeed: {out}\ncoordinator log:\n{}",
        cluster.coordinator(0).log_tail(40)
    );
    let job = out.job_id();
    assert_eq!(cluster.state(&job), Ok(JobState::Succeeded));

    let target = dbs.target().await;
    let check: BTreeSet<String> = check_keys().iter().map(i64::to_string).collect();
    let long: BTreeSet<String> = long_keys().iter().map(i64::to_string).collect();
    let bad: BTreeSet<String> = check.union(&long).cloned().collect();

    // The good rows landed, the bad ones did not.
    assert_eq!(row_count(&target, "public.items").await, 999_920);
    let bad_ids: Vec<i64> = check_keys().into_iter().chain(long_keys()).collect();
    let landed_bad: i64 = target
        .query_one(
            "SELECT count(*) FROM public.items WHERE id = ANY($1)",
            &[&bad_ids],
        )
        .await
        .expect("count bad ids in the target")
        .get(0);
    assert_eq!(landed_bad, 0, "a refused row is in the target");
    // Every good row landed unchanged: the source minus the bad rows.
    let source = dbs.source().await;
    let sum_sql = "SELECT count(*), coalesce(sum(hashtext(t::text)::bigint), 0)::text \
                   FROM (SELECT id, customer_id, amount, status::text, note, created_at \
                         FROM public.items WHERE NOT (id = ANY($1))) t";
    let src_sum = source
        .query_one(sum_sql, &[&bad_ids])
        .await
        .expect("source checksum");
    let dst_sum = target
        .query_one(sum_sql, &[&bad_ids])
        .await
        .expect("target checksum");
    assert_eq!(
        (src_sum.get::<_, i64>(0), src_sum.get::<_, String>(1)),
        (dst_sum.get::<_, i64>(0), dst_sum.get::<_, String>(1)),
        "the good rows differ between source and target"
    );

    // ferry.rejects: exactly the 80 bad rows, with the database's messages.
    let rows = target
        .query(
            "SELECT chunk_no, key, row_text, sqlstate, message FROM ferry.rejects WHERE job_id = $1",
            &[&job],
        )
        .await
        .expect("read ferry.rejects");
    assert_eq!(rows.len(), 80, "rows in ferry.rejects for job {job}");
    let mut keys = BTreeSet::new();
    let mut per_chunk: BTreeMap<i32, i64> = BTreeMap::new();
    for r in &rows {
        let chunk: i32 = r.get(0);
        let key: Option<String> = r.get(1);
        let row_text: String = r.get(2);
        let sqlstate: String = r.get(3);
        let message: String = r.get(4);
        let key = key.unwrap_or_else(|| panic!("reject without key: {row_text:?} {message}"));
        assert!(
            row_text.starts_with(&format!("{key}\t")),
            "row_text of key {key} should be the row as text, starting with the key: {row_text:?}"
        );
        if check.contains(&key) {
            assert_eq!(sqlstate, "23514", "key {key}: {message}");
            assert!(
                message.contains("amount_not_negative"),
                "key {key}: the message should name the check constraint: {message}"
            );
        } else if long.contains(&key) {
            assert_eq!(sqlstate, "22001", "key {key}: {message}");
            assert!(
                message.contains("value too long"),
                "key {key}: the message should say the value is too long: {message}"
            );
        } else {
            panic!(
                "key {key} was rejected but was not made bad: {sqlstate} {message} {row_text:?}"
            );
        }
        assert!(keys.insert(key.clone()), "key {key} rejected twice");
        *per_chunk.entry(chunk).or_default() += 1;
    }
    assert_eq!(keys, bad, "the rejected keys are not the bad keys");

    // The ledger counts them per chunk.
    let ledger = ledger_summary(&target, &job).await;
    let (_, chunks) = parse_start_line(&cluster.coordinator(0).log()).expect("start line");
    assert_eq!(ledger.rows, chunks as i64, "{ledger:?}");
    assert_eq!(ledger.distinct_chunks, chunks as i64, "{ledger:?}");
    assert_eq!(ledger.rows_written, 999_920, "{ledger:?}");
    assert_eq!(ledger.rows_rejected, 80, "{ledger:?}");
    let ledger_rejects: BTreeMap<i32, i64> = target
        .query(
            "SELECT chunk_no, rows_rejected FROM ferry.ledger WHERE job_id = $1 AND rows_rejected > 0",
            &[&job],
        )
        .await
        .expect("read ferry.ledger")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        ledger_rejects, per_chunk,
        "ferry.ledger rows_rejected per chunk differs from ferry.rejects"
    );

    // The guide's lines: per-chunk failed counts and the closing totals.
    let log = cluster.job_log(&job);
    let chunk_lines: Vec<ChunkCompleted> = log
        .iter()
        .filter_map(|l| ChunkCompleted::parse(l))
        .collect();
    assert_eq!(
        chunk_lines.len() as u64,
        chunks,
        "one `Chunk N completed` line per chunk:\n{}",
        log.join("\n")
    );
    let mut logged_failed: BTreeMap<i32, i64> = BTreeMap::new();
    for c in &chunk_lines {
        assert_eq!(
            c.rows,
            c.successful + c.failed,
            "chunk {}: rows = successful + failed",
            c.chunk
        );
        if c.failed > 0 {
            logged_failed.insert(c.chunk as i32, c.failed as i64);
        }
    }
    assert_eq!(
        logged_failed,
        per_chunk,
        "the chunk lines' failed counts differ from ferry.rejects:\n{}",
        log.join("\n")
    );
    assert_eq!(
        chunk_lines.iter().map(|c| c.successful).sum::<u64>(),
        999_920
    );
    let complete = log
        .iter()
        .find(|l| l.contains(&format!("{JOB_COMPLETE}:")))
        .unwrap_or_else(|| panic!("no completion line:\n{}", log.join("\n")));
    assert!(
        complete.contains("1,000,000 rows processed (999,920 successful, 80 failed)"),
        "completion line: {complete}"
    );

    // ferry status and ferry rejects say the same.
    let status = cluster.status(&job);
    assert_eq!(
        (status.rows_written, status.rows_rejected),
        (999_920, 80),
        "ferry status should count the rejects: {status:?}"
    );
    let listed = cluster.rejects(&job, 100);
    let out = &listed.output;
    assert_eq!(listed.total, 80, "{out}");
    assert_eq!(listed.rows.len(), 80, "{out}");
    assert_eq!(listed.more, None, "{out}");
    let listed_keys: BTreeSet<String> = listed.rows.iter().map(|l| l.key.clone()).collect();
    assert_eq!(listed_keys, bad, "ferry rejects lists other keys: {out}");
    for l in &listed.rows {
        let want = if check.contains(&l.key) {
            "23514"
        } else {
            "22001"
        };
        assert_eq!(
            l.sqlstate, want,
            "ferry rejects line for key {}: {l:?}",
            l.key
        );
        let want = if check.contains(&l.key) {
            "amount_not_negative"
        } else {
            "value too long"
        };
        assert!(
            l.rest.contains(want),
            "ferry rejects line for key {}: {l:?}",
            l.key
        );
        assert!(
            per_chunk.contains_key(&(l.chunk as i32)),
            "ferry rejects names chunk {} which rejected nothing: {l:?}",
            l.chunk
        );
    }
    let short = cluster.rejects(&job, 5);
    assert_eq!(
        (short.total, short.rows.len()),
        (80, 5),
        "--limit 5: {}",
        short.output
    );
    assert_eq!(
        short.more,
        Some(75),
        "--limit 5 should say what it left out: {}",
        short.output
    );
}

/// Waits until no ferry session on the target is inside a transaction, so a
/// failed job's chunks in flight have rolled back (or committed) for good.
async fn settle(target: &tokio_postgres::Client) {
    let open = wait_no_open_ferry_transactions(target, DST_DB, Duration::from_secs(10)).await;
    assert_eq!(
        open, 0,
        "ferry sessions still in a transaction on the target 10 s after the job failed"
    );
}

/// Runs the bad data into `table` with `limit_flag value`: the job must fail,
/// say which limit it passed, and leave in the target exactly what its ledger says.
async fn assert_limit_fails(
    cluster: &Cluster,
    table: &str,
    limit_flag: &str,
    value: &str,
    word: &str,
) {
    let out = cluster.submit_watch(
        &Submit::new(ITEMS_QUERY, table)
            .chunk_size(CHUNK_SIZE)
            .flag(limit_flag, value),
    );
    assert!(
        !out.success(),
        "{limit_flag} {value} with 80 bad rows must fail the job: {out}"
    );
    let job = out.job_id();
    assert!(
        out.stderr.contains(&format!("job {job} FAILED")) && out.stderr.contains(word),
        "the failure should say `{word}`: {out}"
    );
    assert_eq!(cluster.state(&job), Ok(JobState::Failed));
    let status = cluster.status(&job);
    assert!(
        status.error.as_deref().is_some_and(|e| e.contains(word)),
        "ferry status should carry the reason `{word}`: {status:?}"
    );
    let target = cluster.dbs().target().await;
    settle(&target).await;
    let ledger = ledger_summary(&target, &job).await;
    assert!(
        ledger.rows_rejected > 10,
        "the job failed before passing the limit: {ledger:?}"
    );
    assert!(
        ledger.rows_written < 999_920,
        "the job wrote everything before failing: {ledger:?}"
    );
    assert_eq!(
        row_count(&target, table).await,
        ledger.rows_written,
        "{table} holds other rows than the ledger of failed job {job} says ({ledger:?})"
    );
    let rejects = rejects_count(&target, &job).await;
    assert_eq!(
        rejects, ledger.rows_rejected,
        "rejects table vs ledger for job {job}"
    );
    let log = cluster.job_log(&job);
    assert!(
        log.iter()
            .any(|l| l.contains(JOB_FAILED) && l.contains(word)),
        "the coordinator should log why the job failed:\n{}",
        log.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_past_the_job_limits_fail_the_job() {
    let cluster = Cluster::builder().workers(2).start().await;
    prepare(cluster.dbs()).await;
    assert_limit_fails(
        &cluster,
        "public.items_rows_limit",
        "--max-failed-rows",
        "10",
        "max_failed_rows",
    )
    .await;
    // 10 of 1,000,000 rows.
    assert_limit_fails(
        &cluster,
        "public.items_ratio_limit",
        "--max-failed-ratio",
        "0.00001",
        "max_failed_ratio",
    )
    .await;
}

//! Issue 5, verification and resume: `ferry verify` finds exactly the chunks
//! whose target rows were deleted or altered, `ferry repair` copies only those
//! again; a job failed by a target outage resumes after the target is back
//! and ends exact, with no chunk copied twice.

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_tests::data::{create_items_table, fill_items, row_count, ITEMS_COLUMNS};
use ferry_tests::ferry::CliOutput;
use ferry_tests::issue5::{exec, parse_verify, query_i64, slow_inserts, Ferry, LONG_CLI_TIMEOUT};
use ferry_tests::job::{
    is_chunk_completed_line, job_state, job_verb, ledger_summary, parse_start_line, wait_for_state,
    CLI_TIMEOUT, TERMINAL_STATES,
};
use ferry_tests::scenario::{Databases, ITEMS_QUERY, ITEMS_TABLE};

/// `(attempt, fencing_token, committed_at as text)` per chunk in the ledger.
async fn ledger_rows(
    target: &tokio_postgres::Client,
    job: &str,
) -> BTreeMap<i32, (i32, i64, String, i64)> {
    target
        .query(
            "SELECT chunk_no, attempt, fencing_token, committed_at::text, rows_written \
             FROM ferry.ledger WHERE job_id = $1",
            &[&job],
        )
        .await
        .expect("read ferry.ledger")
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4))))
        .collect()
}

/// `ferry repair` / `ferry resume` followed the job to SUCCEEDED: it exited
/// 0, printed the job id last (the state may precede it on that line) and its
/// closing summary says SUCCEEDED.
fn assert_reran_to_success(out: &CliOutput, job: &str) {
    assert!(out.success(), "{out}");
    assert!(
        out.last_line().is_some_and(|l| l.ends_with(job)),
        "the job id should be printed last: {out}"
    );
    assert!(
        out.all().contains(&format!("{job} SUCCEEDED"))
            || out.all().contains(&format!("SUCCEEDED {job}")),
        "the output should say the job SUCCEEDED: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_changed_chunks_and_repair_fixes_only_them() {
    const ROWS: u64 = 200_000;
    let dbs = Databases::one_cluster().await;
    dbs.prepare_items(ROWS).await;
    let ferry = Ferry::start(&dbs, &[], 2, 2);

    let out = ferry.submit_watch(ITEMS_QUERY, ITEMS_TABLE, &["--chunk-size", "20000"]);
    assert!(out.success(), "{out}");
    let job = out.last_line().expect("job id").to_string();
    dbs.assert_copied_exactly(ITEMS_TABLE).await;
    let (_, chunks) = parse_start_line(&ferry.coordinator.log()).expect("start line");
    assert!(
        chunks >= 5,
        "200,000 rows in chunks of 20,000 planned {chunks} chunks"
    );

    // A clean copy verifies clean.
    let clean = ferry.verb("verify", &job, &[], LONG_CLI_TIMEOUT);
    assert!(
        clean.success(),
        "verify after a clean copy must exit 0: {clean}"
    );
    assert!(
        clean.stdout.contains(&format!("all {chunks} chunks match")),
        "{clean}"
    );
    assert!(parse_verify(&clean.stdout).is_empty(), "{clean}");

    // Delete 10 rows in one chunk's range, alter one value in another's.
    let target = dbs.target().await;
    let deleted = target
        .execute("DELETE FROM items WHERE id BETWEEN 30001 AND 30010", &[])
        .await
        .expect("delete target rows");
    assert_eq!(deleted, 10);
    let altered = target
        .execute(
            "UPDATE items SET amount = amount + 1 WHERE id = 150000",
            &[],
        )
        .await
        .expect("alter a target row");
    assert_eq!(altered, 1);
    let before_repair = ledger_rows(&target, &job).await;

    let dirty = ferry.verb("verify", &job, &[], LONG_CLI_TIMEOUT);
    assert_eq!(
        dirty.status.code(),
        Some(1),
        "verify must exit 1 when chunks differ: {dirty}"
    );
    let diffs = parse_verify(&dirty.stdout);
    assert_eq!(
        diffs.len(),
        2,
        "exactly the two changed chunks should differ: {dirty}"
    );
    let del = diffs.iter().find(|d| d.contains(30001)).unwrap_or_else(|| {
        panic!("no reported chunk holds the deleted keys 30001..30010: {dirty}")
    });
    assert!(
        del.contains(30010),
        "deleted keys straddle two chunks? {del:?}"
    );
    assert_eq!(
        (del.source_rows, del.rejected),
        (del.target_rows + 10, 0),
        "the chunk with deleted rows: {del:?}"
    );
    let alt = diffs
        .iter()
        .find(|d| d.contains(150_000))
        .unwrap_or_else(|| panic!("no reported chunk holds the altered key 150000: {dirty}"));
    assert_ne!(del.chunk, alt.chunk, "{dirty}");
    assert_eq!(
        alt.source_rows, alt.target_rows,
        "the altered chunk has all its rows, only a value differs: {alt:?}"
    );
    assert!(
        del.chunk < alt.chunk,
        "chunks are numbered in key order: {dirty}"
    );
    // The ledger ties the chunk numbers to the ranges: what each chunk wrote
    // is the source's row count in the range verify reports for it.
    for d in [del, alt] {
        let written = before_repair
            .get(&(d.chunk as i32))
            .unwrap_or_else(|| panic!("chunk {} is not in the ledger", d.chunk))
            .3;
        assert_eq!(
            written as u64, d.source_rows,
            "ledger rows_written of chunk {} vs verify's source count: {d:?}",
            d.chunk
        );
    }
    assert!(
        dirty
            .stdout
            .contains(&format!("2 of {chunks} chunks differ")),
        "{dirty}"
    );

    // Repair copies those two chunks again, and only them.
    let repair = ferry.verb("repair", &job, &[], LONG_CLI_TIMEOUT);
    assert!(repair.success(), "repair must exit 0: {repair}");
    assert_reran_to_success(&repair, &job);
    assert!(
        ferry
            .job_log(&job)
            .iter()
            .any(|l| l.contains("job repair: running 2 chunks again")),
        "the coordinator should log a repair of 2 chunks:\n{}",
        ferry.coordinator.log_tail(30)
    );
    let after_repair = ledger_rows(&target, &job).await;
    assert_eq!(after_repair.len() as u64, chunks, "{after_repair:?}");
    for (chunk, before) in &before_repair {
        let after = &after_repair[chunk];
        let repaired = *chunk == del.chunk as i32 || *chunk == alt.chunk as i32;
        if repaired {
            assert_ne!(before, after, "chunk {chunk} was not copied again");
        } else {
            assert_eq!(
                before, after,
                "chunk {chunk} did not differ but was copied again"
            );
        }
    }

    let again = ferry.verb("verify", &job, &[], LONG_CLI_TIMEOUT);
    assert!(again.success(), "verify after repair must exit 0: {again}");
    assert!(
        again.stdout.contains(&format!("all {chunks} chunks match")),
        "{again}"
    );
    dbs.assert_copied_exactly(ITEMS_TABLE).await;
    let ledger = ledger_summary(&target, &job).await;
    assert_eq!(ledger.rows_written, ROWS as i64, "{ledger:?}");
    assert_eq!(job_state(&ferry.url, &job).as_deref(), Ok("SUCCEEDED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_target_outage_lands_every_chunk_once() {
    const ROWS: u64 = 400_000;
    let dbs = Databases::two_clusters().await;
    let source = dbs.source().await;
    create_items_table(&source, "public.items").await;
    fill_items(&source, "public.items", ROWS).await;
    let target = dbs.target().await;
    // No primary key on the target: a chunk landing twice leaves duplicates.
    exec(
        &target,
        &format!(
            "CREATE TABLE public.items ({})",
            ITEMS_COLUMNS.replace(" primary key", "")
        ),
    )
    .await;
    slow_inserts(&target, "public.items", 400).await;
    drop(target);

    let ferry = Ferry::start(&dbs, &[], 1, 2);
    let job = ferry.submit(
        ITEMS_QUERY,
        ITEMS_TABLE,
        &[
            "--chunk-size",
            "20000",
            "--key",
            "id",
            "--max-retries",
            "1",
            "--retry-initial-delay-ms",
            "200",
            "--retry-max-delay-ms",
            "500",
        ],
    );
    ferry
        .coordinator
        .wait_for_line(is_chunk_completed_line, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no chunk completed: {}", ferry.coordinator.log_tail(30)));
    dbs.target_cluster().stop();
    let state = wait_for_state(&ferry.url, &job, &TERMINAL_STATES, Duration::from_secs(60));
    assert_eq!(
        state,
        "FAILED",
        "with the target down the job must fail; coordinator log:\n{}",
        ferry.coordinator.log_tail(30)
    );
    let status = job_verb("status", &ferry.url, &job, CLI_TIMEOUT);
    assert!(
        status.stdout.contains("error:"),
        "a failed job says why: {status}"
    );

    dbs.target_cluster().start_again();
    let target = dbs.target().await;
    let (_, chunks) = parse_start_line(&ferry.coordinator.log()).expect("start line");
    let before = ledger_summary(&target, &job).await;
    let before_rows = ledger_rows(&target, &job).await;
    assert!(
        before.rows > 0 && (before.rows as u64) < chunks,
        "the outage should land mid-job: {} of {chunks} chunks landed before it ({before:?})",
        before.rows
    );
    assert_eq!(
        row_count(&target, ITEMS_TABLE).await,
        before.rows_written,
        "before resume the target holds exactly the landed chunks ({before:?})"
    );

    let resume = ferry.verb("resume", &job, &[], LONG_CLI_TIMEOUT);
    assert!(
        resume.success(),
        "resume must exit 0 once the target is back: {resume}\ncoordinator log:\n{}",
        ferry.coordinator.log_tail(30)
    );
    assert_reran_to_success(&resume, &job);
    assert_eq!(job_state(&ferry.url, &job).as_deref(), Ok("SUCCEEDED"));
    let rerun: u64 = ferry
        .job_log(&job)
        .iter()
        .find_map(|l| {
            l.split_once("job resume: running ")
                .and_then(|(_, r)| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("no `job resume: running N chunks again` line"));
    assert!(
        rerun >= chunks - before.rows as u64 && rerun < chunks,
        "resume ran {rerun} chunks; {} of {chunks} had landed",
        before.rows
    );

    // Exact, and no chunk twice.
    dbs.assert_copied_exactly(ITEMS_TABLE).await;
    let dupes = query_i64(
        &target,
        "SELECT count(*) - count(DISTINCT id) FROM public.items",
    )
    .await;
    assert_eq!(dupes, 0, "rows landed twice");
    let ledger = ledger_summary(&target, &job).await;
    assert_eq!(ledger.rows, chunks as i64, "{ledger:?}");
    assert_eq!(ledger.distinct_chunks, chunks as i64, "{ledger:?}");
    assert_eq!(ledger.rows_written, ROWS as i64, "{ledger:?}");
    let after_rows = ledger_rows(&target, &job).await;
    for (chunk, row) in &before_rows {
        assert_eq!(
            Some(row),
            after_rows.get(chunk),
            "chunk {chunk} had landed before the outage but was copied again"
        );
    }
}

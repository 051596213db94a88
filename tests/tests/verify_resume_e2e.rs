//! Verification and resume: `ferry verify` finds exactly the chunks
//! whose target rows were deleted or altered, `ferry repair` copies only those
//! again; a job failed by a target outage resumes after the target is back
//! and ends exact, with no chunk copied twice.

use std::time::Duration;

use ferry_tests::cli::{CliOutput, Submit};
use ferry_tests::cli_output::JobState;
use ferry_tests::cluster::Cluster;
use ferry_tests::data::{
    create_items_table, create_items_table_without_key, fill_items, row_count, slow_down_inserts,
};
use ferry_tests::databases::{Pg, ITEMS_TABLE};
use ferry_tests::ledger::{ledger_rows, ledger_summary};
use ferry_tests::log_lines::{is_chunk_completed_line, parse_start_line};
use ferry_tests::sql::query_i64;

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
    let cluster = Cluster::builder().workers(2).start().await;
    let dbs = cluster.dbs();
    dbs.prepare_items(ROWS).await;

    let out = cluster.submit_watch(&Submit::items().chunk_size(20_000));
    assert!(out.success(), "{out}");
    let job = out.job_id();
    dbs.assert_copied_exactly(ITEMS_TABLE).await;
    let (_, chunks) = parse_start_line(&cluster.coordinator(0).log()).expect("start line");
    assert!(
        chunks >= 5,
        "200,000 rows in chunks of 20,000 planned {chunks} chunks"
    );

    // A clean copy verifies clean.
    let clean = cluster.verify(&job);
    assert!(
        clean.output.success(),
        "verify after a clean copy must exit 0: {}",
        clean.output
    );
    assert_eq!(clean.all_match, Some(chunks), "{}", clean.output);
    assert!(clean.diffs.is_empty(), "{}", clean.output);

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

    let verified = cluster.verify(&job);
    let dirty = &verified.output;
    assert_eq!(
        dirty.status.code(),
        Some(1),
        "verify must exit 1 when chunks differ: {dirty}"
    );
    let diffs = &verified.diffs;
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
            .rows_written;
        assert_eq!(
            written as u64, d.source_rows,
            "ledger rows_written of chunk {} vs verify's source count: {d:?}",
            d.chunk
        );
    }
    assert_eq!(verified.differ, Some((2, chunks)), "{dirty}");
    assert_eq!(verified.all_match, None, "{dirty}");

    // Repair copies those two chunks again, and only them.
    let repair = cluster.repair(&job);
    assert!(repair.success(), "repair must exit 0: {repair}");
    assert_reran_to_success(&repair, &job);
    assert!(
        cluster
            .job_log(&job)
            .iter()
            .any(|l| l.contains("job repair: running 2 chunks again")),
        "the coordinator should log a repair of 2 chunks:\n{}",
        cluster.coordinator(0).log_tail(30)
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

    let again = cluster.verify(&job);
    assert!(
        again.output.success(),
        "verify after repair must exit 0: {}",
        again.output
    );
    assert_eq!(again.all_match, Some(chunks), "{}", again.output);
    dbs.assert_copied_exactly(ITEMS_TABLE).await;
    let ledger = ledger_summary(&target, &job).await;
    assert_eq!(ledger.rows_written, ROWS as i64, "{ledger:?}");
    assert_eq!(cluster.state(&job), Ok(JobState::Succeeded));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_target_outage_lands_every_chunk_once() {
    const ROWS: u64 = 400_000;
    let cluster = Cluster::builder()
        .postgres(Pg::TwoClusters)
        .workers(1)
        .start()
        .await;
    let dbs = cluster.dbs();
    let source = dbs.source().await;
    create_items_table(&source, "public.items").await;
    fill_items(&source, "public.items", ROWS).await;
    let target = dbs.target().await;
    // No primary key on the target: a chunk landing twice leaves duplicates.
    create_items_table_without_key(&target, "public.items").await;
    slow_down_inserts(&target, "public.items", 400).await;
    drop(target);

    let job = cluster.submit(&Submit::items().chunk_size(20_000).args(&[
        "--key",
        "id",
        "--max-retries",
        "1",
        "--retry-initial-delay-ms",
        "200",
        "--retry-max-delay-ms",
        "500",
    ]));
    let coordinator = cluster.coordinator(0);
    coordinator.expect_line(
        is_chunk_completed_line,
        Duration::from_secs(60),
        "a completed chunk",
    );
    dbs.target_cluster().stop();
    let state = cluster.wait_terminal(&job, Duration::from_secs(60));
    assert_eq!(
        state,
        Ok(JobState::Failed),
        "with the target down the job must fail; coordinator log:\n{}",
        coordinator.log_tail(30)
    );
    let status = cluster.status(&job);
    assert!(
        status.error.as_deref().is_some_and(|e| !e.is_empty()),
        "a failed job says why: {status:?}"
    );

    dbs.target_cluster().start_again();
    let target = dbs.target().await;
    let (_, chunks) = parse_start_line(&coordinator.log()).expect("start line");
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

    let resume = cluster.resume(&job);
    assert!(
        resume.success(),
        "resume must exit 0 once the target is back: {resume}\ncoordinator log:\n{}",
        coordinator.log_tail(30)
    );
    assert_reran_to_success(&resume, &job);
    assert_eq!(cluster.state(&job), Ok(JobState::Succeeded));
    let rerun: u64 = cluster
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

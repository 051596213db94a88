//! Issue 14 item 1, repair of a job split on `ctid` block ranges: the
//! target's rows cannot be mapped back to source blocks, so in the modes that
//! empty the target anyway (truncate, replace) `ferry repair` starts the copy
//! over (target emptied, ledger forgotten, every chunk copied again) and ends
//! exact (a truncate and a replace job); in append mode it refuses and says
//! what to do.

use std::time::Duration;

use ferry_tests::cli::Submit;
use ferry_tests::cli_output::JobState;
use ferry_tests::cluster::Cluster;
use ferry_tests::data::{create_items_table_without_key, fill_items, table_checksum};
use ferry_tests::ledger::ledger_summary;

/// Fail-safe for a job to finish.
const JOB_TIMEOUT: Duration = Duration::from_secs(300);
/// Rows of the keyless table: several chunks of `CHUNK` rows.
const ROWS: u64 = 200_000;
/// Rows a chunk aims at.
const CHUNK: u64 = 40_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_of_a_keyless_job_starts_over_or_refuses_by_mode() {
    let cluster = Cluster::builder().workers(2).start().await;
    let (source, target) = (cluster.dbs().source().await, cluster.dbs().target().await);
    create_items_table_without_key(&source, "public.heap").await;
    fill_items(&source, "public.heap", ROWS).await;
    for t in [
        "public.heap",
        "public.heap_appended",
        "public.heap_replaced",
    ] {
        create_items_table_without_key(&target, t).await;
    }
    let truncate = cluster.submit(
        &Submit::new("SELECT * FROM heap", "public.heap")
            .chunk_size(CHUNK)
            .flag("--mode", "truncate"),
    );
    assert_eq!(
        cluster.wait_terminal(&truncate, JOB_TIMEOUT),
        Ok(JobState::Succeeded)
    );
    let chunks = cluster.status(&truncate).chunks_total;
    assert!(chunks >= 2, "the keyless table split into {chunks} chunks");
    let expected = table_checksum(&source, "public.heap").await;

    // rows deleted from the target: verify sees it, repair copies it over
    target
        .batch_execute("DELETE FROM heap WHERE id % 1000 = 7")
        .await
        .expect("delete target rows");
    let v = cluster.verify(&truncate);
    assert_eq!(v.differ, Some((1, 1)), "{}", v.output);
    let repair = cluster.repair(&truncate);
    assert!(repair.success(), "repair of a truncate ctid job: {repair}");
    assert_eq!(
        cluster.wait_terminal(&truncate, JOB_TIMEOUT),
        Ok(JobState::Succeeded),
        "coordinator log:\n{}",
        cluster.coordinator(0).log_tail(40)
    );
    assert_eq!(table_checksum(&target, "public.heap").await, expected);
    let v = cluster.verify(&truncate);
    assert_eq!(v.all_match, Some(1), "{}", v.output);
    let ledger = ledger_summary(&target, &truncate).await;
    assert_eq!(ledger.distinct_chunks, chunks as i64, "{ledger:?}");
    assert_eq!(ledger.rows, ledger.distinct_chunks, "{ledger:?}");
    assert!(
        cluster
            .coordinator(0)
            .logs()
            .join("\n")
            .contains("job started over for repair"),
        "the coordinator logs the start-over"
    );

    // replace: the swapped-in table is emptied and copied again
    let replace = cluster.submit(
        &Submit::new("SELECT * FROM heap", "public.heap_replaced")
            .chunk_size(CHUNK)
            .flag("--mode", "replace"),
    );
    assert_eq!(
        cluster.wait_terminal(&replace, JOB_TIMEOUT),
        Ok(JobState::Succeeded)
    );
    target
        .batch_execute("DELETE FROM heap_replaced WHERE id % 1000 = 7")
        .await
        .expect("delete target rows");
    let repair = cluster.repair(&replace);
    assert!(repair.success(), "repair of a replace ctid job: {repair}");
    assert_eq!(
        cluster.wait_terminal(&replace, JOB_TIMEOUT),
        Ok(JobState::Succeeded)
    );
    assert_eq!(
        table_checksum(&target, "public.heap_replaced").await,
        expected
    );

    // append keeps the target's other rows: repair refuses and says why
    let append = cluster
        .submit(&Submit::new("SELECT * FROM heap", "public.heap_appended").chunk_size(CHUNK));
    assert_eq!(
        cluster.wait_terminal(&append, JOB_TIMEOUT),
        Ok(JobState::Succeeded)
    );
    target
        .batch_execute("DELETE FROM heap_appended WHERE id % 1000 = 7")
        .await
        .expect("delete target rows");
    let repair = cluster.repair(&append);
    assert!(!repair.success(), "repair of an append ctid job: {repair}");
    let said = repair.all();
    assert!(
        said.contains("ctid")
            && said.contains("cannot start over")
            && said.contains("--mode truncate"),
        "{repair}"
    );
}

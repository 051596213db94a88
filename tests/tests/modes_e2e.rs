//! Write modes: `upsert` twice leaves one copy of each row with the latest
//! values (and refuses a key without a unique index); `truncate` replaces
//! what an earlier job left; `replace` keeps the old table readable until it
//! swaps the new one in, with its keys, indexes, constraints and storage
//! options.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_tests::cli::Submit;
use ferry_tests::cli_output::JobState;
use ferry_tests::cluster::Cluster;
use ferry_tests::data::{create_items_table, fill_items, row_count};
use ferry_tests::databases::ITEMS_TABLE;
use ferry_tests::ledger::ledger_summary;
use ferry_tests::sql::{exec, query_i64};

// ---------------------------------------------------------------- upsert and truncate

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_twice_keeps_one_copy_with_the_latest_values() {
    const ROWS: u64 = 200_000;
    let cluster = Cluster::builder().workers(2).start().await;
    let dbs = cluster.dbs();
    dbs.prepare_items(ROWS).await;
    let target = dbs.target().await;

    // An upsert key without a unique index, or none at all, fails at planning.
    let out = cluster.submit_watch(
        &Submit::items()
            .flag("--mode", "upsert")
            .flag("--upsert-key", "customer_id"),
    );
    assert!(
        !out.success(),
        "upsert on a non-unique column must fail: {out}"
    );
    assert!(
        out.stderr.contains("customer_id") && out.stderr.contains("unique index"),
        "the failure should name the upsert key and the missing unique index: {out}"
    );
    let out = cluster.submit_watch(&Submit::items().flag("--mode", "upsert"));
    assert!(
        !out.success(),
        "upsert without --upsert-key must fail: {out}"
    );
    assert!(out.stderr.contains("--upsert-key"), "{out}");
    assert_eq!(
        row_count(&target, ITEMS_TABLE).await,
        0,
        "a failed plan wrote rows"
    );

    let upsert = Submit::items()
        .flag("--mode", "upsert")
        .flag("--upsert-key", "id")
        .chunk_size(20_000);
    let first = cluster.submit_watch(&upsert);
    assert!(first.success(), "first upsert: {first}");
    dbs.assert_copied_exactly(ITEMS_TABLE).await;

    // Change values of 1 row in 10 and notes of others, and add rows.
    let source = dbs.source().await;
    exec(
        &source,
        "UPDATE items SET amount = amount + 1000, status = 'updated' WHERE id % 10 = 0;
         UPDATE items SET note = 'second run ' || id WHERE id % 7 = 3;
         INSERT INTO items (id, customer_id, amount, status, note, created_at)
         SELECT g, g % 100, g / 10.0, 'added', NULL, timestamptz '2025-01-01 00:00:00+00'
           FROM generate_series(200001, 201000) AS g;
         ANALYZE items",
    )
    .await;
    let second = cluster.submit_watch(&upsert);
    assert!(second.success(), "second upsert: {second}");
    let job2 = second.job_id();

    assert_eq!(
        row_count(&target, ITEMS_TABLE).await,
        201_000,
        "one copy of each source row"
    );
    dbs.assert_copied_exactly(ITEMS_TABLE).await;
    let updated = query_i64(
        &target,
        "SELECT count(*) FROM items WHERE status = 'updated' AND id % 10 = 0",
    )
    .await;
    assert_eq!(updated, 20_000, "the changed rows carry the new values");
    let ledger = ledger_summary(&target, &job2).await;
    assert_eq!(ledger.rows_written, 201_000, "{ledger:?}");
    assert_eq!(ledger.rows_rejected, 0, "{ledger:?}");

    // Mode truncate replaces what an earlier job left.
    exec(&source, "DELETE FROM items WHERE id % 3 = 0").await;
    let out = cluster.submit_watch(
        &Submit::items()
            .flag("--mode", "truncate")
            .chunk_size(20_000),
    );
    assert!(out.success(), "truncate: {out}");
    dbs.assert_copied_exactly(ITEMS_TABLE).await;
}

// ---------------------------------------------------------------- replace

/// One read of the target during a replace job.
#[derive(Debug)]
struct Read {
    at: Instant,
    /// `count(*)` of the target table, or the error.
    items: Result<i64, String>,
    /// Rows and indexes of the load table `items__ferry_<job>`, when it exists.
    load: Option<(i64, i64)>,
}

/// Reads the target every 20 ms until `stop`: the table's count, and the load
/// table's rows and indexes.
async fn poll_target(client: tokio_postgres::Client, stop: Arc<AtomicBool>) -> Vec<Read> {
    let mut reads = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let items = client
            .query_one("SELECT count(*) FROM public.items", &[])
            .await
            .map(|r| r.get::<_, i64>(0))
            .map_err(|e| format!("{e:?}"));
        let load = async {
            let name: String = client
                .query_opt(
                    "SELECT relname::text FROM pg_class \
                     WHERE relname LIKE 'items\\_\\_ferry\\_%' AND relkind = 'r'",
                    &[],
                )
                .await
                .ok()??
                .get(0);
            let row = client
                .query_one(
                    &format!(
                        "SELECT (SELECT count(*) FROM public.\"{name}\"), \
                                (SELECT count(*) FROM pg_index WHERE indrelid = 'public.\"{name}\"'::regclass)"
                    ),
                    &[],
                )
                .await
                .ok()?;
            Some((row.get::<_, i64>(0), row.get::<_, i64>(1)))
        }
        .await;
        reads.push(Read {
            at: Instant::now(),
            items,
            load,
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_keeps_the_old_table_readable_until_the_swap() {
    const ROWS: u64 = 1_000_000;
    const OLD_ROWS: i64 = 5_000;
    let cluster = Cluster::builder().workers(2).start().await;
    let dbs = cluster.dbs();
    let source = dbs.source().await;
    create_items_table(&source, "public.items").await;
    fill_items(&source, "public.items", ROWS).await;
    let target = dbs.target().await;
    create_items_table(&target, "public.items").await;
    exec(
        &target,
        &format!(
            "ALTER TABLE public.items ADD CONSTRAINT amount_not_negative CHECK (amount >= 0);
             CREATE INDEX items_customer_idx ON public.items (customer_id);
             CREATE UNIQUE INDEX items_created_uidx ON public.items (created_at, id);
             ALTER TABLE public.items SET (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.05);
             INSERT INTO public.items (id, customer_id, amount, status, note, created_at)
             SELECT g, 1, 1, 'old', 'old row', now() FROM generate_series(1, {OLD_ROWS}) AS g"
        ),
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn(poll_target(dbs.target().await, Arc::clone(&stop)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let job = cluster.submit(&Submit::items().flag("--mode", "replace").chunk_size(50_000));
    let state = cluster.wait_terminal(&job, Duration::from_secs(90));
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let mut reads = poller.await.expect("poller task");
    // One last read once the job is over, whatever the poller's pace.
    reads.push(Read {
        at: Instant::now(),
        items: target
            .query_one("SELECT count(*) FROM public.items", &[])
            .await
            .map(|r| r.get::<_, i64>(0))
            .map_err(|e| format!("{e:?}")),
        load: None,
    });
    assert_eq!(
        state,
        Ok(JobState::Succeeded),
        "replace job; coordinator log:\n{}",
        cluster.coordinator(0).log_tail(30)
    );

    // Every read succeeded and saw the old table, then the new one, nothing else.
    let failed: Vec<&Read> = reads.iter().filter(|r| r.items.is_err()).collect();
    assert!(
        failed.is_empty(),
        "reads of the target failed during the replace: {failed:?}"
    );
    let counts: Vec<i64> = reads.iter().map(|r| *r.items.as_ref().unwrap()).collect();
    let odd: Vec<i64> = counts
        .iter()
        .copied()
        .filter(|c| *c != OLD_ROWS && *c != ROWS as i64)
        .collect();
    assert!(
        odd.is_empty(),
        "readers saw a half-loaded table: counts other than {OLD_ROWS} (old) or {ROWS} (new): {odd:?}"
    );
    let first_new = counts
        .iter()
        .position(|c| *c == ROWS as i64)
        .expect("the new table was never seen");
    assert!(
        counts[first_new..].iter().all(|c| *c == ROWS as i64),
        "the old table came back after the swap: {counts:?}"
    );
    let old_while_loading = reads[..first_new]
        .iter()
        .filter(|r| r.load.is_some_and(|(rows, _)| rows > 0))
        .count();
    eprintln!(
        "replace: {} reads, {} of the old table while the new one held rows, the new table first seen {:?} after the first read",
        reads.len(),
        old_while_loading,
        reads[first_new].at - reads[0].at
    );
    assert!(
        old_while_loading >= 3,
        "the test should read the old table while the new one fills ({old_while_loading} such reads of {}): \
         the load finished too fast to show anything",
        reads.len()
    );
    let indexed_load: Vec<&Read> = reads
        .iter()
        .filter(|r| r.load.is_some_and(|(_, idx)| idx > 0))
        .collect();
    assert!(
        indexed_load.is_empty(),
        "the load table had indexes while rows were loading: {indexed_load:?}"
    );

    // The new rows, with the old table's key, indexes and constraints; no leftovers.
    dbs.assert_copied_exactly(ITEMS_TABLE).await;
    let indexes: BTreeSet<String> = target
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'items'",
            &[],
        )
        .await
        .expect("read pg_indexes")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let want: BTreeSet<String> = ["items_pkey", "items_customer_idx", "items_created_uidx"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(indexes, want, "indexes of the swapped-in table");
    let invalid = query_i64(
        &target,
        "SELECT count(*) FROM pg_index WHERE indrelid = 'public.items'::regclass AND NOT indisvalid",
    )
    .await;
    assert_eq!(invalid, 0, "invalid indexes on the swapped-in table");
    let constraints: BTreeSet<(String, String)> = target
        .query(
            "SELECT conname::text, contype::text FROM pg_constraint WHERE conrelid = 'public.items'::regclass",
            &[],
        )
        .await
        .expect("read pg_constraint")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for c in [("items_pkey", "p"), ("amount_not_negative", "c")] {
        assert!(
            constraints.contains(&(c.0.to_string(), c.1.to_string())),
            "constraint {c:?} missing on the swapped-in table: {constraints:?}"
        );
    }
    let unique_ok = target
        .execute(
            "INSERT INTO public.items SELECT * FROM public.items WHERE id = 1",
            &[],
        )
        .await;
    assert!(
        unique_ok.is_err(),
        "the swapped-in table accepted a duplicate primary key"
    );
    // The target's storage options survive; autovacuum, off while loading, is
    // back to the target's setting; the new table has statistics.
    let options: Vec<String> = target
        .query_one(
            "SELECT coalesce(reloptions, '{}') FROM pg_class WHERE oid = 'public.items'::regclass",
            &[],
        )
        .await
        .expect("read reloptions")
        .get(0);
    assert_eq!(
        options,
        vec![
            "fillfactor=80".to_string(),
            "autovacuum_vacuum_scale_factor=0.05".to_string()
        ],
        "storage options of the swapped-in table"
    );
    let analyzed = query_i64(
        &target,
        "SELECT count(*) FROM pg_stats WHERE schemaname = 'public' AND tablename = 'items'",
    )
    .await;
    assert!(
        analyzed >= 6,
        "the swapped-in table has no statistics ({analyzed} pg_stats rows)"
    );
    let leftovers: Vec<String> = target
        .query(
            "SELECT relname::text FROM pg_class WHERE relname LIKE '%\\_\\_ferry\\_%'",
            &[],
        )
        .await
        .expect("read pg_class")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(leftovers.is_empty(), "tables left over: {leftovers:?}");
    assert!(
        cluster
            .job_log(&job)
            .iter()
            .any(|l| l.contains("new table swapped in")),
        "{}",
        cluster.coordinator(0).log_tail(20)
    );
}

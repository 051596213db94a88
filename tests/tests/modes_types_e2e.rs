//! Issue 5, write modes and type differences: `upsert` twice leaves one copy
//! of each row with the latest values; `replace` keeps the old table readable
//! until it swaps the new one in, with its keys and indexes; source columns
//! whose types differ from the target's are cast, refused row by row, or
//! refused at planning with a message naming the column and both types.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_tests::data::{create_items_table, fill_items, row_count};
use ferry_tests::issue5::{exec, query_i64, table_exists, Ferry, LONG_CLI_TIMEOUT};
use ferry_tests::job::{
    is_chunk_completed_line, job_state, ledger_summary, wait_for_state, TERMINAL_STATES,
};
use ferry_tests::scenario::{Databases, ITEMS_QUERY, ITEMS_TABLE};

// ---------------------------------------------------------------- upsert

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_twice_keeps_one_copy_with_the_latest_values() {
    const ROWS: u64 = 200_000;
    let dbs = Databases::one_cluster().await;
    dbs.prepare_items(ROWS).await;
    let ferry = Ferry::start(&dbs, &[], 2, 2);
    let target = dbs.target().await;

    // An upsert key without a unique index, or none at all, fails at planning.
    let out = ferry.submit_watch(
        ITEMS_QUERY,
        ITEMS_TABLE,
        &["--mode", "upsert", "--upsert-key", "customer_id"],
    );
    assert!(
        !out.success(),
        "upsert on a non-unique column must fail: {out}"
    );
    assert!(
        out.stderr.contains("customer_id") && out.stderr.contains("unique index"),
        "the failure should name the upsert key and the missing unique index: {out}"
    );
    let out = ferry.submit_watch(ITEMS_QUERY, ITEMS_TABLE, &["--mode", "upsert"]);
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

    let upsert = [
        "--mode",
        "upsert",
        "--upsert-key",
        "id",
        "--chunk-size",
        "20000",
    ];
    let first = ferry.submit_watch(ITEMS_QUERY, ITEMS_TABLE, &upsert);
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
    let second = ferry.submit_watch(ITEMS_QUERY, ITEMS_TABLE, &upsert);
    assert!(second.success(), "second upsert: {second}");
    let job2 = second.last_line().expect("job id").to_string();

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
    let out = ferry.submit_watch(
        ITEMS_QUERY,
        ITEMS_TABLE,
        &["--mode", "truncate", "--chunk-size", "20000"],
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
    let dbs = Databases::one_cluster().await;
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
    let ferry = Ferry::start(&dbs, &[], 2, 2);

    let stop = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn(poll_target(dbs.target().await, Arc::clone(&stop)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let job = ferry.submit(
        ITEMS_QUERY,
        ITEMS_TABLE,
        &["--mode", "replace", "--chunk-size", "50000"],
    );
    let state = wait_for_state(&ferry.url, &job, &TERMINAL_STATES, Duration::from_secs(90));
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
        "SUCCEEDED",
        "replace job; coordinator log:\n{}",
        ferry.coordinator.log_tail(30)
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
        ferry
            .job_log(&job)
            .iter()
            .any(|l| l.contains("new table swapped in")),
        "{}",
        ferry.coordinator.log_tail(20)
    );
}

// ---------------------------------------------------------------- source scans

/// A source stored in key order is read by bitmap heap scans (the planner
/// says so); a shuffled one keeps PostgreSQL's own plan; both land exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_ordered_sources_are_read_by_bitmap_scans() {
    let dbs = Databases::one_cluster().await;
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
    let ferry = Ferry::start(&dbs, &[], 2, 2);
    for (table, bitmap) in [("public.items", true), ("public.shuffled", false)] {
        let job = ferry.submit(
            &format!("SELECT * FROM {table}"),
            table,
            &["--chunk-size", "20000"],
        );
        let state = wait_for_state(&ferry.url, &job, &TERMINAL_STATES, Duration::from_secs(60));
        assert_eq!(
            state,
            "SUCCEEDED",
            "{table}: {}",
            ferry.coordinator.log_tail(20)
        );
        let planned = ferry
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

// ---------------------------------------------------------------- types

const TYPES_ROWS: i64 = 20_000;

/// Keys whose `s` is not an integer.
const NOT_NUMERIC: [i64; 6] = [1, 777, 778, 5_000, 12_345, 20_000];

/// Source `types_src(id, i int4, t text, n numeric, s text, j jsonb)` with
/// edge values on ids 1..6.
async fn prepare_types(dbs: &Databases) {
    let source = dbs.source().await;
    exec(
        &source,
        &format!(
            "CREATE TABLE types_src (id bigint primary key, i int4, t text, n numeric, s text, j jsonb);
             INSERT INTO types_src
             SELECT g,
                    CASE g WHEN 1 THEN 2147483647 WHEN 2 THEN -2147483648 WHEN 3 THEN NULL
                           ELSE (g * 7919) % 1000000 - 500000 END,
                    CASE g WHEN 3 THEN NULL WHEN 4 THEN repeat('x', 50) ELSE 'text ' || g || ' über' END,
                    CASE g WHEN 3 THEN NULL WHEN 5 THEN 0.1 WHEN 6 THEN 12345678.5 ELSE g * 1.25 END,
                    CASE WHEN g = 778 THEN ''
                         WHEN g = 12345 THEN '12.5'
                         WHEN g IN ({bad}) THEN 'n/a ' || g
                         ELSE g::text END,
                    CASE WHEN g % 5 = 0 THEN to_jsonb(g) ELSE jsonb_build_object('k', g, 'v', 'x') END
               FROM generate_series(1, {TYPES_ROWS}) AS g;
             ANALYZE types_src",
            bad = NOT_NUMERIC.map(|k| k.to_string()).join(", ")
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn int4_text_numeric_into_int8_varchar_double_are_cast() {
    let dbs = Databases::one_cluster().await;
    prepare_types(&dbs).await;
    let target = dbs.target().await;
    exec(
        &target,
        "CREATE TABLE public.types_a (id bigint primary key, i int8, t varchar(50), n double precision)",
    )
    .await;
    let ferry = Ferry::start(&dbs, &[], 1, 2);
    let out = ferry.submit_watch(
        "SELECT id, i, t, n FROM types_src",
        "public.types_a",
        &["--chunk-size", "5000", "--min-rows-for-parallel", "0"],
    );
    assert!(out.success(), "{out}\n{}", ferry.coordinator.log_tail(20));
    let job = out.last_line().expect("job id").to_string();

    assert_eq!(row_count(&target, "public.types_a").await, TYPES_ROWS);
    let ledger = ledger_summary(&target, &job).await;
    assert_eq!(ledger.rows_rejected, 0, "{ledger:?}");
    assert!(ledger.rows >= 4, "expected several chunks: {ledger:?}");

    let row = |id: i64| {
        let target = &target;
        async move {
            target
                .query_one("SELECT i, t, n FROM public.types_a WHERE id = $1", &[&id])
                .await
                .unwrap_or_else(|e| panic!("read types_a id {id}: {e}"))
        }
    };
    let r = row(1).await;
    assert_eq!(r.get::<_, Option<i64>>(0), Some(2_147_483_647));
    let r = row(2).await;
    assert_eq!(r.get::<_, Option<i64>>(0), Some(-2_147_483_648));
    let r = row(3).await;
    assert_eq!(
        (
            r.get::<_, Option<i64>>(0),
            r.get::<_, Option<String>>(1),
            r.get::<_, Option<f64>>(2)
        ),
        (None, None, None),
        "NULLs stay NULL"
    );
    let r = row(4).await;
    assert_eq!(r.get::<_, Option<String>>(1), Some("x".repeat(50)));
    assert_eq!(row(5).await.get::<_, Option<f64>>(2), Some(0.1));
    assert_eq!(row(6).await.get::<_, Option<f64>>(2), Some(12_345_678.5));
    let r = row(100).await;
    assert_eq!(
        (
            r.get::<_, Option<i64>>(0),
            r.get::<_, Option<String>>(1),
            r.get::<_, Option<f64>>(2)
        ),
        (
            Some(291_900), // (100 * 7919) % 1,000,000 - 500,000
            Some("text 100 über".to_string()),
            Some(125.0)
        )
    );

    // Every row equals the source's cast to the target's types.
    let sum = "SELECT count(*), coalesce(sum(hashtext(v::text)::int8), 0)::text FROM ";
    let src = dbs
        .source()
        .await
        .query_one(
            &format!("{sum}(SELECT id, i::int8, t::varchar(50), n::float8 FROM types_src) v"),
            &[],
        )
        .await
        .expect("source digest");
    let dst = target
        .query_one(
            &format!("{sum}(SELECT id, i, t, n FROM public.types_a) v"),
            &[],
        )
        .await
        .expect("target digest");
    assert_eq!(
        (src.get::<_, i64>(0), src.get::<_, String>(1)),
        (dst.get::<_, i64>(0), dst.get::<_, String>(1)),
        "target rows differ from the source's cast to the target's types"
    );
    let verify = ferry.verb("verify", &job, &[], LONG_CLI_TIMEOUT);
    assert!(verify.success(), "verify of a cast copy: {verify}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_into_int4_rejects_exactly_the_non_numeric_rows() {
    let dbs = Databases::one_cluster().await;
    prepare_types(&dbs).await;
    let target = dbs.target().await;
    exec(
        &target,
        "CREATE TABLE public.types_b (id bigint primary key, v int4)",
    )
    .await;
    let ferry = Ferry::start(&dbs, &[], 1, 2);
    let out = ferry.submit_watch(
        "SELECT id, s AS v FROM types_src",
        "public.types_b",
        &["--chunk-size", "5000", "--min-rows-for-parallel", "0"],
    );
    assert!(
        out.success(),
        "non-numeric text rows are rejected, the job succeeds: {out}\n{}",
        ferry.coordinator.log_tail(20)
    );
    let job = out.last_line().expect("job id").to_string();

    let bad = NOT_NUMERIC.len() as i64;
    assert_eq!(row_count(&target, "public.types_b").await, TYPES_ROWS - bad);
    assert_eq!(
        query_i64(
            &target,
            "SELECT count(*) FROM public.types_b WHERE v IS DISTINCT FROM id"
        )
        .await,
        0,
        "good rows carry their value"
    );
    let rows = target
        .query(
            "SELECT key, sqlstate, message, row_text FROM ferry.rejects WHERE job_id = $1",
            &[&job],
        )
        .await
        .expect("read ferry.rejects");
    let keys: BTreeSet<String> = rows
        .iter()
        .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
        .collect();
    let want: BTreeSet<String> = NOT_NUMERIC.iter().map(i64::to_string).collect();
    assert_eq!(rows.len(), NOT_NUMERIC.len(), "rejects: {keys:?}");
    assert_eq!(keys, want, "rejected keys");
    for r in &rows {
        let (key, state, msg, text): (Option<String>, String, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        assert_eq!(state, "22P02", "key {key:?}: {msg}");
        assert!(
            msg.contains("invalid input syntax for type integer"),
            "key {key:?}: {msg}"
        );
        assert!(
            text.starts_with(&format!("{}\t", key.unwrap_or_default())),
            "{text:?}"
        );
    }
    let ledger = ledger_summary(&target, &job).await;
    assert!(ledger.rows >= 4, "expected several chunks: {ledger:?}");
    assert_eq!(ledger.rows_rejected, bad, "{ledger:?}");
    assert_eq!(ledger.rows_written, TYPES_ROWS - bad, "{ledger:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonb_into_int4_fails_at_planning_naming_column_and_types() {
    let dbs = Databases::one_cluster().await;
    prepare_types(&dbs).await;
    let target = dbs.target().await;
    exec(
        &target,
        "CREATE TABLE public.types_c (id bigint primary key, x int4)",
    )
    .await;
    let ferry = Ferry::start(&dbs, &[], 1, 2);
    let out = ferry.submit_watch(
        "SELECT id, j AS x FROM types_src",
        "public.types_c",
        &["--chunk-size", "5000", "--min-rows-for-parallel", "0"],
    );
    let job = out.last_line().expect("job id").to_string();
    let ledger = if table_exists(&target, "ferry", "ledger").await {
        Some(ledger_summary(&target, &job).await)
    } else {
        None
    };
    let rejected = if table_exists(&target, "ferry", "rejects").await {
        query_i64(
            &target,
            &format!("SELECT count(*) FROM ferry.rejects WHERE job_id = '{job}'"),
        )
        .await
    } else {
        0
    };
    let landed = row_count(&target, "public.types_c").await;
    let sample: Vec<String> = if rejected > 0 {
        target
            .query(
                "SELECT sqlstate || ' ' || message FROM ferry.rejects WHERE job_id = $1 \
                 GROUP BY 1 ORDER BY count(*) DESC LIMIT 3",
                &[&job],
            )
            .await
            .expect("sample rejects")
            .iter()
            .map(|r| r.get(0))
            .collect()
    } else {
        Vec::new()
    };
    assert!(
        !out.success(),
        "jsonb into int4 must fail at planning, but the job {} (target rows {landed}, rejects {rejected} {sample:?}, ledger {ledger:?}): {out}",
        job_state(&ferry.url, &job).unwrap_or_default()
    );
    assert!(
        out.stderr
            .contains("column 'x' is jsonb in the source but integer in the target"),
        "the failure should name the column and both types: {out}"
    );
    assert_eq!(landed, 0, "nothing may be written");
    assert_eq!(rejected, 0, "nothing may be rejected");
    assert!(
        ledger.as_ref().is_none_or(|l| l.rows == 0),
        "no chunk may run: {ledger:?}"
    );
    let log = ferry.job_log(&job);
    assert!(
        !log.iter().any(|l| is_chunk_completed_line(l))
            && !log
                .iter()
                .any(|l| l.contains("Starting parallel processing")),
        "the job must fail before any chunk runs:\n{}",
        log.join("\n")
    );
}

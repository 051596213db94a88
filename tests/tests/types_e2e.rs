//! Type differences between source and target: columns whose types differ
//! are cast by the server, refused row by row into `ferry.rejects`, or
//! refused at planning with a message naming the column and both types.

use std::collections::BTreeSet;

use ferry_tests::cli::Submit;
use ferry_tests::cluster::Cluster;
use ferry_tests::data::row_count;
use ferry_tests::databases::Databases;
use ferry_tests::ledger::{ledger_summary, rejects_count};
use ferry_tests::log_lines::{is_chunk_completed_line, JOB_STARTING};
use ferry_tests::sql::{exec, query_i64, table_exists};

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
    let cluster = Cluster::builder().workers(1).start().await;
    let dbs = cluster.dbs();
    prepare_types(dbs).await;
    let target = dbs.target().await;
    exec(
        &target,
        "CREATE TABLE public.types_a (id bigint primary key, i int8, t varchar(50), n double precision)",
    )
    .await;
    let out = cluster.submit_watch(
        &Submit::new("SELECT id, i, t, n FROM types_src", "public.types_a")
            .chunk_size(5_000)
            .flag("--min-rows-for-parallel", 0),
    );
    assert!(
        out.success(),
        "{out}\n{}",
        cluster.coordinator(0).log_tail(20)
    );
    let job = out.job_id();

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
    let verify = cluster.verify(&job);
    assert!(
        verify.output.success(),
        "verify of a cast copy: {}",
        verify.output
    );
    assert!(verify.diffs.is_empty(), "{}", verify.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_into_int4_rejects_exactly_the_non_numeric_rows() {
    let cluster = Cluster::builder().workers(1).start().await;
    let dbs = cluster.dbs();
    prepare_types(dbs).await;
    let target = dbs.target().await;
    exec(
        &target,
        "CREATE TABLE public.types_b (id bigint primary key, v int4)",
    )
    .await;
    let out = cluster.submit_watch(
        &Submit::new("SELECT id, s AS v FROM types_src", "public.types_b")
            .chunk_size(5_000)
            .flag("--min-rows-for-parallel", 0),
    );
    assert!(
        out.success(),
        "non-numeric text rows are rejected, the job succeeds: {out}\n{}",
        cluster.coordinator(0).log_tail(20)
    );
    let job = out.job_id();

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
    let cluster = Cluster::builder().workers(1).start().await;
    let dbs = cluster.dbs();
    prepare_types(dbs).await;
    let target = dbs.target().await;
    exec(
        &target,
        "CREATE TABLE public.types_c (id bigint primary key, x int4)",
    )
    .await;
    let out = cluster.submit_watch(
        &Submit::new("SELECT id, j AS x FROM types_src", "public.types_c")
            .chunk_size(5_000)
            .flag("--min-rows-for-parallel", 0),
    );
    let job = out.job_id();
    let ledger = if table_exists(&target, "ferry", "ledger").await {
        Some(ledger_summary(&target, &job).await)
    } else {
        None
    };
    let rejected = if table_exists(&target, "ferry", "rejects").await {
        rejects_count(&target, &job).await
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
        cluster
            .state(&job)
            .map(|s| s.to_string())
            .unwrap_or_default()
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
    let log = cluster.job_log(&job);
    assert!(
        !log.iter().any(|l| is_chunk_completed_line(l))
            && !log.iter().any(|l| l.contains(JOB_STARTING)),
        "the job must fail before any chunk runs:\n{}",
        log.join("\n")
    );
}

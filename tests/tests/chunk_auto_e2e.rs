//! `--chunk-size auto` (issue 14, item 7, plan-time part): on a table whose
//! rows are 100× wider in the upper half of the key range (by bytes), the
//! planner cuts by bytes, so chunks over the wide rows hold about 100×
//! fewer rows than chunks over the narrow ones, and the copy is exact.

use ferry_tests::cli::Submit;
use ferry_tests::cluster::Cluster;
use ferry_tests::data::table_checksum;
use ferry_tests::ledger::ledger_rows;
use ferry_tests::sql::exec;

/// Narrow rows (~100 bytes each) at keys 1..=NARROW.
const NARROW: i64 = 200_000;
/// Wide rows (~9,700 bytes each) at the keys after them.
const WIDE: i64 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_chunks_over_wide_rows_hold_fewer_rows() {
    let cluster = Cluster::builder().workers(2).start().await;
    let columns = "id bigint PRIMARY KEY, pad text NOT NULL";
    let source = cluster.dbs().source().await;
    exec(&source, &format!("CREATE TABLE widths ({columns})")).await;
    // 60 hex characters, then 9,600 (random hex does not compress)
    exec(
        &source,
        &format!(
            "INSERT INTO widths
               SELECT g, left(md5(g::text) || md5((-g)::text), 60) FROM generate_series(1, {NARROW}) g"
        ),
    )
    .await;
    exec(
        &source,
        &format!(
            "INSERT INTO widths
               SELECT g, (SELECT string_agg(md5(g::text || '.' || i::text), '')
                            FROM generate_series(1, 300) i)
                 FROM generate_series({NARROW} + 1, {NARROW} + {WIDE}) g"
        ),
    )
    .await;
    exec(&source, "ANALYZE widths").await;
    exec(
        &cluster.dbs().target().await,
        &format!("CREATE TABLE widths ({columns})"),
    )
    .await;

    let job = Submit::new("SELECT * FROM widths", "public.widths")
        .flag("--chunk-size", "auto")
        .flag("--chunk-seconds", 1)
        .flag("--min-rows-for-parallel", 0);
    let out = cluster.submit_watch(&job);
    assert!(
        out.success(),
        "the job failed: {out}\ncoordinator log:\n{}",
        cluster.coordinator(0).log_tail(30)
    );
    let id = out.job_id();
    let src = table_checksum(&source, "widths").await;
    let dst = table_checksum(&cluster.dbs().target().await, "widths").await;
    assert_eq!(dst, src, "the target differs from the source");

    // chunks are numbered in key order: the first lies among the narrow
    // rows, the last among the wide ones
    let rows: Vec<i64> = ledger_rows(&cluster.dbs().target().await, &id)
        .await
        .values()
        .map(|r| r.rows_written)
        .collect();
    assert!(rows.len() >= 4, "auto chunks: {rows:?}");
    let (first, last) = (rows[0], rows[rows.len() - 1]);
    assert!(
        first > 25 * last && first < 400 * last,
        "a narrow chunk holds {first} rows and a wide one {last}: not about 100x fewer over the wide rows ({rows:?})"
    );
    let status = cluster.job_verb("status", &id, &[], std::time::Duration::from_secs(30));
    assert!(
        status.stdout.contains("--chunk-size auto"),
        "the plan does not say the chunks are auto-sized: {status}"
    );
}

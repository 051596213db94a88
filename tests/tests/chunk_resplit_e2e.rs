//! `--chunk-size auto` at run time (issue 14, item 7): the plan sizes chunks
//! from the rows' bytes and a guessed 8 MiB/s; here the target is far slower
//! than that (a trigger that sleeps a millisecond a row, so at most 1,000
//! rows/s a chunk whatever the machine), so once chunks have landed the
//! coordinator re-splits the ranges not yet leased to about `chunk_seconds`
//! of rows. Asserted: the log line, more chunks than planned, the re-split
//! chunks' rows, an exact copy and one ledger row per chunk. The state is in
//! etcd, so the re-split is one etcd transaction.

use ferry_tests::cli::Submit;
use ferry_tests::cluster::Cluster;
use ferry_tests::data::table_checksum;
use ferry_tests::ledger::{ledger_rows, ledger_summary};
use ferry_tests::sql::exec;

/// Rows of about 1,900 bytes (under the TOAST threshold): a planned chunk
/// of 8 MiB holds about 4,400 of them.
const ROWS: i64 = 26_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_chunks_re_split_the_ranges_not_yet_leased() {
    let cluster = Cluster::builder().etcd(1).workers(2).start().await;
    let columns = "id bigint PRIMARY KEY, pad text NOT NULL";
    let source = cluster.dbs().source().await;
    exec(&source, &format!("CREATE TABLE dense ({columns})")).await;
    exec(
        &source,
        &format!(
            "INSERT INTO dense
               SELECT g, (SELECT string_agg(md5(g::text || '.' || i::text), '')
                            FROM generate_series(1, 59) i)
                 FROM generate_series(1, {ROWS}) g;
             ANALYZE dense"
        ),
    )
    .await;
    let target = cluster.dbs().target().await;
    exec(
        &target,
        &format!(
            "CREATE TABLE dense ({columns});
             CREATE FUNCTION slow_row() RETURNS trigger LANGUAGE plpgsql
               AS $$ BEGIN PERFORM pg_sleep(0.001); RETURN NEW; END $$;
             CREATE TRIGGER slow_row BEFORE INSERT ON dense
               FOR EACH ROW EXECUTE FUNCTION slow_row()"
        ),
    )
    .await;

    let job = Submit::new("SELECT * FROM dense", "public.dense")
        .flag("--chunk-size", "auto")
        .flag("--chunk-seconds", 1)
        // two chunks in flight, so that ranges are left to re-split
        .flag("--max-workers", 2)
        .flag("--min-rows-for-parallel", 0);
    let out = cluster.submit_watch(&job);
    let log = || cluster.coordinator(0).logs().join("\n");
    assert!(
        out.success(),
        "the job failed: {out}\ncoordinator log:\n{}",
        log()
    );
    let id = out.job_id();
    assert_eq!(
        table_checksum(&target, "dense").await,
        table_checksum(&source, "dense").await,
        "the target differs from the source"
    );

    let log = log();
    let line = log
        .lines()
        .find(|l| l.contains("re-split the chunks not yet leased"))
        .unwrap_or_else(|| panic!("no re-split was logged:\n{log}"));
    // "… N ranges → M chunks, target R rows at X rows/s"
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |w: &str| -> u64 {
        let i = words
            .iter()
            .position(|x| *x == w)
            .unwrap_or_else(|| panic!("{w:?} in {line}"));
        words[i - 1]
            .parse()
            .unwrap_or_else(|e| panic!("{line}: {e}"))
    };
    let (ranges, chunks) = (after("ranges"), after("chunks,"));
    assert!(chunks > ranges, "a re-split makes more chunks: {line}");
    let target_rows = words
        .iter()
        .position(|x| *x == "target")
        .and_then(|i| words.get(i + 1))
        .and_then(|w| w.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no target in {line}"));

    let status = cluster.status(&id);
    let ledger = ledger_summary(&target, &id).await;
    assert_eq!(
        ledger.distinct_chunks, status.chunks_total as i64,
        "{ledger:?}"
    );
    assert_eq!(ledger.rows, ledger.distinct_chunks, "{ledger:?}");
    assert_eq!(ledger.rows_written, ROWS, "{ledger:?}");
    // the planned chunks held thousands of rows; a re-split one about the
    // target (it is cut at equal key widths of a dense key)
    let rows: Vec<i64> = ledger_rows(&target, &id)
        .await
        .values()
        .map(|r| r.rows_written)
        .collect();
    let first = rows[0];
    let smallest = rows.iter().copied().min().unwrap_or_default();
    assert!(
        first as u64 > 2 * target_rows && (smallest as u64) <= target_rows + 1,
        "planned chunk {first} rows, target {target_rows}, chunks {rows:?}"
    );
}

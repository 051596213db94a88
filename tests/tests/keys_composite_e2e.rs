//! Composite and non-integer keys (issue 14, item 3): a TPC-H-like
//! `lineitem` with primary key `(l_orderkey, l_linenumber)` is split on the
//! whole key, so every chunk holds about `chunk_size` rows even when the
//! first column has three values; text keys in an ICU collation, timestamptz,
//! uuid and numeric keys copy exactly; `--key a,b` over NULL-able columns
//! copies every row once (a row with a NULL in any key column goes to the
//! NULL chunk only).

use std::time::Duration;

use ferry_tests::cli::Submit;
use ferry_tests::cluster::Cluster;
use ferry_tests::data::table_checksum;
use ferry_tests::ledger::ledger_rows;
use ferry_tests::sql::exec;

const LINEITEM_ROWS: i64 = 300_000;
const LINEITEM_CHUNK: u64 = 10_000;
const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates `table` with `columns` in source and target, fills the source
/// with `fill` (an INSERT … SELECT's SELECT).
async fn table(cluster: &Cluster, table: &str, columns: &str, fill: &str) {
    let source = cluster.dbs().source().await;
    exec(&source, &format!("CREATE TABLE {table} ({columns})")).await;
    exec(&source, &format!("INSERT INTO {table} {fill}")).await;
    exec(&source, &format!("ANALYZE {table}")).await;
    let target = cluster.dbs().target().await;
    exec(&target, &format!("CREATE TABLE {table} ({columns})")).await;
}

/// Copies `table` whole with `job`, asserts the target equals the source,
/// and returns the job id and each chunk's rows (from the ledger).
async fn copy_exactly(cluster: &Cluster, table: &str, job: &Submit) -> (String, Vec<i64>) {
    let out = cluster.submit_watch(job);
    assert!(
        out.success(),
        "{table}: the job failed: {out}\ncoordinator log:\n{}",
        cluster.coordinator(0).log_tail(30)
    );
    let id = out.job_id();
    let source = table_checksum(&cluster.dbs().source().await, table).await;
    let target = table_checksum(&cluster.dbs().target().await, table).await;
    assert_eq!(
        target, source,
        "{table}: the target differs from the source"
    );
    let rows = ledger_rows(&cluster.dbs().target().await, &id)
        .await
        .values()
        .map(|r| r.rows_written)
        .collect();
    (id, rows)
}

/// The job's plan line, as `ferry status` prints it.
fn plan_line(cluster: &Cluster, job: &str) -> String {
    let out = cluster.job_verb("status", job, &[], CLI_TIMEOUT);
    assert!(out.success(), "status failed: {out}");
    out.stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("plan: ").map(str::to_string))
        .unwrap_or_else(|| panic!("status prints no plan line: {out}"))
}

/// Every chunk holds between half and twice `chunk` rows.
fn assert_even(table: &str, rows: &[i64], chunk: u64) {
    let chunk = chunk as i64;
    let (min, max) = (rows.iter().min(), rows.iter().max());
    assert!(
        rows.iter().all(|r| *r * 2 >= chunk && *r <= 2 * chunk),
        "{table}: chunk rows from {min:?} to {max:?} are not within 2x of chunk_size {chunk}: {rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineitem_splits_on_its_composite_key_into_even_chunks() {
    let cluster = Cluster::builder().workers(2).start().await;
    // 75,000 orders of 1 to 7 lines each (4 on average): 300,000 rows
    table(
        &cluster,
        "lineitem",
        "l_orderkey bigint NOT NULL, l_linenumber int NOT NULL, l_quantity numeric(15,2) NOT NULL,
         l_comment text NOT NULL, PRIMARY KEY (l_orderkey, l_linenumber)",
        "SELECT o, l, (o * l) % 50 + 0.25, md5(o::text || l::text)
           FROM generate_series(1, 75000) o, generate_series(1, 1 + (o * 7919) % 7) l",
    )
    .await;
    let source = cluster.dbs().source().await;
    let n: i64 = source
        .query_one("SELECT count(*) FROM lineitem", &[])
        .await
        .expect("count lineitem")
        .get(0);
    assert_eq!(n, LINEITEM_ROWS, "the fixture's row count");

    let job = Submit::new("SELECT * FROM lineitem", "public.lineitem").chunk_size(LINEITEM_CHUNK);
    let (id, rows) = copy_exactly(&cluster, "lineitem", &job).await;
    assert!(rows.len() >= 20, "lineitem was not split: {rows:?}");
    assert_eq!(rows.iter().sum::<i64>(), LINEITEM_ROWS);
    assert_even("lineitem", &rows, LINEITEM_CHUNK);
    let plan = plan_line(&cluster, &id);
    assert!(
        plan.contains("(l_orderkey, l_linenumber)"),
        "the plan does not name the composite key: {plan}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_key_column_of_three_values_still_gives_even_chunks() {
    const CHUNK: u64 = 10_000;
    let cluster = Cluster::builder().workers(2).start().await;
    table(
        &cluster,
        "few_first",
        "region int NOT NULL, seq int NOT NULL, v text NOT NULL, PRIMARY KEY (region, seq)",
        "SELECT r, s, md5(s::text) FROM generate_series(1, 3) r, generate_series(1, 40000) s",
    )
    .await;
    let job = Submit::new("SELECT * FROM few_first", "public.few_first").chunk_size(CHUNK);
    let (_, rows) = copy_exactly(&cluster, "few_first", &job).await;
    assert!(rows.len() >= 8, "few_first was not split: {rows:?}");
    assert_even("few_first", &rows, CHUNK);

    // the same split asked for by --key, on a table without a primary key
    table(
        &cluster,
        "few_first_nokey",
        "region int NOT NULL, seq int NOT NULL, v text NOT NULL",
        "SELECT r, s, md5(s::text) FROM generate_series(1, 3) r, generate_series(1, 40000) s",
    )
    .await;
    let job = Submit::new("SELECT * FROM few_first_nokey", "public.few_first_nokey")
        .chunk_size(CHUNK)
        .flag("--key", "region, seq");
    let (_, rows) = copy_exactly(&cluster, "few_first_nokey", &job).await;
    assert_even("few_first_nokey", &rows, CHUNK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collated_text_timestamptz_uuid_and_numeric_keys_copy_exactly() {
    const CHUNK: u64 = 4_000;
    let cluster = Cluster::builder().workers(2).start().await;
    // mixed case: the ICU order ('a' < 'B') is not the database's C order ('B' < 'a')
    let cases = [
        (
            "icu_text",
            "k text COLLATE \"en-x-icu\" PRIMARY KEY, v int NOT NULL",
            "SELECT chr(65 + g % 26 + (g % 2) * 32) || g, g FROM generate_series(1, 40000) g",
        ),
        (
            "c_varchar",
            "k varchar(20) COLLATE \"C\" NOT NULL, n int NOT NULL, v int NOT NULL, PRIMARY KEY (k, n)",
            "SELECT chr(65 + g % 26 + (g % 2) * 32) || (g % 500), g, g FROM generate_series(1, 40000) g",
        ),
        (
            "ts_key",
            "k timestamptz PRIMARY KEY, v int NOT NULL",
            "SELECT timestamptz '2024-03-31 00:00:00+00' + g * interval '17 minutes 3.25 seconds', g
               FROM generate_series(1, 40000) g",
        ),
        (
            "uuid_key",
            "k uuid PRIMARY KEY, v int NOT NULL",
            "SELECT md5(g::text)::uuid, g FROM generate_series(1, 40000) g",
        ),
        (
            "numeric_key",
            "k numeric(20,6) PRIMARY KEY, v int NOT NULL",
            "SELECT (g * 1.000003 - 20000)::numeric(20,6), g FROM generate_series(1, 40000) g",
        ),
    ];
    for (name, columns, fill) in cases {
        table(&cluster, name, columns, fill).await;
        let job = Submit::new(format!("SELECT * FROM {name}"), format!("public.{name}"))
            .chunk_size(CHUNK)
            .flag("--min-rows-for-parallel", 0);
        let (_, rows) = copy_exactly(&cluster, name, &job).await;
        assert!(rows.len() >= 6, "{name} was not split: {rows:?}");
        assert_even(name, &rows, CHUNK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_in_any_key_column_is_copied_once() {
    const CHUNK: u64 = 2_000;
    let cluster = Cluster::builder().workers(2).start().await;
    // every 7th row has a NULL first column, every 11th a NULL second one
    table(
        &cluster,
        "nullable_pair",
        "a int, b int, v int NOT NULL",
        "SELECT CASE WHEN g % 7 = 0 THEN NULL ELSE g % 40 END,
                CASE WHEN g % 11 = 0 THEN NULL ELSE g END, g
           FROM generate_series(1, 30000) g",
    )
    .await;
    let job = Submit::new("SELECT * FROM nullable_pair", "public.nullable_pair")
        .chunk_size(CHUNK)
        .flag("--min-rows-for-parallel", 0)
        .flag("--key", "a,b");
    let (id, rows) = copy_exactly(&cluster, "nullable_pair", &job).await;
    assert!(rows.len() >= 8, "nullable_pair was not split: {rows:?}");
    let plan = plan_line(&cluster, &id);
    assert!(plan.contains("(a, b)"), "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_row_of_a_composite_key_is_named_by_its_key() {
    const CHUNK: u64 = 5_000;
    let cluster = Cluster::builder().workers(2).start().await;
    // region names with a space and a quote need quoting in a row literal
    let columns =
        "region text NOT NULL, seq int NOT NULL, v int NOT NULL, PRIMARY KEY (region, seq)";
    let source = cluster.dbs().source().await;
    exec(&source, &format!("CREATE TABLE regions ({columns})")).await;
    exec(
        &source,
        "INSERT INTO regions SELECT r, s, s FROM unnest(ARRAY['north east', 'south', 'o''hara \"x\"']) r,
           generate_series(1, 10000) s",
    )
    .await;
    exec(&source, "ANALYZE regions").await;
    let target = cluster.dbs().target().await;
    // the target refuses every row whose seq ends in 777
    exec(
        &target,
        &format!("CREATE TABLE regions ({columns}, CHECK (seq % 1000 <> 777))"),
    )
    .await;
    let job = Submit::new("SELECT * FROM regions", "public.regions")
        .chunk_size(CHUNK)
        .flag("--min-rows-for-parallel", 0);
    let out = cluster.submit_watch(&job);
    assert!(out.success(), "the job failed: {out}");
    let id = out.job_id();

    // PostgreSQL's own text of each refused row's key tuple
    let expected: std::collections::BTreeSet<String> = source
        .query(
            "SELECT (region, seq)::text FROM regions WHERE seq % 1000 = 777",
            &[],
        )
        .await
        .expect("the refused keys in the source")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(expected.len(), 30, "the fixture's refused rows");
    let recorded: std::collections::BTreeSet<String> = target
        .query(
            "SELECT coalesce(key, '<none>') FROM ferry.rejects WHERE job_id = $1",
            &[&id],
        )
        .await
        .expect("ferry.rejects")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        recorded, expected,
        "rejects must name each refused row by its key tuple, as PostgreSQL writes it"
    );
    // the key pastes back into a row comparison that finds exactly the source row
    let found: i64 = source
        .query_one(
            "SELECT count(*) FROM regions WHERE (region, seq)::text = ANY($1)",
            &[&recorded.iter().collect::<Vec<_>>()],
        )
        .await
        .expect("find the source rows by their keys")
        .get(0);
    assert_eq!(found, 30);
    let listed = cluster.rejects(&id, 100);
    assert_eq!(listed.total, 30, "{}", listed.output);
    assert!(
        listed.rows.iter().any(|r| r.key == "(\"north east\",777)"),
        "ferry rejects does not print the key tuple: {}",
        listed.output
    );
}

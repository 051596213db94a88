//! `ferry plan` (the `PlanJob` dry run): prints the strategy, chunk count,
//! rows and bytes per chunk, casts, connections, memory, consistency and
//! warnings; writes nothing (no `ferry` schema, table, etcd job or listed
//! job, in PostgreSQL, SQLite and MariaDB targets alike); and on an unchanged
//! table its chunk count is the real run's (repeatable sampling).

use ferry_tests::cli::{CliOutput, Submit, LONG_CLI_TIMEOUT};
use ferry_tests::cluster::Cluster;
use ferry_tests::mariadb::MariaDb;
use ferry_tests::observability::etcd_count;
use ferry_tests::sql::{exec, query_i64};
use ferry_tests::sqlite_file::SqliteFile;
use tokio_postgres::Client;

/// Rows of the block-sampled table: enough for 20+ chunks of at least 400
/// blocks each, the sampler's floor for sampling blocks.
const BLOCK_ROWS: u64 = 1_100_000;
/// Rows per chunk for that table.
const BLOCK_CHUNK: u64 = 50_000;

/// `ferry plan …` with `job`'s flags and `extra` (e.g. `--output json`).
fn plan(cluster: &Cluster, job: &Submit, extra: &[&str]) -> CliOutput {
    let mut args = job.submit_args(cluster.urls());
    args[0] = "plan".to_string();
    args.extend(extra.iter().map(|s| s.to_string()));
    cluster.cli(&args, LONG_CLI_TIMEOUT)
}

/// The value of the text line `name: value` of `ferry plan`.
fn line<'a>(out: &'a CliOutput, name: &str) -> &'a str {
    let prefix = format!("{name}: ");
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no `{name}:` line in ferry plan's output: {out}"))
}

/// Schemas and tables in `db` outside the system schemas, sorted.
async fn relations(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT n.nspname || '.' || coalesce(c.relname, '') FROM pg_namespace n
               LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'p')
              WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
              ORDER BY 1",
            &[],
        )
        .await
        .expect("list relations")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Asserts the target has no `ferry` schema, and its relations are `before`.
async fn assert_nothing_written(cluster: &Cluster, before: &[String]) {
    let target = cluster.dbs().target().await;
    let ferry = query_i64(
        &target,
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'ferry'",
    )
    .await;
    assert_eq!(ferry, 0, "ferry plan created the ferry schema");
    assert_eq!(
        relations(&target).await,
        before,
        "ferry plan changed the target"
    );
    let jobs = cluster.jobs();
    assert!(jobs.success(), "ferry jobs failed: {jobs}");
    assert_eq!(
        jobs.stdout.lines().count(),
        1,
        "ferry plan left a job behind (only the header expected): {jobs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_prints_the_plan_writes_nothing_and_matches_the_run() {
    let cluster = Cluster::builder().etcd(1).workers(2).start().await;
    cluster.dbs().prepare_items(BLOCK_ROWS).await;
    let before = relations(&cluster.dbs().target().await).await;
    let job = Submit::items()
        .chunk_size(BLOCK_CHUNK)
        .flag("--max-workers", 4);

    let out = plan(&cluster, &job, &[]);
    assert!(out.success(), "ferry plan failed: {out}");
    let strategy = line(&out, "strategy");
    assert!(
        strategy.contains("key ranges on id") && strategy.contains("blocks"),
        "expected a block-sampled key split: {out}"
    );
    let chunks: u64 = line(&out, "chunks").parse().expect("chunk count");
    assert!(chunks >= 20, "{out}");
    assert!(line(&out, "rows per chunk").starts_with("min "), "{out}");
    assert!(line(&out, "bytes per chunk").contains("median"), "{out}");
    assert_eq!(line(&out, "casts"), "none", "{out}");
    assert!(
        line(&out, "connections").starts_with("11 = 4 workers × 2 + 1 metadata + 2 buffer"),
        "{out}"
    );
    assert!(line(&out, "memory (guide)").contains("chunk_size"), "{out}");
    assert!(
        line(&out, "memory (Ferry's bound)").contains("COPY"),
        "{out}"
    );
    assert_eq!(line(&out, "consistency"), "snapshot", "{out}");
    // the only warning: 4 streams into the empty indexed target
    let warning = line(&out, "warning");
    assert!(
        warning.starts_with("index growth: up to 4 streams loading the empty public.items")
            && warning.contains("items_pkey")
            && warning.contains("--mode replace"),
        "{out}"
    );
    assert_eq!(out.stdout.matches("warning:").count(), 1, "{out}");

    let json = plan(&cluster, &job, &["--output", "json"]);
    assert!(json.success(), "ferry plan --output json failed: {json}");
    let v: serde_json::Value = serde_json::from_str(json.stdout.trim()).expect("one JSON object");
    assert_eq!(v["chunks"], chunks, "{json}");
    // planned twice, the block sample is the same: so is its row estimate
    assert_eq!(
        v["rows_estimated"],
        line(&out, "rows estimated"),
        "{json}\n{out}"
    );
    for field in ["min", "median", "max"] {
        assert!(v["rows_per_chunk"][field].is_string(), "{json}");
        assert!(v["bytes_per_chunk"][field].is_string(), "{json}");
    }
    assert_eq!(v["connections_needed"], 11, "{json}");
    assert!(v["memory_bound_bytes"].is_string(), "{json}");
    assert!(v["memory_guide_bytes"].is_string(), "{json}");
    assert_eq!(v["consistency"], "snapshot", "{json}");
    assert!(
        v["casts"].as_array().is_some_and(|c| c.is_empty()),
        "{json}"
    );
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(1), "{json}");

    assert_nothing_written(&cluster, &before).await;
    let endpoint = cluster.etcd().endpoint(0);
    assert_eq!(etcd_count(&endpoint, "/ferry/v3/"), 0, "a job in etcd");
    assert_eq!(
        etcd_count(&endpoint, "/ferry/requests/"),
        0,
        "a request in etcd"
    );

    // the same spec, run: the same chunk count (the sample is repeatable)
    let run = cluster.submit_watch(&job);
    assert!(run.success(), "the run failed: {run}");
    assert_eq!(cluster.status(&run.job_id()).chunks_total, chunks);
    cluster.dbs().assert_copied_exactly("public.items").await;

    // the target now holds rows: replace is no longer the same load, so no hint
    let again = plan(&cluster, &job, &[]);
    assert!(again.success(), "{again}");
    assert!(!again.stdout.contains("warning:"), "{again}");
    // ...unless truncate mode empties it first
    let truncate = plan(&cluster, &job.clone().flag("--mode", "truncate"), &[]);
    assert!(truncate.success(), "{truncate}");
    assert!(
        line(&truncate, "warning").starts_with("index growth:"),
        "{truncate}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_warns_of_no_key_skew_and_scans_and_names_a_missing_table() {
    let cluster = Cluster::builder().start().await;
    let source = cluster.dbs().source().await;
    let target = cluster.dbs().target().await;
    // half the rows share k = 0, and k has no index
    exec(
        &source,
        "CREATE TABLE dup AS SELECT g::bigint AS id, CASE WHEN g % 2 = 0 THEN 0 ELSE g END::bigint AS k
           FROM generate_series(1, 40000) g;
         CREATE TABLE heap AS SELECT * FROM dup;
         ANALYZE dup; ANALYZE heap",
    )
    .await;
    exec(
        &target,
        "CREATE TABLE dup (id numeric(20, 0), k bigint); CREATE TABLE heap (id bigint, k bigint)",
    )
    .await;
    let before = relations(&target).await;

    let keyless = plan(
        &cluster,
        &Submit::new("SELECT * FROM heap", "public.heap").chunk_size(10_000),
        &[],
    );
    assert!(keyless.success(), "{keyless}");
    assert_eq!(line(&keyless, "chunks"), "1", "{keyless}");
    assert_eq!(line(&keyless, "key"), "none", "{keyless}");
    assert!(
        line(&keyless, "warning").starts_with("no key: the job runs as one chunk"),
        "{keyless}"
    );

    let skewed = plan(
        &cluster,
        &Submit::new("SELECT * FROM dup", "public.dup")
            .chunk_size(4_000)
            .flag("--min-rows-for-parallel", 0)
            .flag("--key", "k"),
        &[],
    );
    assert!(skewed.success(), "{skewed}");
    assert!(
        line(&skewed, "casts").contains("id -> id as numeric(20,0)"),
        "{skewed}"
    );
    let warnings: Vec<&str> = skewed
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("warning: "))
        .collect();
    assert!(warnings.iter().any(|w| w.starts_with("skew:")), "{skewed}");
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("sequential scan per chunk") && w.contains("public.dup")),
        "{skewed}"
    );

    let missing = plan(
        &cluster,
        &Submit::new("SELECT * FROM heap", "public.nosuch"),
        &[],
    );
    assert!(!missing.success(), "a missing table must fail: {missing}");
    assert!(
        missing
            .stderr
            .contains("target table public.nosuch does not exist"),
        "{missing}"
    );
    let create = plan(
        &cluster,
        &Submit::new("SELECT * FROM heap", "public.nosuch").args(&["--create-table"]),
        &[],
    );
    assert!(create.success(), "{create}");
    assert!(
        line(&create, "would create table").starts_with("public.nosuch (id bigint, k bigint)"),
        "{create}"
    );

    // a ctid split names what its split column stands for
    let blocks = plan(
        &cluster,
        &Submit::new("SELECT * FROM heap", "public.heap")
            .chunk_size(10_000)
            .flag("--min-rows-for-parallel", 0),
        &[],
    );
    assert!(blocks.success(), "{blocks}");
    assert_eq!(
        line(&blocks, "key"),
        "ctid (block ranges; selected as ferry_split, not copied)",
        "{blocks}"
    );

    // the upsert key is checked as a run checks it
    let upsert = |extra: &[&str]| {
        plan(
            &cluster,
            &Submit::new("SELECT * FROM heap", "public.heap")
                .flag("--mode", "upsert")
                .args(extra),
            &[],
        )
    };
    let no_key = upsert(&[]);
    assert!(
        !no_key.success(),
        "upsert without a key must fail: {no_key}"
    );
    assert!(
        no_key.stderr.contains("mode upsert needs --upsert-key"),
        "{no_key}"
    );
    let not_unique = upsert(&["--upsert-key", "k"]);
    assert!(!not_unique.success(), "{not_unique}");
    assert!(
        not_unique
            .stderr
            .contains("mode upsert needs a unique index or primary key on (k)"),
        "{not_unique}"
    );
    let not_copied = upsert(&["--upsert-key", "nosuch"]);
    assert!(
        !not_copied.success()
            && not_copied
                .stderr
                .contains("'nosuch' is not one of the columns"),
        "{not_copied}"
    );
    assert_nothing_written(&cluster, &before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_into_sqlite_and_mariadb_writes_nothing() {
    let lite = SqliteFile::create("").await;
    let my = MariaDb::start();
    my.create_db("lake").await;
    my.create_items("lake", "items").await;
    let cluster = Cluster::builder()
        .connection("lite", lite.url())
        .connection("my", my.url("lake"))
        .start()
        .await;
    cluster.dbs().prepare_items(30_000).await;
    let tables = |kind: &'static str| format!("SELECT count(*) FROM {kind}");

    let into_lite = plan(
        &cluster,
        &Submit::items()
            .target("lite")
            .chunk_size(10_000)
            .flag("--min-rows-for-parallel", 0)
            .args(&["--create-table"]),
        &[],
    );
    assert!(into_lite.success(), "{into_lite}");
    assert!(
        line(&into_lite, "would create table").contains("items"),
        "{into_lite}"
    );
    assert!(
        line(&into_lite, "memory (Ferry's bound)").contains("typed batches"),
        "{into_lite}"
    );
    assert_eq!(
        lite.query_i64(&tables("sqlite_master")).await,
        0,
        "SQLite file written"
    );

    let into_my = plan(
        &cluster,
        &Submit::new("SELECT * FROM items", "items")
            .target("my")
            .chunk_size(10_000)
            .flag("--min-rows-for-parallel", 0),
        &[],
    );
    assert!(into_my.success(), "{into_my}");
    assert_eq!(line(&into_my, "chunks"), "3", "{into_my}");
    let ferry_db = my
        .query_i64(
            "lake",
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'ferry'",
        )
        .await;
    assert_eq!(ferry_db, 0, "ferry plan created MariaDB's ferry database");
    assert_eq!(
        my.query_i64(
            "lake",
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'lake'"
        )
        .await,
        1,
        "ferry plan created a table in MariaDB"
    );
    let jobs = cluster.jobs();
    assert_eq!(jobs.stdout.lines().count(), 1, "a job was stored: {jobs}");
}

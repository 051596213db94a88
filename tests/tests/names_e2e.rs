//! Every name PostgreSQL accepts, end to end: a mixed-case table beside its
//! lower-case twin (`"Sales"` and `sales`), a schema with a space, columns
//! named by reserved words, with spaces and dots, non-ASCII, and 63-byte
//! names. Rows land in the table named and nowhere else, in every write mode,
//! through verify, repair and resume; unquoted names fold as PostgreSQL folds
//! them; a missing table is named as PostgreSQL shows it.

use std::time::Duration;

use ferry_tests::cli::Submit;
use ferry_tests::cli_output::JobState;
use ferry_tests::cluster::Cluster;
use ferry_tests::data::table_checksum;
use ferry_tests::sql::{exec, query_i64};
use tokio_postgres::Client;

const ROWS: i64 = 120_000;
const CHUNK: u64 = 20_000;
const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// `"Ops Data"."Sales"`: the key is the reserved word `order`.
const SALES: &str = "\"Ops Data\".\"Sales\"";
/// Its lower-case twin, which must stay empty.
const TWIN: &str = "\"Ops Data\".sales";
/// The columns of both, with names PostgreSQL only takes quoted.
const COLUMNS: &str =
    "\"order\" int primary key, \"select\" text, \"a b.c\" text, \"größe\" int, \"Mixed\" text";

/// A 63-byte mixed-case table name and a 63-byte column name.
fn long_table() -> String {
    format!("Ab_{}", "c".repeat(60))
}
fn long_column() -> String {
    format!("Col{}", "x".repeat(60))
}

async fn create(client: &Client, with_twin: bool) {
    exec(client, "CREATE SCHEMA \"Ops Data\"").await;
    exec(client, &format!("CREATE TABLE {SALES} ({COLUMNS})")).await;
    if with_twin {
        exec(client, &format!("CREATE TABLE {TWIN} ({COLUMNS})")).await;
    }
    let (t, c) = (long_table(), long_column());
    assert_eq!((t.len(), c.len()), (63, 63));
    exec(
        client,
        &format!("CREATE TABLE \"Ops Data\".\"{t}\" (\"{c}\" bigint primary key, v text)"),
    )
    .await;
    exec(
        client,
        "CREATE TABLE plain_fold (id int primary key, v text)",
    )
    .await;
}

async fn prepare(cluster: &Cluster) {
    let source = cluster.dbs().source().await;
    create(&source, false).await;
    exec(
        &source,
        &format!(
            "INSERT INTO {SALES} SELECT g, 'v' || g, 'dot.' || g, g % 97, CASE WHEN g % 5 = 0 THEN NULL ELSE 'M' || g END
               FROM generate_series(1, {ROWS}) g"
        ),
    )
    .await;
    exec(
        &source,
        &format!(
            "INSERT INTO \"Ops Data\".\"{}\" SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g",
            long_table()
        ),
    )
    .await;
    exec(
        &source,
        "INSERT INTO plain_fold SELECT g, 'p' || g FROM generate_series(1, 1000) g",
    )
    .await;
    create(&cluster.dbs().target().await, true).await;
}

async fn assert_exact(cluster: &Cluster, table: &str) {
    let source = table_checksum(&cluster.dbs().source().await, table).await;
    let target = table_checksum(&cluster.dbs().target().await, table).await;
    assert_eq!(
        target, source,
        "{table} in the target differs from the source"
    );
}

fn run(cluster: &Cluster, job: &Submit) -> String {
    let out = cluster.submit_watch(job);
    assert!(
        out.success(),
        "job into {} failed: {out}\ncoordinator:\n{}",
        job.table(),
        cluster.coordinator(0).log_tail(30)
    );
    out.job_id()
}

fn sales_job() -> Submit {
    Submit::new(format!("SELECT * FROM {SALES}"), SALES)
        .chunk_size(CHUNK)
        .flag("--min-rows-for-parallel", 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quoted_names_land_in_the_table_named_in_every_mode() {
    let cluster = Cluster::builder().workers(2).start().await;
    prepare(&cluster).await;
    let target = cluster.dbs().target().await;

    // append, then truncate (the table already holds the rows), upsert over
    // them, and replace: each leaves exactly the source's rows, in "Sales" only
    let job = run(&cluster, &sales_job());
    assert_exact(&cluster, SALES).await;
    for mode in [
        &["--mode", "truncate"][..],
        &["--mode", "upsert", "--upsert-key", "\"order\""],
        &["--mode", "replace"],
    ] {
        run(&cluster, &sales_job().args(mode));
        assert_exact(&cluster, SALES).await;
        assert_eq!(
            query_i64(&target, &format!("SELECT count(*) FROM {TWIN}")).await,
            0,
            "rows reached the lower-case twin in mode {mode:?}"
        );
    }
    // replace kept the table's key and left no load table behind
    let leftovers = query_i64(
        &target,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'Ops Data' AND c.relname LIKE '%\\_\\_ferry\\_%'",
    )
    .await;
    assert_eq!(leftovers, 0, "mode replace left a load table behind");
    let pk = query_i64(
        &target,
        "SELECT count(*) FROM pg_constraint WHERE conrelid = '\"Ops Data\".\"Sales\"'::regclass AND contype = 'p'",
    )
    .await;
    assert_eq!(pk, 1, "the swapped-in table lost its primary key");

    // verify and repair of the first (append) job, keyed on "order"
    assert_eq!(
        cluster.verify(&job).all_match,
        Some(6),
        "a clean copy verifies"
    );
    exec(
        &target,
        &format!("DELETE FROM {SALES} WHERE \"order\" IN (7, 50001)"),
    )
    .await;
    exec(
        &target,
        &format!("UPDATE {SALES} SET \"größe\" = -1 WHERE \"order\" = 99999"),
    )
    .await;
    let v = cluster.verify(&job);
    assert_eq!(
        v.differ.map(|(d, _)| d),
        Some(3),
        "three chunks differ: {v:?}"
    );
    let out = cluster.repair(&job);
    assert!(out.success(), "repair failed: {out}");
    assert_exact(&cluster, SALES).await;

    // a 63-byte table with a 63-byte key column, in a non-public schema, by replace
    let long = format!("\"Ops Data\".\"{}\"", long_table());
    run(
        &cluster,
        &Submit::new(format!("SELECT * FROM {long}"), long.as_str())
            .chunk_size(CHUNK)
            .flag("--min-rows-for-parallel", 1)
            .flag("--mode", "replace"),
    );
    assert_exact(&cluster, &long).await;
    let job = run(
        &cluster,
        &Submit::new(format!("SELECT * FROM {long}"), long.as_str())
            .chunk_size(CHUNK)
            .flag("--min-rows-for-parallel", 1)
            .flag("--mode", "truncate"),
    );
    assert_eq!(cluster.verify(&job).all_match, Some(6));

    // unquoted names fold to lower case: PLAIN_FOLD is plain_fold
    run(
        &cluster,
        &Submit::new("SELECT * FROM plain_fold", "Public.PLAIN_FOLD"),
    );
    assert_exact(&cluster, "plain_fold").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_on_quoted_names_resumes_exactly() {
    let cluster = Cluster::builder().workers(2).start().await;
    prepare(&cluster).await;
    let target = cluster.dbs().target().await;
    // a transient refusal (serialization failure) of one key range, with no
    // retries allowed: the job fails part way
    exec(
        &target,
        &format!(
            "CREATE FUNCTION \"Ops Data\".refuse() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'not now' USING ERRCODE = '40001'; END $$;
             CREATE TRIGGER refuse BEFORE INSERT ON {SALES} FOR EACH ROW
               WHEN (NEW.\"order\" BETWEEN 60000 AND 60010) EXECUTE FUNCTION \"Ops Data\".refuse()"
        ),
    )
    .await;
    let out = cluster.submit_watch(&sales_job().flag("--max-retries", 0));
    assert!(
        !out.success(),
        "the job should fail on the refused range: {out}"
    );
    let job = out.job_id();
    assert_eq!(cluster.state(&job), Ok(JobState::Failed));
    let landed = query_i64(&target, &format!("SELECT count(*) FROM {SALES}")).await;
    assert!(landed < ROWS, "the failed job landed everything: {landed}");

    exec(&target, &format!("DROP TRIGGER refuse ON {SALES}")).await;
    let out = cluster.resume(&job);
    assert!(out.success(), "resume failed: {out}");
    assert_eq!(
        cluster.wait_terminal(&job, JOB_TIMEOUT),
        Ok(JobState::Succeeded)
    );
    assert_exact(&cluster, SALES).await;
    assert_eq!(
        query_i64(&target, &format!("SELECT count(*) FROM {TWIN}")).await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_is_named_as_postgres_shows_it() {
    let cluster = Cluster::builder().workers(1).start().await;
    prepare(&cluster).await;
    for (typed, shown) in [
        ("\"Ops Data\".\"Nope\"", "\"Ops Data\".\"Nope\""),
        ("Missing_Table", "missing_table"),
        ("\"Ops Data\".Sales2", "\"Ops Data\".sales2"),
    ] {
        let out = cluster.submit_watch(&Submit::new(format!("SELECT * FROM {SALES}"), typed));
        assert!(!out.success(), "a job into {typed} succeeded: {out}");
        let expected = format!("target table {shown} does not exist in connection 'dst'");
        assert!(
            out.all().contains(&expected),
            "the error for {typed} should say `{expected}`: {out}"
        );
    }
    // nothing was written into the tables that exist
    let target = cluster.dbs().target().await;
    assert_eq!(
        query_i64(&target, &format!("SELECT count(*) FROM {SALES}")).await,
        0
    );
    assert_eq!(
        query_i64(&target, &format!("SELECT count(*) FROM {TWIN}")).await,
        0
    );
}

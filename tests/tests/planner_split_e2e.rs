//! Issue 14 items 1 and 2: a table without a usable key is split into
//! `ctid` block ranges, a join is split on its driving table (key or
//! `ctid`), and a query whose rows cannot be split runs as one chunk whose
//! plan line says why and how to make it parallel. Every copy is exact
//! (count and checksum), with two workers, and with one of them SIGKILLed.

use std::time::Duration;

use ferry_tests::cli::Submit;
use ferry_tests::cli_output::{JobState, JobStatus};
use ferry_tests::cluster::Cluster;
use ferry_tests::data::{
    create_items_table, create_items_table_without_key, fill_items, table_checksum,
};
use ferry_tests::ledger::ledger_summary;
use tokio_postgres::Client;

/// Fail-safe for a job to finish.
const JOB_TIMEOUT: Duration = Duration::from_secs(300);
/// Short worker leases so a killed worker's chunk comes back within seconds.
const LEASE_TTL: Duration = Duration::from_secs(3);
/// The join of the keyless table with its dimension table.
const JOIN: &str =
    "SELECT h.id, h.amount, c.name FROM heap h JOIN cust c ON c.customer_id = h.customer_id";
/// The same as a left join: customers 90,000 and up have no `cust` row.
const LEFT_JOIN: &str = "SELECT h.id, h.amount, c.name FROM heap AS h LEFT JOIN cust c ON c.customer_id = h.customer_id WHERE h.status <> 'new'";

async fn exec(client: &Client, sql: &str) {
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// `heap` (the `items` rows, no key) and `cust` (a dimension table keyed by
/// customer, missing customers 90,000 and up) in the source; `heap`,
/// `joined` and `left_joined` in the target.
async fn prepare(cluster: &Cluster, rows: u64) {
    let source = cluster.dbs().source().await;
    create_items_table_without_key(&source, "public.heap").await;
    fill_items(&source, "public.heap", rows).await;
    exec(
        &source,
        "CREATE TABLE cust (customer_id int PRIMARY KEY, name text NOT NULL);
         INSERT INTO cust SELECT g, 'customer ' || g FROM generate_series(0, 89999) g;
         ANALYZE cust",
    )
    .await;
    let target = cluster.dbs().target().await;
    create_items_table_without_key(&target, "public.heap").await;
    exec(
        &target,
        "CREATE TABLE joined (id bigint, amount numeric(12,2), name text);
         CREATE TABLE left_joined (id bigint, amount numeric(12,2), name text)",
    )
    .await;
}

/// `(count, checksum)` of a query's rows, as `table_checksum` computes a table's.
async fn query_checksum(client: &Client, query: &str) -> (i64, String) {
    table_checksum(client, &format!("({query})")).await
}

/// Waits for `job` to succeed and returns its status and plan line.
fn succeeded(cluster: &Cluster, job: &str) -> (JobStatus, String) {
    let state = cluster.wait_terminal(job, JOB_TIMEOUT);
    assert_eq!(
        state,
        Ok(JobState::Succeeded),
        "job {job}; coordinator log:\n{}",
        cluster.coordinator(0).log_tail(40)
    );
    let out = cluster.job_verb("status", job, &[], Duration::from_secs(30));
    let plan = out
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("plan: "))
        .unwrap_or_else(|| panic!("status shows no plan line: {out}"))
        .to_string();
    (cluster.status(job), plan)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_table_and_its_joins_split_into_ctid_ranges() {
    let cluster = Cluster::builder().workers(2).start().await;
    prepare(&cluster, 2_000_000).await;
    let jobs = [
        ("SELECT * FROM heap", "public.heap"),
        (JOIN, "public.joined"),
        (LEFT_JOIN, "public.left_joined"),
    ]
    .map(|(q, t)| cluster.submit(&Submit::new(q, t).chunk_size(100_000)));
    let (source, target) = (cluster.dbs().source().await, cluster.dbs().target().await);
    for (job, (query, table)) in jobs.iter().zip([
        ("SELECT * FROM heap", "public.heap"),
        (JOIN, "public.joined"),
        (LEFT_JOIN, "public.left_joined"),
    ]) {
        let (status, plan) = succeeded(&cluster, job);
        assert!(
            status.chunks_total >= 8,
            "{query}: {} chunks ({plan})",
            status.chunks_total
        );
        assert!(plan.contains("ctid block ranges of public.heap"), "{plan}");
        assert!(plan.contains("chunks read by TID range scans"), "{plan}");
        if query.contains("JOIN") {
            assert!(plan.contains("driving table of a join"), "{plan}");
        }
        assert_eq!(
            table_checksum(&target, table).await,
            query_checksum(&source, query).await,
            "{query}: target differs from the source"
        );
        let ledger = ledger_summary(&target, job).await;
        assert_eq!(ledger.distinct_chunks, status.chunks_total as i64);
        assert_eq!(ledger.rows, ledger.distinct_chunks, "{ledger:?}");
    }
    let (n, _) = table_checksum(&target, "public.left_joined").await;
    let nulls: i64 = target
        .query_one("SELECT count(*) FROM left_joined WHERE name IS NULL", &[])
        .await
        .expect("count the left join's unmatched rows")
        .get(0);
    assert!(
        nulls > 0 && nulls < n,
        "the left join kept {nulls} of {n} rows unmatched"
    );

    // verify compares the whole table; repair cannot map rows back to blocks
    let v = cluster.verify(&jobs[0]);
    assert_eq!(v.all_match, Some(1), "{}", v.output);
    exec(&target, "DELETE FROM heap WHERE id % 100000 = 7").await;
    let v = cluster.verify(&jobs[0]);
    assert_eq!(v.differ, Some((1, 1)), "{}", v.output);
    let repair = cluster.repair(&jobs[0]);
    assert!(
        !repair.success(),
        "repair of a ctid job should refuse: {repair}"
    );
    assert!(
        repair.all().contains("ctid") && repair.all().contains("--mode truncate"),
        "{repair}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_that_cannot_split_run_as_one_chunk_and_say_why() {
    let cluster = Cluster::builder().workers(2).start().await;
    prepare(&cluster, 200_000).await;
    let (source, target) = (cluster.dbs().source().await, cluster.dbs().target().await);
    exec(
        &target,
        "CREATE TABLE counts (n bigint); CREATE TABLE by_customer (customer_id int, n bigint)",
    )
    .await;
    let cases = [
        (
            "SELECT count(*) AS n FROM heap WHERE amount > 0",
            "public.counts",
            "aggregates rows (Aggregate in its plan)",
        ),
        (
            "SELECT customer_id, count(*) AS n FROM heap GROUP BY customer_id",
            "public.by_customer",
            "GROUP BY",
        ),
        (
            "SELECT h.id, h.amount, c.name FROM cust c RIGHT JOIN heap h ON c.customer_id = h.customer_id",
            "public.joined",
            "RIGHT JOIN",
        ),
    ];
    for (query, table, why) in cases {
        let job = cluster.submit(&Submit::new(query, table).chunk_size(10_000));
        let (status, plan) = succeeded(&cluster, &job);
        assert_eq!(status.chunks_total, 1, "{query}: {plan}");
        assert!(plan.starts_with("one chunk: "), "{plan}");
        assert!(
            plan.contains(why) && plan.contains("--key"),
            "{query}: {plan}"
        );
        assert_eq!(
            table_checksum(&target, table).await,
            query_checksum(&source, query).await,
            "{query}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_splits_on_its_driving_tables_key_even_when_not_copied() {
    let cluster = Cluster::builder().workers(2).start().await;
    prepare(&cluster, 10).await;
    let source = cluster.dbs().source().await;
    create_items_table(&source, "public.keyed").await;
    fill_items(&source, "public.keyed", 200_000).await;
    let target = cluster.dbs().target().await;
    exec(
        &target,
        "CREATE TABLE named (amount numeric(12,2), name text)",
    )
    .await;
    let query = "SELECT k.amount, c.name FROM keyed k JOIN cust c ON c.customer_id = k.customer_id";
    let job = cluster.submit(&Submit::new(query, "public.named").chunk_size(20_000));
    let (status, plan) = succeeded(&cluster, &job);
    assert!(status.chunks_total >= 8, "{plan}");
    assert!(
        plan.contains("key ranges on public.keyed.id (driving table of a join, not copied)"),
        "{plan}"
    );
    assert_eq!(
        table_checksum(&target, "public.named").await,
        query_checksum(&source, query).await
    );
    let v = cluster.verify(&job);
    assert_eq!(v.all_match, Some(1), "{}", v.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_mid_ctid_job_is_exact() {
    let mut cluster = Cluster::builder()
        .lease_ttl(LEASE_TTL)
        .workers(2)
        .start()
        .await;
    prepare(&cluster, 1_000_000).await;
    let job = cluster.submit(&Submit::new("SELECT * FROM heap", "public.heap").chunk_size(50_000));
    let too_late = cluster.wait_first_chunk(Duration::from_secs(60));
    cluster.worker(0).kill();
    cluster.add_worker();
    let (status, plan) = succeeded(&cluster, &job);
    assert!(!too_late, "the job finished before the worker was killed");
    assert!(plan.contains("ctid block ranges"), "{plan}");
    cluster.dbs().assert_copied_exactly("public.heap").await;
    let ledger = ledger_summary(&cluster.dbs().target().await, &job).await;
    assert_eq!(ledger.rows, status.chunks_total as i64, "{ledger:?}");
    assert_eq!(ledger.rows_written, 1_000_000, "{ledger:?}");
}

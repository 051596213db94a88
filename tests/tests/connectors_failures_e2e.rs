//! Connectors under failure: a worker SIGKILLed and MariaDB SIGKILLed and
//! restarted mid-job still land every row exactly once in a MariaDB table
//! without a key (a duplicate would show); rows MariaDB and SQLite refuse
//! (CHECK, NOT NULL, DECIMAL overflow) are rejected with their keys and
//! reasons while the rest land, verify accounts for them, and the job's
//! history row lands in each target; the write
//! modes work on MariaDB and SQLite targets; repair brings back rows deleted
//! from a MariaDB target; a MySQL replace retried after its swap drops the
//! table it replaced.

use std::time::Duration;

use ferry_tests::cli::Submit;
use ferry_tests::cli_output::JobState;
use ferry_tests::cluster::Cluster;
use ferry_tests::mariadb::MariaDb;
use ferry_tests::portable_checksum::pg_items_checksum;
use ferry_tests::sql::exec;
use ferry_tests::sqlite_file::SqliteFile;

/// How long a job here may take.
const JOB_TIMEOUT: Duration = Duration::from_secs(300);

fn items() -> Submit {
    Submit::new("SELECT * FROM items", "items").flag("--min-rows-for-parallel", 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_and_mariadb_killed_mid_job_land_every_row_once() {
    const ROWS: u64 = 400_000;
    let my = MariaDb::start();
    my.create_db("dst").await;
    my.create_items_without_key("dst", "items").await;
    let cluster = Cluster::builder()
        .workers(2)
        .connection("dst", my.url("dst"))
        .start()
        .await;
    cluster.dbs().prepare_items(ROWS).await;
    let want = pg_items_checksum(&cluster.dbs().source().await, "public.items").await;

    let job = cluster.submit(&items().chunk_size(10_000));
    let finished = cluster.wait_first_chunk(JOB_TIMEOUT);
    assert!(!finished, "the job ended before the faults: raise ROWS");
    cluster.worker(0).kill();
    my.kill();
    std::thread::sleep(Duration::from_secs(2));
    my.start_again();
    let state = cluster.wait_terminal(&job, JOB_TIMEOUT);
    assert_eq!(
        state,
        Ok(JobState::Succeeded),
        "{}",
        cluster.coordinator_tails(40)
    );
    assert_eq!(
        my.items_checksum("dst", "items").await,
        want,
        "MariaDB's rows after a worker kill and a MariaDB restart"
    );
    let ledger = my
        .query_i64(
            "dst",
            &format!("SELECT count(*) FROM ferry.ledger WHERE job_id = '{job}'"),
        )
        .await;
    assert_eq!(ledger, 40, "one ledger row per chunk");
    let verify = cluster.verify(&job);
    assert_eq!(verify.all_match, Some(40), "{}", verify.output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_rows_are_rejected_with_reasons_in_mariadb_and_sqlite() {
    const ROWS: u64 = 20_000;
    let my = MariaDb::start();
    my.create_db("dst").await;
    // amount over 900 breaks the CHECK; a NULL note breaks NOT NULL; an
    // amount of 1000 or more does not fit DECIMAL(5,2)
    my.exec(
        "dst",
        "CREATE TABLE items (id bigint PRIMARY KEY, customer_id int NOT NULL,
           amount decimal(5,2) NOT NULL CHECK (amount < 900), status text NOT NULL,
           note text NOT NULL, created_at timestamp(6) NOT NULL)",
    )
    .await;
    let lite = SqliteFile::create(
        "CREATE TABLE items (id integer PRIMARY KEY, customer_id integer NOT NULL,
           amount numeric NOT NULL CHECK (amount < 900), status text NOT NULL,
           note text NOT NULL, created_at text NOT NULL)",
    )
    .await;
    let cluster = Cluster::builder()
        .workers(2)
        .connection("my", my.url("dst"))
        .connection("lite", lite.url())
        .start()
        .await;
    cluster.dbs().prepare_items(ROWS).await;
    let source = cluster.dbs().source().await;
    exec(
        &source,
        "UPDATE items SET amount = 950 WHERE id IN (100, 5000);
         UPDATE items SET amount = 5000.5 WHERE id = 12000;",
    )
    .await;
    let refused_sql = "SELECT count(*) FROM items WHERE note IS NULL OR amount >= 900";
    let refused = ferry_tests::sql::query_i64(&source, refused_sql).await as u64;
    assert!(refused > 3, "the fixture has NULL notes");

    for target in ["my", "lite"] {
        let out = cluster.submit_watch(&items().target(target).chunk_size(5_000));
        assert!(out.success(), "{target}: {out}");
        let job = out.job_id();
        let rejects = cluster.rejects(&job, 10_000);
        assert_eq!(rejects.total, refused, "{target}: {}", rejects.output);
        let keys: Vec<&str> = rejects.rows.iter().map(|r| r.key.as_str()).collect();
        for key in ["100", "5000", "12000"] {
            assert!(
                keys.contains(&key),
                "{target}: key {key} not rejected: {keys:?}"
            );
        }
        assert!(
            rejects.rows.iter().all(|r| !r.sqlstate.is_empty()),
            "{target}: every reject has a code"
        );
        let verify = cluster.verify(&job);
        assert_eq!(verify.all_match, Some(4), "{target}: {}", verify.output);
        // the job's history row lands in the target: ferry.job_history on
        // MariaDB, ferry_job_history in the SQLite file
        let sql = |table: &str| {
            format!(
                "SELECT count(*) FROM {table} WHERE job_id = '{job}' AND state = 'SUCCEEDED'
                   AND rows_written = {} AND rows_rejected = {refused} AND runs = 1",
                ROWS - refused
            )
        };
        let mut rows = 0;
        for _ in 0..50 {
            // written in the background as the job ends
            rows = match target {
                "my" => my.query_i64("dst", &sql("ferry.job_history")).await,
                _ => lite.query_i64(&sql("ferry_job_history")).await,
            };
            if rows == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(rows, 1, "{target}: the job's history row");
    }
    let landed = ROWS - refused;
    assert_eq!(
        my.query_i64("dst", "SELECT count(*) FROM items").await as u64,
        landed
    );
    assert_eq!(
        lite.query_i64("SELECT count(*) FROM items").await as u64,
        landed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_modes_and_repair_on_mariadb_and_sqlite() {
    const ROWS: u64 = 30_000;
    let my = MariaDb::start();
    my.create_db("dst").await;
    my.create_items("dst", "items").await;
    let lite = SqliteFile::create("").await;
    lite.create_items("items").await;
    let cluster = Cluster::builder()
        .workers(2)
        .connection("my", my.url("dst"))
        .connection("lite", lite.url())
        .start()
        .await;
    cluster.dbs().prepare_items(ROWS).await;
    let source = cluster.dbs().source().await;
    let want = pg_items_checksum(&source, "public.items").await;

    for target in ["my", "lite"] {
        let job = items().target(target).chunk_size(10_000);
        // append, then truncate: one copy
        assert!(cluster.submit_watch(&job).success(), "{target} append");
        let out = cluster.submit_watch(&job.clone().flag("--mode", "truncate"));
        assert!(out.success(), "{target} truncate: {out}");
        // upsert twice: one copy, latest values
        let upsert = job
            .clone()
            .flag("--mode", "upsert")
            .flag("--upsert-key", "id");
        assert!(cluster.submit_watch(&upsert).success(), "{target} upsert");
        assert!(
            cluster.submit_watch(&upsert).success(),
            "{target} upsert again"
        );
        // replace: a new table swapped in
        let out = cluster.submit_watch(&job.clone().flag("--mode", "replace"));
        assert!(out.success(), "{target} replace: {out}");
    }
    assert_eq!(my.items_checksum("dst", "items").await, want, "MariaDB");
    assert_eq!(lite.items_checksum("items").await, want, "SQLite");

    // a deleted range and an altered row: verify names both chunks, repair restores them
    for target in ["my", "lite"] {
        let job = items()
            .target(target)
            .chunk_size(10_000)
            .flag("--mode", "truncate");
        let out = cluster.submit_watch(&job);
        assert!(out.success(), "{target}: {out}");
        let job = out.job_id();
        let damage = [
            "DELETE FROM items WHERE id BETWEEN 12000 AND 12100",
            "UPDATE items SET amount = amount + 1 WHERE id = 25000",
        ];
        for sql in damage {
            match target {
                "my" => my.exec("dst", sql).await,
                _ => lite.exec(sql).await,
            }
        }
        let verify = cluster.verify(&job);
        assert_eq!(verify.differ, Some((2, 3)), "{target}: {}", verify.output);
        let out = cluster.repair(&job);
        assert!(out.success(), "{target}: {out}");
        let verify = cluster.verify(&job);
        assert_eq!(verify.all_match, Some(3), "{target}: {}", verify.output);
    }
    assert_eq!(
        my.items_checksum("dst", "items").await,
        want,
        "MariaDB repaired"
    );
    assert_eq!(lite.items_checksum("items").await, want, "SQLite repaired");
}

/// The tables of MariaDB database `db`, sorted.
async fn my_tables(my: &MariaDb, db: &str) -> Vec<String> {
    let mut names: Vec<String> = my
        .query_rows(db, "SHOW TABLES")
        .await
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_replace_retried_after_its_swap_drops_the_replaced_table() {
    use ferry_common::proto::TableRef;
    use ferry_connectors::mysql::modes::{finalize_replace, load_table};

    let my = MariaDb::start();
    my.create_db("r").await;
    let table = TableRef::new("r", "items");
    let load = load_table(&table, "j1");
    let old = load_table(&table, "old_j1");
    let mut conn = my.connect("r").await;

    // the swap: the loaded table becomes the target, the replaced one goes
    my.exec(
        "r",
        &format!(
            "CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (1);
             CREATE TABLE `{}` (id int PRIMARY KEY); INSERT INTO `{}` VALUES (2)",
            load.name, load.name
        ),
    )
    .await;
    finalize_replace(&mut conn, &table, &load, "j1")
        .await
        .unwrap_or_else(|f| panic!("finalize: {f:?}"));
    assert_eq!(my_tables(&my, "r").await, vec!["items".to_string()]);
    assert_eq!(
        my.query_rows("r", "SELECT id FROM items").await,
        vec![vec![Some("2".to_string())]]
    );

    // an attempt that ended between RENAME and DROP left the replaced table;
    // the retry finds the load table gone and drops it
    my.exec(
        "r",
        &format!("CREATE TABLE `{}` (id int PRIMARY KEY)", old.name),
    )
    .await;
    finalize_replace(&mut conn, &table, &load, "j1")
        .await
        .unwrap_or_else(|f| panic!("retried finalize: {f:?}"));
    assert_eq!(my_tables(&my, "r").await, vec!["items".to_string()]);
    assert_eq!(
        my.query_rows("r", "SELECT id FROM items").await,
        vec![vec![Some("2".to_string())]]
    );
}

//! Ledger collection on MySQL (a real MariaDB) and SQLite (a temp file),
//! through the connectors' own dispatcher (`db::ledger_gc::collect`): the
//! rows of a job whose newest row is past the retention leave, with its
//! MySQL `attempts` rows; a job with one recent row, a job the caller holds
//! and a recent job stay; rejected rows stay; a database without a ledger
//! table answers None and gets none; and a job whose chunk commits while it
//! is collected keeps every row. On MySQL the attempts of a job that never
//! committed a chunk leave by their own age, and an `attempts` table of an
//! older Ferry is given the column that dates them.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ferry_common::db::DbRole;
use ferry_connectors::db::ledger_gc::{collect, Collected};
use ferry_connectors::db::{self, Conn};
use ferry_tests::mariadb::MariaDb;
use ferry_tests::sqlite_file::SqliteFile;
use sqlx::Connection;

/// The retention every collection here runs with.
const RETENTION: Duration = Duration::from_secs(30 * 86_400);
/// Ferry's default ledger schema (a MySQL database, a SQLite table prefix).
const SCHEMA: &str = "ferry";
/// The job the caller holds.
const HELD: &str = "held-job";
/// How long a collection may take to reach the racing chunk's lock.
const LOCK_WAIT_TIMEOUT: Duration = Duration::from_secs(30);

fn held() -> HashSet<String> {
    HashSet::from([HELD.to_string()])
}

/// What a collection that removed `rows` rows of `jobs` returns.
fn removed(jobs: &[&str], rows: u64) -> Option<Collected> {
    Some(Collected {
        jobs: jobs.iter().map(|j| j.to_string()).collect(),
        rows,
    })
}

/// Collects with `RETENTION`, holding `HELD`; panics on a failure.
async fn collect_held(conn: &mut Conn, schema: &str) -> Option<Collected> {
    collect(conn, schema, RETENTION, &held())
        .await
        .unwrap_or_else(|f| panic!("collect: {f:?}"))
}

/// Ledger rows of jobs (chunk, age in days; 0 is now): `old-job` past the
/// retention, `mixed-job` with one recent row, the held job, `recent-job`.
const LEDGER: &[(&str, u32, u32)] = &[
    ("old-job", 1, 40),
    ("old-job", 2, 35),
    ("mixed-job", 1, 40),
    ("mixed-job", 2, 1),
    (HELD, 1, 40),
    ("recent-job", 1, 0),
];

async fn my_open(my: &MariaDb) -> Conn {
    db::open(DbRole::Planner, "my", &my.url("dst"), None)
        .await
        .unwrap_or_else(|f| panic!("open MariaDB: {f:?}"))
}

async fn my_count(my: &MariaDb, table: &str, job: &str) -> i64 {
    my.query_i64(
        "",
        &format!("SELECT count(*) FROM {table} WHERE job_id = '{job}'"),
    )
    .await
}

/// Creates Ferry's tables in MariaDB database `schema` with Ferry's own DDL.
async fn my_ensure(conn: &mut Conn, schema: &str) {
    let Conn::MySql(c, _) = conn else {
        panic!("not a MySQL session: {conn:?}");
    };
    ferry_connectors::mysql::ledger::ensure(c, schema)
        .await
        .unwrap_or_else(|f| panic!("ensure the ledger: {f:?}"));
}

/// Fills MariaDB's ledger with `LEDGER`, one attempts row per ledger row and
/// one rejected row of `old-job`.
async fn my_fill(my: &MariaDb) {
    for (job, chunk, days) in LEDGER {
        my.exec(
            "",
            &format!(
                "INSERT INTO ferry.ledger (job_id, chunk_no, attempt, fencing_token, worker, committed_at)
                   VALUES ('{job}', {chunk}, 1, 1, 'w', NOW(6) - INTERVAL {days} DAY);
                 INSERT INTO ferry.attempts (job_id, chunk_no, attempt, connection_id)
                   VALUES ('{job}', {chunk}, 1, 7)"
            ),
        )
        .await;
    }
    my.exec(
        "",
        "INSERT INTO ferry.rejects (job_id, chunk_no, `key`, row_text, `sqlstate`, message)
           VALUES ('old-job', 1, '5', '(5)', '23514', 'check')",
    )
    .await;
}

/// Waits until a session runs a DELETE on Ferry's ledger: the collection
/// chose its job and waits for the racing chunk's row (MariaDB lists a
/// statement waiting for a row lock, not its transaction, in `innodb_trx`).
async fn my_wait_collecting(my: &MariaDb) {
    let deadline = Instant::now() + LOCK_WAIT_TIMEOUT;
    let deleting = "SELECT count(*) FROM information_schema.processlist
                     WHERE info LIKE 'DELETE FROM `ferry`.`ledger`%'";
    while my.query_i64("", deleting).await == 0 {
        if Instant::now() >= deadline {
            let sessions = my
                .query_rows(
                    "",
                    "SELECT id, command, state, info FROM information_schema.processlist",
                )
                .await;
            panic!("the collection never reached the racing chunk's job: {sessions:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_ledger_of_old_jobs_is_collected_with_their_attempts() {
    let my = MariaDb::start();
    my.create_db("dst").await;
    let mut conn = my_open(&my).await;
    assert_eq!(collect_held(&mut conn, SCHEMA).await, None, "no ledger yet");
    assert_eq!(
        my.query_i64(
            "",
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'ferry'"
        )
        .await,
        0,
        "a collection creates nothing"
    );

    my_ensure(&mut conn, SCHEMA).await;
    assert_eq!(collect_held(&mut conn, SCHEMA).await, removed(&[], 0));
    my_fill(&my).await;
    assert_eq!(
        collect_held(&mut conn, SCHEMA).await,
        removed(&["old-job"], 2)
    );
    for (job, ledger, attempts) in [
        ("old-job", 0, 0),
        ("mixed-job", 2, 2),
        (HELD, 1, 1),
        ("recent-job", 1, 1),
    ] {
        assert_eq!(my_count(&my, "ferry.ledger", job).await, ledger, "{job}");
        assert_eq!(
            my_count(&my, "ferry.attempts", job).await,
            attempts,
            "{job}"
        );
    }
    assert_eq!(
        my_count(&my, "ferry.rejects", "old-job").await,
        1,
        "rejected rows stay"
    );
    assert_eq!(collect_held(&mut conn, SCHEMA).await, removed(&[], 0));

    // a chunk of an old job commits while the job is collected: the
    // collection waits for its row and the job keeps every row
    my.exec(
        "",
        "INSERT INTO ferry.ledger (job_id, chunk_no, attempt, fencing_token, worker, committed_at)
           VALUES ('racing-job', 1, 1, 1, 'w', NOW(6) - INTERVAL 40 DAY)",
    )
    .await;
    let mut chunk = my.connect("").await;
    sqlx::raw_sql(
        "START TRANSACTION;
         INSERT INTO ferry.ledger (job_id, chunk_no, attempt, fencing_token, worker)
           VALUES ('racing-job', 2, 1, 1, 'w')",
    )
    .execute(&mut chunk)
    .await
    .unwrap_or_else(|e| panic!("the racing chunk: {e}"));
    let collecting = tokio::spawn(async move { collect_held(&mut conn, SCHEMA).await });
    my_wait_collecting(&my).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !collecting.is_finished(),
        "the collection did not wait for the racing chunk's row"
    );
    sqlx::raw_sql("COMMIT")
        .execute(&mut chunk)
        .await
        .unwrap_or_else(|e| panic!("commit the racing chunk: {e}"));
    let _ = chunk.close().await;
    let collected = collecting.await.expect("the collection task");
    assert_eq!(collected, removed(&[], 0));
    assert_eq!(my_count(&my, "ferry.ledger", "racing-job").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_ledger_in_a_database_whose_name_needs_quoting() {
    const ODD: &str = "gc-db`x";
    let my = MariaDb::start();
    my.create_db("dst").await;
    let mut conn = my_open(&my).await;
    my_ensure(&mut conn, ODD).await;
    my.exec(
        "",
        "INSERT INTO `gc-db``x`.ledger (job_id, chunk_no, attempt, fencing_token, worker, committed_at)
           VALUES ('old-job', 1, 1, 1, 'w', NOW(6) - INTERVAL 40 DAY);
         INSERT INTO `gc-db``x`.attempts (job_id, chunk_no, attempt, connection_id)
           VALUES ('old-job', 1, 1, 7)",
    )
    .await;
    assert_eq!(
        collect_held(&mut conn, SCHEMA).await,
        None,
        "`ferry` has none"
    );
    assert_eq!(collect_held(&mut conn, ODD).await, removed(&["old-job"], 1));
    assert_eq!(my_count(&my, "`gc-db``x`.attempts", "old-job").await, 0);
}

/// Inserts an attempts row of `job`'s chunk `chunk`, recorded `days` ago.
async fn my_attempt(my: &MariaDb, job: &str, chunk: u32, days: u32) {
    my.exec(
        "",
        &format!(
            "INSERT INTO ferry.attempts (job_id, chunk_no, attempt, connection_id, recorded_at)
               VALUES ('{job}', {chunk}, 1, 7, NOW(6) - INTERVAL {days} DAY)"
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_attempts_of_jobs_that_never_committed_leave_by_their_age() {
    let my = MariaDb::start();
    my.create_db("dst").await;
    // an attempts table as Ferry made it before it had `recorded_at`
    my.exec(
        "",
        "CREATE DATABASE ferry;
         CREATE TABLE ferry.ledger (job_id varchar(64) NOT NULL, chunk_no int NOT NULL,
           attempt int NOT NULL, fencing_token bigint NOT NULL, worker varchar(128) NOT NULL,
           rows_written bigint NOT NULL DEFAULT 0, rows_rejected bigint NOT NULL DEFAULT 0,
           committed_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
           PRIMARY KEY (job_id, chunk_no)) ENGINE=InnoDB;
         CREATE TABLE ferry.attempts (job_id varchar(64) NOT NULL, chunk_no int NOT NULL,
           attempt int NOT NULL, connection_id bigint unsigned NOT NULL,
           PRIMARY KEY (job_id, chunk_no, attempt)) ENGINE=InnoDB;
         INSERT INTO ferry.attempts VALUES ('undated-job', 1, 1, 7)",
    )
    .await;
    let mut conn = my_open(&my).await;
    assert_eq!(
        collect_held(&mut conn, SCHEMA).await,
        removed(&[], 0),
        "an undated attempts table is left as it is"
    );
    assert_eq!(my_count(&my, "ferry.attempts", "undated-job").await, 1);
    my_ensure(&mut conn, SCHEMA).await;
    assert_eq!(
        my.query_i64(
            "",
            "SELECT count(*) FROM ferry.attempts
              WHERE job_id = 'undated-job' AND recorded_at > NOW(6) - INTERVAL 1 HOUR"
        )
        .await,
        1,
        "the older table's row is kept and dated now"
    );

    // never committed, every attempt past the retention: leaves
    my_attempt(&my, "failed-job", 1, 40).await;
    my_attempt(&my, "failed-job", 2, 35).await;
    // never committed, one attempt recent: stays whole
    my_attempt(&my, "young-job", 1, 40).await;
    my_attempt(&my, "young-job", 2, 1).await;
    // held by the caller: stays
    my_attempt(&my, HELD, 1, 40).await;
    // has a recent ledger row: its old attempts stay with it
    my_attempt(&my, "ledgered-job", 1, 40).await;
    my.exec(
        "",
        "INSERT INTO ferry.ledger (job_id, chunk_no, attempt, fencing_token, worker)
           VALUES ('ledgered-job', 1, 1, 1, 'w')",
    )
    .await;
    assert_eq!(
        collect_held(&mut conn, SCHEMA).await,
        removed(&[], 0),
        "no ledger row was old enough"
    );
    for (job, attempts) in [
        ("failed-job", 0),
        ("young-job", 2),
        (HELD, 1),
        ("ledgered-job", 1),
        ("undated-job", 1),
    ] {
        assert_eq!(
            my_count(&my, "ferry.attempts", job).await,
            attempts,
            "{job}"
        );
    }
}

async fn lite_open(lite: &SqliteFile) -> Conn {
    db::open(DbRole::Planner, "lite", &lite.url(), None)
        .await
        .unwrap_or_else(|f| panic!("open SQLite: {f:?}"))
}

async fn lite_count(lite: &SqliteFile, table: &str, job: &str) -> i64 {
    lite.query_i64(&format!(
        "SELECT count(*) FROM {table} WHERE job_id = '{job}'"
    ))
    .await
}

/// `strftime` of `days` ago, as the ledger writes its times.
fn lite_days_ago(days: u32) -> String {
    format!("strftime('%Y-%m-%d %H:%M:%f', 'now', '-{days} days')")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_ledger_of_old_jobs_is_collected() {
    let lite = SqliteFile::create("").await;
    let mut conn = lite_open(&lite).await;
    assert_eq!(collect_held(&mut conn, SCHEMA).await, None, "no ledger yet");
    assert_eq!(
        lite.query_i64("SELECT count(*) FROM sqlite_master").await,
        0,
        "a collection creates nothing"
    );

    let Conn::Sqlite(c, _) = &mut conn else {
        panic!("not a SQLite session: {conn:?}");
    };
    ferry_connectors::sqlite::ledger::ensure(c, SCHEMA)
        .await
        .unwrap_or_else(|f| panic!("ensure the ledger: {f:?}"));
    assert_eq!(collect_held(&mut conn, SCHEMA).await, removed(&[], 0));
    for (job, chunk, days) in LEDGER {
        lite.exec(&format!(
            "INSERT INTO ferry_ledger (job_id, chunk_no, attempt, fencing_token, worker, committed_at)
               VALUES ('{job}', {chunk}, 1, 1, 'w', {})",
            lite_days_ago(*days)
        ))
        .await;
    }
    lite.exec(
        "INSERT INTO ferry_rejects (job_id, chunk_no, key, row_text, sqlstate, message)
           VALUES ('old-job', 1, '5', '(5)', '23514', 'check')",
    )
    .await;
    assert_eq!(
        collect_held(&mut conn, SCHEMA).await,
        removed(&["old-job"], 2)
    );
    for (job, rows) in [
        ("old-job", 0),
        ("mixed-job", 2),
        (HELD, 1),
        ("recent-job", 1),
    ] {
        assert_eq!(lite_count(&lite, "ferry_ledger", job).await, rows, "{job}");
    }
    assert_eq!(
        lite_count(&lite, "ferry_rejects", "old-job").await,
        1,
        "rejected rows stay"
    );
    assert_eq!(collect_held(&mut conn, SCHEMA).await, removed(&[], 0));

    // a chunk of an old job holds the file's write lock while the job is
    // collected: the collection waits for it and the job keeps every row
    lite.exec(&format!(
        "INSERT INTO ferry_ledger (job_id, chunk_no, attempt, fencing_token, worker, committed_at)
           VALUES ('racing-job', 1, 1, 1, 'w', {})",
        lite_days_ago(40)
    ))
    .await;
    let mut chunk = lite.connect().await;
    sqlx::raw_sql(
        "BEGIN IMMEDIATE;
         INSERT INTO ferry_ledger (job_id, chunk_no, attempt, fencing_token, worker)
           VALUES ('racing-job', 2, 1, 1, 'w')",
    )
    .execute(&mut chunk)
    .await
    .unwrap_or_else(|e| panic!("the racing chunk: {e}"));
    let collecting = tokio::spawn(async move { collect_held(&mut conn, SCHEMA).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !collecting.is_finished(),
        "the collection did not wait for the file's write lock"
    );
    sqlx::raw_sql("COMMIT")
        .execute(&mut chunk)
        .await
        .unwrap_or_else(|e| panic!("commit the racing chunk: {e}"));
    let _ = chunk.close().await;
    let collected = collecting.await.expect("the collection task");
    assert_eq!(collected, removed(&[], 0));
    assert_eq!(lite_count(&lite, "ferry_ledger", "racing-job").await, 2);
}

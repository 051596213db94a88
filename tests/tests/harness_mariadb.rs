//! Smoke tests of the MariaDB and SQLite helpers: a real MariaDB server
//! SIGKILLed and restarted on its port keeps exactly its committed rows; a
//! SQLite file round trip; a read-only SQLite file refuses writes, root or not.

use std::time::Instant;

use ferry_tests::mariadb::MariaDb;
use ferry_tests::net::port_open;
use ferry_tests::sqlite_file::SqliteFile;
use sqlx::{Connection, MySqlConnection, SqliteConnection};

const ITEMS_DDL: &str = "CREATE TABLE items (\
     id BIGINT PRIMARY KEY, note VARCHAR(50) NULL, price DECIMAL(10,2) NOT NULL) ENGINE=InnoDB";

/// Inserts ids `from..=to` with a NULL note on every 7th row.
fn insert_items(from: u32, to: u32) -> String {
    format!(
        "INSERT INTO items (id, note, price) \
         WITH RECURSIVE s (n) AS (SELECT {from} UNION ALL SELECT n + 1 FROM s WHERE n < {to}) \
         SELECT n, IF(n % 7 = 0, NULL, CONCAT('note ', n)), n / 4 FROM s"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_keeps_committed_rows_across_sigkill_and_restart() {
    let started = Instant::now();
    let db = MariaDb::start();
    eprintln!("MariaDB ready in {:?}", started.elapsed());
    let port = db.port();
    db.create_db("src").await;
    db.exec("src", ITEMS_DDL).await;
    db.exec("src", &insert_items(1, 1000)).await;
    assert_eq!(
        db.query_i64("src", "SELECT count(*) FROM items").await,
        1000
    );
    assert_eq!(
        db.query_i64("src", "SELECT count(*) FROM items WHERE note IS NULL")
            .await,
        1000 / 7
    );

    // The URL is one Ferry and sqlx accept.
    let mut conn = MySqlConnection::connect(&db.url("src"))
        .await
        .expect("connect with MariaDb::url");
    // A transaction still open at the SIGKILL: its rows must not survive.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "BEGIN; {}",
        insert_items(1001, 1500)
    )))
    .execute(&mut conn)
    .await
    .expect("insert in an open transaction");

    db.kill();
    assert!(!db.is_running(), "mariadbd is gone after SIGKILL");
    assert!(!port_open(port), "nothing listens on {port} after SIGKILL");
    drop(conn);

    let restarted = Instant::now();
    db.restart();
    eprintln!(
        "MariaDB restarted after SIGKILL in {:?}",
        restarted.elapsed()
    );
    assert_eq!(db.port(), port);
    assert!(port_open(port), "MariaDB listens on its old port {port}");
    assert_eq!(
        db.query_i64("src", "SELECT count(*) FROM items").await,
        1000,
        "committed rows survive SIGKILL, the open transaction's do not"
    );
    assert_eq!(
        db.query_i64("src", "SELECT SUM(id) FROM items").await,
        500_500
    );
    assert_eq!(
        db.query_rows(
            "src",
            "SELECT id, note, price FROM items WHERE id IN (6, 7) ORDER BY id"
        )
        .await,
        vec![
            vec![Some("6".into()), Some("note 6".into()), Some("1.50".into())],
            vec![Some("7".into()), None, Some("1.75".into())],
        ]
    );
    assert!(
        db.server_log().contains("ready for connections"),
        "the error log is readable"
    );

    // A clean restart keeps everything too.
    db.exec("src", &insert_items(1001, 1200)).await;
    db.restart();
    assert_eq!(
        db.query_i64("src", "SELECT count(*) FROM items").await,
        1200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_round_trip() {
    let file = SqliteFile::create(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, note TEXT, price REAL NOT NULL);",
    )
    .await;
    assert!(file.path().is_file());
    assert_eq!(file.url(), format!("sqlite:{}", file.path().display()));
    file.exec(
        "INSERT INTO items (id, note, price) \
         WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 500) \
         SELECT n, CASE WHEN n % 7 = 0 THEN NULL ELSE 'note ' || n END, n / 4.0 FROM s",
    )
    .await;
    assert_eq!(file.query_i64("SELECT count(*) FROM items").await, 500);
    assert_eq!(
        file.query_i64("SELECT count(*) FROM items WHERE note IS NULL")
            .await,
        71
    );
    assert_eq!(
        file.query_rows("SELECT id, note, price FROM items WHERE id IN (6, 7) ORDER BY id")
            .await,
        vec![
            vec![Some("6".into()), Some("note 6".into()), Some("1.5".into())],
            vec![Some("7".into()), None, Some("1.75".into())],
        ]
    );

    // The URL is one sqlx accepts, and it never creates a missing file.
    let conn = SqliteConnection::connect(&file.url())
        .await
        .expect("open with SqliteFile::url");
    conn.close().await.expect("close");
    let missing = SqliteFile::missing();
    assert!(
        SqliteConnection::connect(&missing.url()).await.is_err(),
        "a missing file is an error"
    );
    assert!(!missing.path().exists(), "opening did not create the file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_read_only_file_refuses_writes() {
    let file =
        SqliteFile::create("CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);")
            .await;

    file.make_read_only();
    let refused = file
        .try_exec("INSERT INTO t VALUES (2)")
        .await
        .expect("a write into a read-only file fails");
    let code = refused
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("8"), "SQLITE_READONLY, got {refused}");
    assert_eq!(
        file.query_i64("SELECT count(*) FROM t").await,
        1,
        "reads still work"
    );

    file.make_writable();
    file.exec("INSERT INTO t VALUES (2)").await;
    assert_eq!(file.query_i64("SELECT count(*) FROM t").await, 2);

    // `?mode=ro` refuses writes on that connection even though the file is writable.
    let mut conn = SqliteConnection::connect(&file.read_only_url())
        .await
        .expect("open read-only");
    let refused = sqlx::raw_sql("INSERT INTO t VALUES (3)")
        .execute(&mut conn)
        .await
        .expect_err("a write through mode=ro fails");
    let code = refused
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("8"), "SQLITE_READONLY, got {refused}");
    conn.close().await.expect("close");
    assert_eq!(file.query_i64("SELECT count(*) FROM t").await, 2);

    // Dropping a read-only file removes it and its dir.
    let dir = file.dir().to_path_buf();
    file.make_read_only();
    drop(file);
    assert!(!dir.exists(), "{} removed", dir.display());
}

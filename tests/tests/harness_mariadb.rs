//! The MariaDB and SQLite parts of the harness: the `items` fixture gives
//! the same portable checksum in PostgreSQL, MariaDB and SQLite (and a
//! changed value changes it); a real MariaDB server SIGKILLed or stopped and
//! restarted on its port keeps exactly its committed rows; Ferry's account
//! is refused writes when read-only or without the privilege; a SQLite file
//! opens by every URL form and refuses writes when read-only, root or not.

use std::time::Instant;

use ferry_tests::data::{create_items_table, fill_items};
use ferry_tests::mariadb::MariaDb;
use ferry_tests::mariadb_access::error_number;
use ferry_tests::net::port_open;
use ferry_tests::portable_checksum::{pg_items_checksum, Checksum};
use ferry_tests::postgres::PgCluster;
use ferry_tests::sqlite_file::SqliteFile;
use sqlx::{Connection, MySqlConnection, SqliteConnection};

/// Rows of the cross-database fixture: enough for 100 awkward notes.
const ROWS: u64 = 100_000;

/// `SELECT count(*) FROM items`.
const COUNT_ITEMS: &str = "SELECT count(*) FROM items";

/// The checksum the fixture of `rows` rows must have: the one PostgreSQL
/// computes for its own `items`.
async fn postgres_items_checksum(rows: u64) -> Checksum {
    let pg = PgCluster::start();
    pg.create_db("src").await;
    let client = pg.client("src").await;
    create_items_table(&client, "public.items").await;
    fill_items(&client, "public.items", rows).await;
    pg_items_checksum(&client, "public.items").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_fixture_has_one_checksum_in_postgres_mariadb_and_sqlite() {
    let expected = postgres_items_checksum(ROWS).await;
    assert_eq!(expected.rows, ROWS as i64);
    assert_eq!(expected.key_sum, i128::from(ROWS * (ROWS + 1) / 2));

    let my = MariaDb::start();
    my.create_db("src").await;
    my.prepare_items("src", ROWS).await;
    assert_eq!(my.items_checksum("src", "items").await, expected, "MariaDB");

    let file = SqliteFile::create("").await;
    file.prepare_items(ROWS).await;
    assert_eq!(file.items_checksum("items").await, expected, "SQLite");

    // The awkward note survives as written: tab, newline, backslash, quote, ü.
    let awkward = Some("tab\there, nl\nthere, bs\\ quote' \u{fc}ber 2001".to_string());
    let note = "SELECT note FROM items WHERE id = 2001";
    assert_eq!(
        my.query_rows("src", note).await,
        vec![vec![awkward.clone()]]
    );
    assert_eq!(file.query_rows(note).await, vec![vec![awkward]]);

    // One changed value, a NULL, a shifted timestamp, a duplicated row: each
    // changes the checksum.
    let changes = [
        "UPDATE {t} SET amount = amount + 0.01 WHERE id = 500",
        "UPDATE {t} SET note = NULL WHERE id = 500",
        "UPDATE {t} SET created_at = created_at + INTERVAL 1 SECOND WHERE id = 500",
    ];
    for (i, change) in changes.iter().enumerate() {
        let table = format!("changed{i}");
        my.exec(
            "src",
            &format!("CREATE TABLE {table} AS SELECT * FROM items WHERE id <= 1000"),
        )
        .await;
        let before = my.items_checksum("src", &table).await;
        let change = change.replace("{t}", &table);
        my.exec("src", &change).await;
        let after = my.items_checksum("src", &table).await;
        assert_eq!(after.rows, before.rows, "{change}");
        assert_ne!(after, before, "{change} must change the checksum");
    }
    file.create_items_without_key("twice").await;
    file.exec(
        "INSERT INTO twice SELECT * FROM items; INSERT INTO twice SELECT * FROM items WHERE id = 7",
    )
    .await;
    let twice = file.items_checksum("twice").await;
    assert_eq!(twice.rows, expected.rows + 1);
    assert_ne!(twice.digest, expected.digest, "a duplicated row shows");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_keeps_committed_rows_across_sigkill_and_restart() {
    let started = Instant::now();
    let my = MariaDb::start();
    eprintln!("MariaDB ready in {:?}", started.elapsed());
    let port = my.port();
    assert_eq!(
        my.url("src"),
        format!("mysql://ferry:secret@127.0.0.1:{port}/src")
    );
    my.create_db("src").await;
    my.prepare_items("src", 10_000).await;
    let committed = my.items_checksum("src", "items").await;
    assert_eq!(committed.rows, 10_000);

    // Ferry's URLs are ones sqlx accepts (mariadb:// is Ferry's alias).
    assert!(my.mariadb_url("src").starts_with("mariadb://ferry:secret@"));
    let mut conn = MySqlConnection::connect(&my.url("src"))
        .await
        .expect("connect with MariaDb::url");
    // A transaction still open at the SIGKILL: its rows must not survive.
    sqlx::raw_sql(
        "BEGIN; INSERT INTO items SELECT id + 10000, customer_id, amount, status, note, \
         created_at FROM items WHERE id <= 500",
    )
    .execute(&mut conn)
    .await
    .expect("insert in an open transaction");

    my.kill();
    assert!(!my.is_running(), "mariadbd is gone after SIGKILL");
    assert!(!port_open(port), "nothing listens on {port} after SIGKILL");
    drop(conn);

    let restarted = Instant::now();
    my.start_again();
    eprintln!(
        "MariaDB restarted after SIGKILL in {:?}",
        restarted.elapsed()
    );
    assert_eq!(my.port(), port);
    assert!(port_open(port), "MariaDB listens on its old port {port}");
    assert_eq!(
        my.items_checksum("src", "items").await,
        committed,
        "committed rows survive SIGKILL unchanged, the open transaction's do not"
    );
    assert_eq!(
        my.query_rows(
            "src",
            "SELECT id, note, amount, created_at FROM items WHERE id IN (6, 7) ORDER BY id"
        )
        .await,
        vec![
            vec![
                Some("6".into()),
                Some("note 6".into()),
                Some("2.22".into()),
                Some("2024-01-01 00:00:06.000000".into())
            ],
            vec![
                Some("7".into()),
                None,
                Some("2.59".into()),
                Some("2024-01-01 00:00:07.000000".into())
            ],
        ]
    );
    assert!(
        my.server_log().contains("ready for connections"),
        "the error log is readable"
    );

    // A clean restart keeps everything too, Ferry's account included.
    my.exec("src", "DELETE FROM items WHERE id > 9000").await;
    let restarted = Instant::now();
    my.restart();
    eprintln!("MariaDB stopped and started in {:?}", restarted.elapsed());
    assert_eq!(my.query_i64("src", COUNT_ITEMS).await, 9_000);
    my.exec_as_ferry("src", "DELETE FROM items WHERE id > 8000")
        .await
        .expect("Ferry's account logs in and writes after a restart");
    assert_eq!(my.query_i64("src", COUNT_ITEMS).await, 8_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_refuses_writes_when_read_only_or_not_granted() {
    let my = MariaDb::start();
    my.create_db("dst").await;
    my.create_items("dst", "items").await;
    let insert = "INSERT INTO items VALUES (1, 1, 1.00, 'new', NULL, '2024-01-01 00:00:00')";

    my.set_read_only(true).await;
    let refused = my
        .exec_as_ferry("dst", insert)
        .await
        .expect_err("a write by Ferry's account into a read-only server fails");
    assert_eq!(error_number(&refused), Some(1290), "read-only: {refused}");
    my.set_read_only(false).await;
    my.exec_as_ferry("dst", insert)
        .await
        .expect("writes again once read-only is lifted");

    my.create_user("reader", "pw", &["SELECT ON dst.*"]).await;
    assert_eq!(
        my.url_as("reader", "pw", "dst"),
        format!("mysql://reader:pw@127.0.0.1:{}/dst", my.port())
    );
    let mut reader = MySqlConnection::connect(&my.url_as("reader", "pw", "dst"))
        .await
        .expect("the reader logs in");
    let count: (i64,) = sqlx::query_as("SELECT count(*) FROM items")
        .fetch_one(&mut reader)
        .await
        .expect("the reader reads");
    assert_eq!(count.0, 1);
    let refused = sqlx::raw_sql(
        "INSERT INTO items SELECT id + 1, customer_id, amount, status, note, created_at FROM items",
    )
    .execute(&mut reader)
    .await
    .expect_err("the reader may not insert");
    assert_eq!(error_number(&refused), Some(1142), "not granted: {refused}");

    // A revoke reaches an open session at its next statement.
    my.grant("reader", "INSERT ON dst.items").await;
    sqlx::raw_sql(
        "INSERT INTO items SELECT id + 1, customer_id, amount, status, note, created_at FROM items",
    )
    .execute(&mut reader)
    .await
    .expect("granted INSERT");
    my.revoke("reader", "INSERT ON dst.items").await;
    let refused = sqlx::raw_sql(
        "INSERT INTO items SELECT id + 2, customer_id, amount, status, note, created_at FROM items",
    )
    .execute(&mut reader)
    .await
    .expect_err("revoked INSERT");
    assert_eq!(error_number(&refused), Some(1142), "revoked: {refused}");
    reader.close().await.expect("close");
    assert_eq!(my.query_i64("dst", COUNT_ITEMS).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_opens_by_every_url_form_and_keeps_its_rows() {
    let file = SqliteFile::create("").await;
    file.prepare_items(5_000).await;
    let written = file.items_checksum("items").await;
    assert_eq!(written.rows, 5_000);
    let path = file.path().display().to_string();
    assert_eq!(file.url(), format!("sqlite://{path}"));
    assert!(file.url().starts_with("sqlite:///"), "{}", file.url());
    assert_eq!(file.path_url(), format!("sqlite:{path}"));
    assert_eq!(
        file.query_rows(
            "SELECT id, note, amount, created_at FROM items WHERE id IN (6, 7) ORDER BY id"
        )
        .await,
        vec![
            vec![
                Some("6".into()),
                Some("note 6".into()),
                Some("2.22".into()),
                Some("2024-01-01 00:00:06+00:00".into())
            ],
            vec![
                Some("7".into()),
                None,
                Some("2.59".into()),
                Some("2024-01-01 00:00:07+00:00".into())
            ],
        ]
    );

    // Every URL form opens the same file; none creates a missing one.
    for url in [file.url(), file.path_url()] {
        let mut conn = SqliteConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        let count: (i64,) = sqlx::query_as(COUNT_ITEMS)
            .fetch_one(&mut conn)
            .await
            .expect("count through the URL");
        assert_eq!(count.0, 5_000, "{url}");
        conn.close().await.expect("close");
    }
    let missing = SqliteFile::missing();
    assert!(
        SqliteConnection::connect(&missing.url()).await.is_err(),
        "a missing file is an error"
    );
    assert!(!missing.path().exists(), "opening did not create the file");
    assert_eq!(missing.relative_url(), "sqlite:db.sqlite");

    // Closed and opened again (SQLite's "restart"), the rows are the same.
    assert_eq!(file.items_checksum("items").await, written);
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

//! Connectors: the `items` table goes between PostgreSQL, MariaDB and SQLite
//! in every direction with `ferry local`, and every copy has the source's
//! portable checksum (count, key sum, and a digest of every value); a table
//! made with `--create-table` holds the same rows; bad connections and files
//! are refused with a message that names the problem, and write nothing.

use ferry_tests::cli::{run_cli, CliOutput, Submit, LONG_CLI_TIMEOUT};
use ferry_tests::data::{create_items_table, fill_items};
use ferry_tests::mariadb::MariaDb;
use ferry_tests::portable_checksum::{pg_items_checksum, Checksum};
use ferry_tests::postgres::PgCluster;
use ferry_tests::sqlite_file::SqliteFile;

/// Rows of `items` in the pair matrix: several chunks each way.
const ROWS: u64 = 60_000;

/// `ferry local` from `source` to `target` (URLs) with `job`'s query and flags.
fn local(source: &str, target: &str, job: &Submit) -> CliOutput {
    let args = job.local_args(source, target, 2);
    run_cli(&args, &[("TZ", "UTC")], LONG_CLI_TIMEOUT)
}

fn items() -> Submit {
    Submit::new("SELECT * FROM items", "items")
        .chunk_size(15_000)
        .flag("--min-rows-for-parallel", 0)
}

/// Asserts `out` succeeded and copied `rows` rows in more than one chunk.
fn assert_copied(what: &str, out: &CliOutput, rows: u64) {
    assert!(out.success(), "{what}: {out}");
    let all = out.all();
    assert!(
        all.contains(&format!("{rows} rows copied (0 rejected)")),
        "{what}: expected {rows} rows copied: {out}"
    );
    assert!(
        !all.contains(" 1 chunks,"),
        "{what}: expected several chunks: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_travel_every_pair_of_databases_exactly() {
    let pg = PgCluster::start();
    for db in ["src", "back", "back2"] {
        pg.create_db(db).await;
    }
    let src = pg.client("src").await;
    create_items_table(&src, "public.items").await;
    fill_items(&src, "public.items", ROWS).await;
    let want: Checksum = pg_items_checksum(&src, "public.items").await;
    assert_eq!(want.rows, ROWS as i64);

    let my = MariaDb::start();
    for db in ["a", "b"] {
        my.create_db(db).await;
        my.create_items(db, "items").await;
    }
    let lite_a = SqliteFile::create("").await;
    lite_a.create_items("items").await;
    let lite_b = SqliteFile::create("").await;
    lite_b.create_items("items").await;
    for db in ["back", "back2"] {
        create_items_table(&pg.client(db).await, "public.items").await;
    }

    // PostgreSQL → MariaDB → MariaDB → SQLite → SQLite → PostgreSQL.
    let hops = [
        ("postgres → mariadb", pg.url("src"), my.url("a")),
        ("mariadb → mariadb", my.url("a"), my.url("b")),
        ("mariadb → sqlite", my.url("b"), lite_a.url()),
        ("sqlite → sqlite", lite_a.url(), lite_b.url()),
        ("sqlite → postgres", lite_b.url(), pg.url("back")),
    ];
    for (what, from, to) in &hops {
        assert_copied(what, &local(from, to, &items()), ROWS);
    }
    assert_eq!(my.items_checksum("a", "items").await, want, "in MariaDB a");
    assert_eq!(my.items_checksum("b", "items").await, want, "in MariaDB b");
    assert_eq!(lite_a.items_checksum("items").await, want, "in SQLite a");
    assert_eq!(lite_b.items_checksum("items").await, want, "in SQLite b");
    let back = pg.client("back").await;
    assert_eq!(
        pg_items_checksum(&back, "public.items").await,
        want,
        "back in PostgreSQL"
    );

    // The other directions: PostgreSQL → SQLite, SQLite → MariaDB, MariaDB → PostgreSQL.
    for t in ["items"] {
        lite_a.exec(&format!("DELETE FROM {t}")).await;
        my.exec("a", &format!("DELETE FROM {t}")).await;
    }
    assert_copied(
        "postgres → sqlite",
        &local(&pg.url("src"), &lite_a.url(), &items()),
        ROWS,
    );
    assert_copied(
        "sqlite → mariadb",
        &local(&lite_a.url(), &my.url("a"), &items()),
        ROWS,
    );
    assert_copied(
        "mariadb → postgres",
        &local(&my.url("a"), &pg.url("back2"), &items()),
        ROWS,
    );
    assert_eq!(
        lite_a.items_checksum("items").await,
        want,
        "postgres → sqlite"
    );
    assert_eq!(
        my.items_checksum("a", "items").await,
        want,
        "sqlite → mariadb"
    );
    let back2 = pg.client("back2").await;
    assert_eq!(
        pg_items_checksum(&back2, "public.items").await,
        want,
        "mariadb → postgres"
    );

    // --create-table makes the target from the query's columns.
    let made = SqliteFile::create("").await;
    let out = local(
        &pg.url("src"),
        &made.url(),
        &items().args(&["--create-table"]),
    );
    assert_copied("postgres → new sqlite table", &out, ROWS);
    assert_eq!(
        made.items_checksum("items").await,
        want,
        "created in SQLite"
    );
    my.create_db("made").await;
    let out = local(
        &lite_b.url(),
        &my.url("made"),
        &items().args(&["--create-table"]),
    );
    assert_copied("sqlite → new mariadb table", &out, ROWS);
    assert_eq!(
        my.items_checksum("made", "items").await,
        want,
        "created in MariaDB"
    );
    // without the flag a missing table is refused and named
    let out = local(
        &pg.url("src"),
        &my.url("made"),
        &Submit::new("SELECT * FROM items", "nowhere"),
    );
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains("nowhere") && out.stderr.contains("--create-table"),
        "the error should name the table and the flag: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_connections_and_files_are_refused_naming_the_problem() {
    let pg = PgCluster::start();
    pg.create_db("src").await;
    pg.create_db("dst").await;
    let src = pg.client("src").await;
    create_items_table(&src, "public.items").await;
    fill_items(&src, "public.items", 1_000).await;
    let lite = SqliteFile::create("").await;
    lite.create_items("items").await;

    // a mysql:// URL pointing at PostgreSQL's port
    let wrong = format!("mysql://ferry:secret@127.0.0.1:{}/dst", pg.port());
    let out = local(&pg.url("src"), &wrong, &items());
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains("target") && !out.stderr.contains("secret"),
        "the error names the connection and never its password: {out}"
    );

    // a SQLite source file that does not exist is not created
    let missing = SqliteFile::missing();
    let out = local(&missing.url(), &pg.url("dst"), &items());
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains("does not exist"),
        "the error should say the file does not exist: {out}"
    );
    assert!(
        !missing.path().exists(),
        "a missing source file was created"
    );

    // a read-only SQLite target
    lite.make_read_only();
    let out = local(&pg.url("src"), &lite.url(), &items());
    lite.make_writable();
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains("cannot be written"),
        "the error should say the target cannot be written: {out}"
    );
    assert_eq!(lite.query_i64("SELECT count(*) FROM items").await, 0);

    // an unsupported scheme
    let out = local(
        "oracle://scott:tiger@127.0.0.1:1521/orcl",
        &lite.url(),
        &items(),
    );
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains("oracle") && !out.stderr.contains("tiger"),
        "the error should name the scheme and hide the password: {out}"
    );
    assert_eq!(lite.query_i64("SELECT count(*) FROM items").await, 0);
}

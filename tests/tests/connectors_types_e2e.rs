//! Type mapping between PostgreSQL, MariaDB and SQLite (docs/type-mapping.md):
//! a table with one column per type family and awkward values (NULLs,
//! extreme integers, inexact floats, 38-digit decimals, empty and unicode
//! text, control characters, every byte, far dates, microseconds, time
//! zones) travels all eight pairs with `ferry local` and comes back into
//! PostgreSQL row for row identical to the source; MariaDB's unsigned
//! integers, ENUM and SET land exactly; a value that does not fit its target
//! column is a rejected row; a column pair with no mapping is a planning
//! error naming the column and both types.

use ferry_tests::cli::{run_cli, CliOutput, Submit, LONG_CLI_TIMEOUT};
use ferry_tests::mariadb::MariaDb;
use ferry_tests::postgres::PgCluster;
use ferry_tests::sqlite_file::SqliteFile;
use tokio_postgres::Client;

/// The type matrix in PostgreSQL: one column per type family.
const KINDS_DDL: &str = "CREATE TABLE kinds (
    id bigint PRIMARY KEY,
    c_small smallint, c_int integer, c_big bigint,
    c_dec numeric(12,2), c_bigdec numeric(38,10),
    c_real real, c_double double precision,
    c_text text, c_vc varchar(20), c_bytes bytea, c_bool boolean,
    c_date date, c_time time, c_ts timestamp, c_tstz timestamptz,
    c_uuid uuid, c_json jsonb)";

/// Awkward rows: minimums, maximums, control characters, all NULL, middles.
const KINDS_ROWS: &str = r#"
INSERT INTO kinds VALUES
 (1, -32768, -2147483648, -9223372036854775808, -9999999999.99,
  -9999999999999999999999999999.9999999999, 0.1, 0.1::float8 + 0.2::float8,
  '', '', '\x', false, '0001-01-01', '00:00:00', '0001-01-01 00:00:00',
  '0001-01-01 00:00:00+00', '00000000-0000-0000-0000-000000000000', '{}'),
 (2, 32767, 2147483647, 9223372036854775807, 9999999999.99,
  9999999999999999999999999999.9999999999, 3.4028235e38, 1.7976931348623157e308,
  'Grüße 🦀 中文 עברית', 'naïve 🦀 ok', (SELECT decode(string_agg(lpad(to_hex(g), 2, '0'), '' ORDER BY g), 'hex') FROM generate_series(0, 255) g),
  true, '9999-12-31', '23:59:59.999999', '9999-12-31 23:59:59.999999',
  '9999-12-31 23:59:59.999999+00', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
  '{"k": [1, 2.5, "x\"y"], "ü": null, "🦀": true}'),
 (3, 0, 0, 0, 0.01, 0.0000000001, -1.17549435e-38, 5e-324,
  E'tab\there\nnewline\\backslash "quote'' \r end', E'a\tb\\c\nd',
  '\x00ff5c0a0d0927', false, '2000-02-29', '12:34:56.000001',
  '1970-01-01 00:00:00.000001', '2024-01-01 10:00:00.123456+02',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '[1, "two", {"three": 3}]'),
 (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL),
 (5, 1, -1, 4611686018427387904, 123.45, 1234567890123456789.0123456789,
  3.14159, 2.718281828459045, 'x', 'NULL', '\x00', true, '1969-12-31',
  '00:00:00.5', '1900-01-01 12:00:00', '1969-07-20 20:17:40+00',
  '123e4567-e89b-12d3-a456-426614174000', '"just a string"')"#;

/// `ferry local` from `source` to `target` (URLs).
fn local(source: &str, target: &str, job: &Submit) -> CliOutput {
    run_cli(
        &job.local_args(source, target, 2),
        &[("TZ", "UTC")],
        LONG_CLI_TIMEOUT,
    )
}

/// A job copying `query` into `table`, creating the table when missing.
fn job(query: &str, table: &str) -> Submit {
    Submit::new(query, table).args(&["--create-table"])
}

/// Asserts `out` succeeded with `rows` rows copied and `rejected` rejected.
fn assert_copied(what: &str, out: &CliOutput, rows: u64, rejected: u64) {
    assert!(out.success(), "{what}: {out}");
    assert!(
        out.all()
            .contains(&format!("{rows} rows copied ({rejected} rejected)")),
        "{what}: expected {rows} rows copied ({rejected} rejected): {out}"
    );
}

/// The rejects Ferry recorded in MariaDB (key, SQLSTATE, message), for
/// failure messages.
async fn my_rejects(my: &MariaDb) -> Vec<String> {
    my.query_rows(
        "ferry",
        "SELECT `key`, `sqlstate`, message FROM rejects ORDER BY id",
    )
    .await
    .iter()
    .map(|r| format!("{r:?}"))
    .collect()
}

/// Every row of `table` as PostgreSQL's text form of the whole row, by id.
async fn pg_rows(client: &Client, table: &str) -> Vec<String> {
    client
        .query(&format!("SELECT t::text FROM {table} t ORDER BY id"), &[])
        .await
        .unwrap_or_else(|e| panic!("read {table}: {e}"))
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

/// Asserts two row lists are equal, naming the first row that differs.
fn assert_same_rows(what: &str, got: &[String], want: &[String]) {
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, w, "{what}: a row differs from the source's");
    }
    assert_eq!(got.len(), want.len(), "{what}: row count");
}

/// Starts PostgreSQL with the type matrix in `src` and empty copies of its
/// table in each of `backs`.
async fn pg_with_kinds(backs: &[&str]) -> (PgCluster, Vec<String>) {
    let pg = PgCluster::start();
    pg.create_db("src").await;
    let src = pg.client("src").await;
    src.batch_execute(&format!("SET TIME ZONE 'UTC'; {KINDS_DDL}; {KINDS_ROWS}"))
        .await
        .unwrap_or_else(|e| panic!("create kinds: {e}"));
    for db in backs {
        pg.create_db(db).await;
        pg.client(db)
            .await
            .batch_execute(KINDS_DDL)
            .await
            .unwrap_or_else(|e| panic!("create kinds in {db}: {e}"));
    }
    let want = pg_rows(&src, "kinds").await;
    assert_eq!(want.len(), 5);
    (pg, want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_travels_all_eight_pairs_exactly() {
    let (pg, want) = pg_with_kinds(&["back1", "back2"]).await;
    let my = MariaDb::start();
    for db in ["a", "b", "c"] {
        my.create_db(db).await;
    }
    let (lite_a, lite_b, lite_c) = (
        SqliteFile::create("").await,
        SqliteFile::create("").await,
        SqliteFile::create("").await,
    );
    let all = "SELECT * FROM kinds";
    // PostgreSQL → MariaDB → MariaDB → SQLite → SQLite → PostgreSQL, every
    // target but the last made by --create-table from the mapped types.
    let first = [
        ("postgres → mariadb", pg.url("src"), my.url("a")),
        ("mariadb → mariadb", my.url("a"), my.url("b")),
        ("mariadb → sqlite", my.url("b"), lite_a.url()),
        ("sqlite → sqlite", lite_a.url(), lite_b.url()),
        ("sqlite → postgres", lite_b.url(), pg.url("back1")),
    ];
    // PostgreSQL → SQLite → MariaDB → PostgreSQL.
    let second = [
        ("postgres → sqlite", pg.url("src"), lite_c.url()),
        ("sqlite → mariadb", lite_c.url(), my.url("c")),
        ("mariadb → postgres", my.url("c"), pg.url("back2")),
    ];
    for (what, from, to) in first.iter().chain(&second) {
        assert_copied(what, &local(from, to, &job(all, "kinds")), 5, 0);
    }
    let back1 = pg_rows(&pg.client("back1").await, "kinds").await;
    assert_same_rows("through mariadb and sqlite", &back1, &want);
    let back2 = pg_rows(&pg.client("back2").await, "kinds").await;
    assert_same_rows("through sqlite and mariadb", &back2, &want);

    // What --create-table made in MariaDB from PostgreSQL's types.
    let made = my
        .query_rows(
            "a",
            "SELECT column_name, column_type FROM information_schema.columns
              WHERE table_schema = 'a' AND table_name = 'kinds' ORDER BY ordinal_position",
        )
        .await;
    let made: Vec<String> = made
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r[0].as_deref().unwrap_or("?"),
                r[1].as_deref().unwrap_or("?")
            )
        })
        .collect();
    for want_col in [
        "c_small smallint(6)",
        "c_dec decimal(12,2)",
        "c_bigdec decimal(38,10)",
        "c_real float",
        "c_vc varchar(20)",
        "c_bool tinyint(1)",
        "c_time time(6)",
        "c_ts datetime(6)",
        "c_tstz datetime(6)",
        "c_uuid char(36)",
    ] {
        assert!(made.iter().any(|c| c == want_col), "{want_col} in {made:?}");
    }

    // The time-zone rule: an instant lands in MariaDB's DATETIME and in
    // SQLite's text as its UTC wall-clock time (SQLite with `+00:00`).
    let at = "SELECT CAST(c_tstz AS CHAR) FROM kinds WHERE id = 3";
    assert_eq!(
        my.query_rows("a", at).await,
        vec![vec![Some("2024-01-01 08:00:00.123456".to_string())]]
    );
    assert_eq!(
        lite_c
            .query_rows("SELECT c_tstz FROM kinds WHERE id = 3")
            .await,
        vec![vec![Some("2024-01-01 08:00:00.123456+00:00".to_string())]]
    );
    // SQLite: booleans are 0/1 integers, NULL and '' stay apart, a real
    // keeps the float's exact value.
    let lite = lite_c
        .query_rows(
            "SELECT id, c_bool, typeof(c_bool), c_text IS NULL, c_text = '', c_vc
               FROM kinds WHERE id IN (1, 4, 5) ORDER BY id",
        )
        .await;
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        lite,
        vec![
            vec![s("1"), s("0"), s("integer"), s("0"), s("1"), s("")],
            vec![s("4"), None, s("null"), s("1"), None, None],
            vec![s("5"), s("1"), s("integer"), s("0"), s("0"), s("NULL")],
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamptz_into_mariadb_timestamp_and_datetime_keeps_the_instant() {
    let (pg, _) = pg_with_kinds(&["back"]).await;
    let my = MariaDb::start();
    my.create_db("z").await;
    my.exec(
        "z",
        "CREATE TABLE zones (id bigint PRIMARY KEY, dt datetime(6), ts timestamp(6) NULL)",
    )
    .await;
    let q = "SELECT id, c_tstz AS dt, c_tstz AS ts FROM kinds WHERE id IN (3, 4)";
    assert_copied(
        "postgres → mariadb zones",
        &local(&pg.url("src"), &my.url("z"), &Submit::new(q, "zones")),
        2,
        0,
    );
    let rows = my
        .query_rows(
            "z",
            "SELECT CAST(dt AS CHAR), CAST(ts AS CHAR), CAST(UNIX_TIMESTAMP(ts) AS CHAR)
               FROM zones ORDER BY id",
        )
        .await;
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        rows,
        vec![
            vec![
                s("2024-01-01 08:00:00.123456"),
                s("2024-01-01 08:00:00.123456"),
                s("1704096000.123456")
            ],
            vec![None, None, None],
        ]
    );
    // and back: both read as the same instant
    let back = pg.client("back").await;
    back.batch_execute(
        "CREATE TABLE zones (id bigint PRIMARY KEY, dt timestamptz, ts timestamptz)",
    )
    .await
    .unwrap_or_else(|e| panic!("create zones: {e}"));
    assert_copied(
        "mariadb → postgres zones",
        &local(
            &my.url("z"),
            &pg.url("back"),
            &Submit::new("SELECT * FROM zones", "zones"),
        ),
        2,
        0,
    );
    let row = back
        .query_one(
            "SELECT (dt = '2024-01-01 10:00:00.123456+02')::text, (ts = dt)::text FROM zones WHERE id = 3",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("read zones: {e}"));
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("true".to_string(), "true".to_string())
    );
}

/// MariaDB's own types: unsigned integers at their limits, ENUM and SET.
const UNSIGNED_DDL: &str = "CREATE TABLE un (id bigint PRIMARY KEY,
    u8 tinyint unsigned, u16 smallint unsigned, u32 int unsigned,
    u64 bigint unsigned, e enum('small', 'médium', '🦀 big'), st set('a', 'b', 'c', '🦀'))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_unsigned_enum_and_set_land_exactly() {
    let my = MariaDb::start();
    my.create_db("m").await;
    my.create_db("m2").await;
    my.create_db("m3").await;
    my.exec(
        "m",
        &format!(
            "{UNSIGNED_DDL}; INSERT INTO un VALUES
              (1, 255, 65535, 4294967295, 9223372036854775807, '🦀 big', 'a,c'),
              (2, 0, 0, 0, 0, 'small', ''),
              (3, NULL, NULL, NULL, NULL, NULL, NULL),
              (4, 7, 8, 9, 18446744073709551615, 'médium', 'b')"
        ),
    )
    .await;
    let pg = PgCluster::start();
    pg.create_db("p").await;
    let lite = SqliteFile::create("").await;
    let all = "SELECT * FROM un";

    // MariaDB → MariaDB into the same table definition.
    my.exec("m2", UNSIGNED_DDL).await;
    let out = local(&my.url("m"), &my.url("m2"), &Submit::new(all, "un"));
    if !out.all().contains("(0 rejected)") {
        panic!(
            "mariadb → mariadb rejected rows: {:?}",
            my_rejects(&my).await
        );
    }
    assert_copied("mariadb → mariadb", &out, 4, 0);
    let text = "SELECT id, u8, u16, u32, u64, e, st FROM un ORDER BY id";
    assert_eq!(
        my.query_rows("m2", text).await,
        my.query_rows("m", text).await
    );

    // MariaDB → MariaDB with --create-table: the types are the source's, ENUM
    // and SET labels with a 4-byte character included (MariaDB's metadata
    // shows them as '?'; Ferry reads the labels back from the column)
    assert_copied(
        "mariadb → mariadb, --create-table",
        &local(&my.url("m"), &my.url("m3"), &job(all, "un")),
        4,
        0,
    );
    assert_eq!(
        my.query_rows("m3", text).await,
        my.query_rows("m", text).await
    );
    // the created SET takes its emoji member (strict mode refuses a label it lacks)
    my.exec(
        "m3",
        "INSERT INTO un (id, e, st) VALUES (5, '🦀 big', 'a,🦀')",
    )
    .await;
    assert_eq!(
        my.query_rows("m3", "SELECT e, st FROM un WHERE id = 5")
            .await,
        vec![vec![Some("🦀 big".into()), Some("a,🦀".into())]]
    );

    // MariaDB → PostgreSQL: BIGINT UNSIGNED becomes numeric(20,0).
    assert_copied(
        "mariadb → postgres",
        &local(&my.url("m"), &pg.url("p"), &job(all, "un")),
        4,
        0,
    );
    let got = pg_rows(&pg.client("p").await, "un").await;
    assert_eq!(
        got,
        vec![
            "(1,255,65535,4294967295,9223372036854775807,\"🦀 big\",\"a,c\")",
            "(2,0,0,0,0,small,\"\")",
            "(3,,,,,,)",
            "(4,7,8,9,18446744073709551615,médium,b)",
        ]
    );

    // MariaDB → SQLite: SQLite's integers are signed 64-bit, so 2^64-1 does
    // not fit an INTEGER column and is a rejected row.
    assert_copied(
        "mariadb → sqlite",
        &local(&my.url("m"), &lite.url(), &job(all, "un")),
        3,
        1,
    );
    assert_eq!(
        lite.query_rows("SELECT id, u64, typeof(u64), e, st FROM un ORDER BY id")
            .await,
        vec![
            vec![
                Some("1".into()),
                Some("9223372036854775807".into()),
                Some("integer".into()),
                Some("🦀 big".into()),
                Some("a,c".into())
            ],
            vec![
                Some("2".into()),
                Some("0".into()),
                Some("integer".into()),
                Some("small".into()),
                Some("".into())
            ],
            vec![Some("3".into()), None, Some("null".into()), None, None],
        ]
    );
}

/// Values that do not fit the target's columns.
const LOSSY_PG: &str = "CREATE TABLE lossy (id bigint PRIMARY KEY, s text, d numeric, b bigint, dt date, ts timestamptz);
 INSERT INTO lossy VALUES
  (1, 'fits', 123.45, 7, '2024-01-01', '2024-01-01 00:00:00+00'),
  (2, 'too long', 1, 1, '2024-01-01', NULL),
  (3, 'x', 12345.678, 1, '2024-01-01', NULL),
  (4, 'x', 1, 3000000000, '2024-01-01', NULL),
  (5, 'x', 1, 1, '0044-03-15 BC', NULL),
  (6, 'x', 1, 1, '2024-01-01', '2040-01-01 00:00:00+00'),
  (7, 'x', 1.005, 1, '2024-01-01', NULL),
  (8, NULL, NULL, NULL, NULL, NULL)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_that_do_not_fit_are_rejected_rows() {
    let pg = PgCluster::start();
    pg.create_db("src").await;
    pg.create_db("dst").await;
    pg.client("src")
        .await
        .batch_execute(LOSSY_PG)
        .await
        .unwrap_or_else(|e| panic!("create lossy: {e}"));
    let all = "SELECT * FROM lossy";

    // PostgreSQL → MariaDB: varchar(5), decimal(5,2), int, a BC date, an
    // instant past TIMESTAMP's 2038 limit, a third decimal digit.
    let my = MariaDb::start();
    my.create_db("l").await;
    my.exec(
        "l",
        "CREATE TABLE lossy (id bigint PRIMARY KEY, s varchar(5), d decimal(5,2), b int,
           dt date, ts timestamp(6) NULL)",
    )
    .await;
    let out = local(&pg.url("src"), &my.url("l"), &Submit::new(all, "lossy"));
    let rejects = my_rejects(&my).await;
    assert_eq!(rejects.len(), 6, "{rejects:?}");
    // the 2040 instant is refused by Ferry (MariaDB would store NULL)
    assert!(
        rejects
            .iter()
            .any(|r| r.contains("\"6\"") && r.contains("22008")),
        "{rejects:?}"
    );
    assert_copied("postgres → mariadb", &out, 2, 6);
    assert_eq!(
        my.query_rows("l", "SELECT id, s, d, b, dt FROM lossy ORDER BY id")
            .await,
        vec![
            vec![
                Some("1".into()),
                Some("fits".into()),
                Some("123.45".into()),
                Some("7".into()),
                Some("2024-01-01".into())
            ],
            vec![Some("8".into()), None, None, None, None],
        ]
    );

    // PostgreSQL → SQLite: SQLite ignores declared lengths and has 64-bit
    // integers and free dates, but decimals are checked against the declared
    // precision and scale, and a BC date is no date it can hold.
    let lite = SqliteFile::create(
        "CREATE TABLE lossy (id integer PRIMARY KEY, s varchar(5), d decimal(5,2), b int,
           dt date, ts timestamptz)",
    )
    .await;
    let out = local(&pg.url("src"), &lite.url(), &Submit::new(all, "lossy"));
    assert_copied("postgres → sqlite", &out, 5, 3);
    assert_eq!(
        lite.query_i64("SELECT count(*) FROM lossy WHERE id IN (3, 5, 7)")
            .await,
        0
    );

    // SQLite → PostgreSQL: text that is too long, too many digits, an
    // integer overflow, an impossible date, a float that is not whole.
    let lsrc = SqliteFile::create(
        "CREATE TABLE lossy (id integer PRIMARY KEY, s text, d text, b integer, dt text, r real);
         INSERT INTO lossy VALUES (1, 'fits', '123.45', 7, '2024-01-01', 2.0),
           (2, 'too long', '1', 1, '2024-01-01', 1.0), (3, 'x', '12345.678', 1, '2024-01-01', 1.0),
           (4, 'x', '1', 3000000000, '2024-01-01', 1.0), (5, 'x', '1', 1, '2024-02-30', 1.0),
           (6, 'x', '1', 1, '2024-01-01', 1.5), (7, 'x', 'abc', 1, '2024-01-01', 1.0)",
    )
    .await;
    pg.client("dst")
        .await
        .batch_execute(
            "CREATE TABLE lossy (id bigint PRIMARY KEY, s varchar(5), d numeric(5,2), b integer,
               dt date, r integer)",
        )
        .await
        .unwrap_or_else(|e| panic!("create lossy: {e}"));
    let out = local(&lsrc.url(), &pg.url("dst"), &Submit::new(all, "lossy"));
    assert_copied("sqlite → postgres", &out, 1, 6);

    // MariaDB → PostgreSQL: BIGINT UNSIGNED above bigint's range.
    my.exec(
        "l",
        "CREATE TABLE big (id bigint PRIMARY KEY, u bigint unsigned);
         INSERT INTO big VALUES (1, 9223372036854775807), (2, 9223372036854775808)",
    )
    .await;
    pg.client("dst")
        .await
        .batch_execute("CREATE TABLE big (id bigint PRIMARY KEY, u bigint)")
        .await
        .unwrap_or_else(|e| panic!("create big: {e}"));
    let out = local(
        &my.url("l"),
        &pg.url("dst"),
        &Submit::new("SELECT * FROM big", "big"),
    );
    assert_copied("mariadb → postgres", &out, 1, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_pairs_without_a_mapping_are_planning_errors() {
    let (pg, _) = pg_with_kinds(&[]).await;
    let my = MariaDb::start();
    my.create_db("x").await;
    my.exec("x", "CREATE TABLE bad (id bigint PRIMARY KEY, j int)")
        .await;
    let lite = SqliteFile::create("CREATE TABLE bad (id integer PRIMARY KEY, b date)").await;
    let cases = [
        (
            "json into int",
            pg.url("src"),
            my.url("x"),
            "SELECT id, c_json AS j FROM kinds",
            "'j'",
            ["jsonb", "int"],
        ),
        (
            "bytes into date",
            pg.url("src"),
            lite.url(),
            "SELECT id, c_bytes AS b FROM kinds",
            "'b'",
            ["bytea", "date"],
        ),
    ];
    for (what, from, to, query, column, types) in cases {
        let out = local(&from, &to, &Submit::new(query, "bad"));
        assert!(!out.success(), "{what}: {out}");
        let err = out.stderr.to_ascii_lowercase();
        assert!(
            err.contains(&format!("column {column}")) && types.iter().all(|t| err.contains(t)),
            "{what}: the error should name the column and both types: {out}"
        );
    }
    assert_eq!(my.query_i64("x", "SELECT count(*) FROM bad").await, 0);
    assert_eq!(lite.query_i64("SELECT count(*) FROM bad").await, 0);
}

/// Values at the edges of what a target can hold, one per row: NaN and
/// -Infinity, `time '24:00:00'`, year 10000 as timestamp, timestamptz and
/// date, a `json` (not jsonb) value with a repeated key and odd spacing,
/// and a plain row.
const EDGE_PG: &str = r#"CREATE TABLE edge (id bigint PRIMARY KEY, f float8, t time,
   ts timestamp, tz timestamptz, d date, j json);
 INSERT INTO edge (id) VALUES (1), (2), (3), (4), (5), (6), (7), (8);
 UPDATE edge SET f = 'NaN' WHERE id = 1;
 UPDATE edge SET f = '-Infinity' WHERE id = 2;
 UPDATE edge SET t = '24:00:00' WHERE id = 3;
 UPDATE edge SET ts = '10000-01-01 00:00:00' WHERE id = 4;
 UPDATE edge SET tz = '10000-01-01 00:00:00+00' WHERE id = 5;
 UPDATE edge SET d = '10000-01-01' WHERE id = 6;
 UPDATE edge SET j = '{"a": 1,  "a": 2}' WHERE id = 7;
 UPDATE edge SET f = 1.5, j = '[1,2]' WHERE id = 8"#;

/// (key, SQLSTATE) of each reject, sorted by key.
fn keyed_states(rows: Vec<Vec<Option<String>>>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = rows
        .into_iter()
        .map(|r| {
            let key = r[0].clone().unwrap_or_default();
            (
                key.trim_matches(|c| c == '[' || c == ']' || c == '"')
                    .to_string(),
                r[1].clone().unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_values_land_exactly_or_are_rejected() {
    let pg = PgCluster::start();
    pg.create_db("src").await;
    pg.create_db("back").await;
    let src = pg.client("src").await;
    src.batch_execute(EDGE_PG)
        .await
        .unwrap_or_else(|e| panic!("create edge: {e}"));
    let all = "SELECT * FROM edge";
    let states = |ids: &[(&str, &str)]| -> Vec<(String, String)> {
        ids.iter()
            .map(|(k, s)| (k.to_string(), s.to_string()))
            .collect()
    };

    // PostgreSQL → MariaDB: MySQL has no NaN or infinity (the server refuses
    // them, 22003); 24:00:00 and year 10000 are no value Ferry carries (22007)
    let my = MariaDb::start();
    my.create_db("e").await;
    my.exec(
        "e",
        "CREATE TABLE edge (id bigint PRIMARY KEY, f double, t time(6), ts datetime(6),
           tz datetime(6), d date, j json)",
    )
    .await;
    let out = local(&pg.url("src"), &my.url("e"), &Submit::new(all, "edge"));
    assert_copied("postgres → mariadb", &out, 2, 6);
    let rejects = my
        .query_rows("ferry", "SELECT `key`, `sqlstate` FROM rejects ORDER BY id")
        .await;
    assert_eq!(
        keyed_states(rejects),
        states(&[
            ("1", "22003"),
            ("2", "22003"),
            ("3", "22007"),
            ("4", "22007"),
            ("5", "22007"),
            ("6", "22007")
        ]),
        "{:?}",
        my_rejects(&my).await
    );

    // PostgreSQL → SQLite: -Infinity is a REAL SQLite keeps; NaN would be
    // stored as NULL, so Ferry refuses it (22003)
    let lite = SqliteFile::create(
        "CREATE TABLE edge (id integer PRIMARY KEY, f real, t time, ts timestamp,
           tz timestamptz, d date, j json)",
    )
    .await;
    let out = local(&pg.url("src"), &lite.url(), &Submit::new(all, "edge"));
    assert_copied("postgres → sqlite", &out, 3, 5);
    let rejects = lite
        .query_rows("SELECT key, sqlstate FROM ferry_rejects ORDER BY rowid")
        .await;
    assert_eq!(
        keyed_states(rejects),
        states(&[
            ("1", "22003"),
            ("3", "22007"),
            ("4", "22007"),
            ("5", "22007"),
            ("6", "22007")
        ]),
    );

    // back into PostgreSQL from both: -Infinity and the json text unchanged
    let back = pg.client("back").await;
    back.batch_execute(
        "CREATE TABLE from_my (id bigint PRIMARY KEY, f float8, j json);
         CREATE TABLE from_lite (id bigint PRIMARY KEY, f float8, j json)",
    )
    .await
    .unwrap_or_else(|e| panic!("create back: {e}"));
    let out = local(
        &my.url("e"),
        &pg.url("back"),
        &Submit::new("SELECT id, f, j FROM edge", "from_my"),
    );
    assert_copied("mariadb → postgres", &out, 2, 0);
    let out = local(
        &lite.url(),
        &pg.url("back"),
        &Submit::new("SELECT id, f, j FROM edge", "from_lite"),
    );
    assert_copied("sqlite → postgres", &out, 3, 0);
    let want = pg_rows(&src, "(SELECT id, f, j FROM edge WHERE id IN (2, 7, 8))").await;
    assert_same_rows(
        "sqlite → postgres",
        &pg_rows(&back, "from_lite").await,
        &want,
    );
    assert_same_rows(
        "mariadb → postgres",
        &pg_rows(&back, "from_my").await,
        &want[1..],
    );
}

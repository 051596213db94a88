use chrono::{NaiveDate, TimeZone, Utc};
use ferry_common::errors::ErrorClass;
use sqlx::Row as _;

use super::*;
use crate::sqlite::session::exec;
use crate::sqlite::test_file::file;
use crate::value::Value;

fn row(id: i64, v: Value) -> Row {
    vec![Value::Int(id), v]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_value_lands_as_sqlite_stores_it_in_the_open_transaction() {
    let (path, mut conn) = file("raw-write", "CREATE TABLE t (id INTEGER PRIMARY KEY, v)").await;
    let table = TableRef::new("main".to_string(), "t".to_string());
    let insert = Insert::new(&table, &["id", "v"], &[]);
    let date = NaiveDate::from_ymd_opt(2024, 2, 29).expect("a date");
    let ts = date.and_hms_micro_opt(23, 59, 58, 123_456).expect("a time");
    let values = vec![
        Value::Null,
        Value::Bool(true),
        Value::Int(i64::MIN),
        Value::UInt(u64::MAX),
        Value::Float(-0.5),
        Value::Decimal("12345678901234567890.0001".into()),
        Value::Text("it's \u{1F600}".into()),
        Value::Text(String::new()),
        Value::Bytes(vec![0, 1, 255]),
        Value::Date(date),
        Value::Timestamp(ts),
        Value::TimestampTz(Utc.from_utc_datetime(&ts)),
        Value::Json("{\"a\": [1]}".into()),
    ];
    let n = values.len();
    // 1,000 more rows: two full statements of 500 and a shorter last one
    let mut rows: Vec<Row> = values
        .iter()
        .enumerate()
        .map(|(i, v)| row(i as i64 + 1, v.clone()))
        .collect();
    rows.extend((0..1000).map(|i| row(100 + i, Value::Int(i))));
    exec(&mut conn, "BEGIN").await.expect("begin");
    assert_eq!(
        insert.rows(&mut conn, &rows).await.expect("insert"),
        rows.len() as u64
    );
    exec(&mut conn, "ROLLBACK").await.expect("rollback");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(left, 0, "the rows were part of the rolled-back transaction");

    assert_eq!(
        insert.rows(&mut conn, &rows).await.expect("insert"),
        rows.len() as u64
    );
    let got = sqlx::query(
        "SELECT typeof(v), CASE typeof(v) WHEN 'blob' THEN hex(v) ELSE CAST(v AS TEXT) END \
         FROM t WHERE id <= ? ORDER BY id",
    )
    .bind(n as i64)
    .fetch_all(&mut conn)
    .await
    .expect("read back");
    let got: Vec<(String, Option<String>)> = got
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<Option<String>, _>(1)))
        .collect();
    let want = [
        ("null", None),
        ("integer", Some("1")),
        ("integer", Some("-9223372036854775808")),
        ("text", Some("18446744073709551615")),
        ("real", Some("-0.5")),
        ("text", Some("12345678901234567890.0001")),
        ("text", Some("it's \u{1F600}")),
        ("text", Some("")),
        ("blob", Some("0001FF")),
        ("text", Some("2024-02-29")),
        ("text", Some("2024-02-29 23:59:58.123456")),
        ("text", Some("2024-02-29 23:59:58.123456+00:00")),
        ("text", Some("{\"a\": [1]}")),
    ];
    for (i, ((t, v), (wt, wv))) in got.iter().zip(want.iter()).enumerate() {
        assert_eq!(t, wt, "value {i}");
        assert_eq!(v.as_deref(), *wv, "value {i}");
    }
    let sum: i64 = sqlx::query_scalar("SELECT sum(v) FROM t WHERE id >= 100")
        .fetch_one(&mut conn)
        .await
        .expect("sum");
    assert_eq!(sum, 999 * 1000 / 2);
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn a_refused_row_is_a_data_failure_with_its_sqlstate() {
    let (path, mut conn) = file(
        "raw-write-refused",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
    )
    .await;
    let table = TableRef::new("main".to_string(), "t".to_string());
    let insert = Insert::new(&table, &["id", "v"], &[]);
    let rows = vec![
        row(1, Value::Text("a".into())),
        row(1, Value::Text("b".into())),
    ];
    let f = insert
        .rows(&mut conn, &rows)
        .await
        .expect_err("a duplicate key");
    assert_eq!(f.class, ErrorClass::Data);
    assert_eq!(f.sqlstate.as_deref(), Some("23505"), "{}", f.message);
    let f = insert
        .rows(&mut conn, &[row(2, Value::Null)])
        .await
        .expect_err("NOT NULL");
    assert_eq!(f.sqlstate.as_deref(), Some("23502"), "{}", f.message);
    // the statement was reset: the connection takes the next rows
    assert_eq!(
        insert
            .rows(&mut conn, &[row(3, Value::Text("c".into()))])
            .await
            .expect("insert"),
        1
    );
    let _ = std::fs::remove_file(path);
}

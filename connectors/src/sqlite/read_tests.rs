use ferry_common::errors::ErrorClass;

use super::*;
use crate::rows::{channel, RowBatch};
use crate::sqlite::test_file::file;
use crate::value::Value;

/// A new SQLite file in the system's temporary directory, opened by sqlx.
async fn read_all(
    conn: &mut SqliteConnection,
    sql: &str,
    binds: &[Bind],
    columns: usize,
) -> (Result<u64, DbFailure>, Vec<Result<RowBatch, DbFailure>>) {
    let (tx, mut rx) = channel();
    let taken = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(b) = rx.recv().await {
            got.push(b);
        }
        got
    });
    let n = read_chunk(conn, sql, binds, columns, tx).await;
    (n, taken.await.expect("the receiving task"))
}

#[tokio::test]
async fn every_storage_class_comes_as_stored() {
    let (path, mut conn) = file(
        "raw-classes",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v);
         INSERT INTO t VALUES (1, 42), (2, 2.5), (3, 'héllo'), (4, x'00ff'), (5, NULL),
                              (6, ''), (7, x''), (8, -9223372036854775808);",
    )
    .await;
    let (n, batches) = read_all(
        &mut conn,
        "SELECT id, v FROM t WHERE id >= ? AND id < ? ORDER BY id",
        &[Bind::Int(1), Bind::Int(100)],
        2,
    )
    .await;
    assert_eq!(n.expect("read"), 8);
    let rows: Vec<Vec<Value>> = batches
        .into_iter()
        .flat_map(|b| b.expect("a batch").rows)
        .collect();
    let v: Vec<Value> = rows.iter().map(|r| r[1].clone()).collect();
    assert_eq!(
        v,
        vec![
            Value::Int(42),
            Value::Float(2.5),
            Value::Text("héllo".into()),
            Value::Bytes(vec![0, 255]),
            Value::Null,
            Value::Text(String::new()),
            Value::Bytes(Vec::new()),
            Value::Int(i64::MIN),
        ]
    );
    assert_eq!(rows[0][0], Value::Int(1));
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn text_bounds_bind_and_large_chunks_come_in_several_batches() {
    let (path, mut conn) = file(
        "raw-batches",
        "CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 5000)
         INSERT INTO t SELECT printf('k%05d', i), i FROM s;",
    )
    .await;
    let (n, batches) = read_all(
        &mut conn,
        "SELECT k, n FROM t WHERE k >= ? AND k < ?",
        &[Bind::Text("k00001".into()), Bind::Text("k04001".into())],
        2,
    )
    .await;
    assert_eq!(n.expect("read"), 4000);
    assert!(batches.len() >= 2, "{} batches", batches.len());
    let sum: i64 = batches
        .iter()
        .flat_map(|b| b.as_ref().expect("a batch").rows.iter())
        .map(|r| match r[1] {
            Value::Int(i) => i,
            ref other => panic!("not an integer: {other:?}"),
        })
        .sum();
    assert_eq!(sum, 4000 * 4001 / 2);
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn bad_text_and_bad_sql_are_typed_failures_sent_to_the_writer() {
    let (path, mut conn) = file(
        "raw-failures",
        "CREATE TABLE t (id INTEGER, v TEXT);
         INSERT INTO t VALUES (1, 'ok'), (2, CAST(x'ff' AS TEXT));",
    )
    .await;
    let (n, batches) = read_all(&mut conn, "SELECT id, v FROM t ORDER BY id", &[], 2).await;
    let f = n.expect_err("invalid UTF-8");
    assert_eq!(f.class, ErrorClass::Data);
    assert!(f.message.contains("column 2"), "{}", f.message);
    assert!(
        batches.last().is_some_and(|b| b.is_err()),
        "the writer is told"
    );

    let (n, batches) = read_all(&mut conn, "SELECT nope FROM t", &[], 1).await;
    let f = n.expect_err("no such column");
    assert_eq!(f.class, ErrorClass::Permanent);
    assert!(f.message.contains("no such column"), "{}", f.message);
    assert_eq!(batches.len(), 1);
    let _ = std::fs::remove_file(path);
}

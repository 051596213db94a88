//! The job history table inside a SQLite target file: `<schema>_job_history`
//! (default `ferry_job_history`) beside the ledger, one row per job; a write
//! never replaces a row about a later run, or about this run's end.

use ferry_common::errors::DbFailure;
use sqlx::sqlite::SqliteConnection;
use sqlx::{AssertSqlSafe, Row};

use super::errors::classify;
use super::ledger::table as ferry_table;
use super::session::exec;
use crate::history_sql::{definitions, from_cells, values, Cell, COLUMNS};
use crate::postgres::history::HistoryRow;

fn table(schema: &str) -> String {
    ferry_table(schema, "job_history")
}

/// Creates the history table when missing.
pub async fn ensure(conn: &mut SqliteConnection, schema: &str) -> Result<(), DbFailure> {
    exec(
        conn,
        &format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            table(schema),
            definitions("TEXT", "INTEGER")
        ),
    )
    .await
    .map_err(|f| f.context("cannot create the job history table"))
}

/// Whether the history table exists.
pub async fn exists(conn: &mut SqliteConnection, schema: &str) -> Result<bool, DbFailure> {
    let table = format!("{schema}_job_history");
    super::session::has_table(conn, &table, "the job history table").await
}

/// Writes a job's row unless the stored one is about a later run or about
/// this run's end while `row` is not.
pub async fn upsert(
    conn: &mut SqliteConnection,
    schema: &str,
    row: &HistoryRow,
) -> Result<(), DbFailure> {
    let t = table(schema);
    let holes = vec!["?"; COLUMNS.len()].join(", ");
    let updates = COLUMNS[1..]
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO {t} ({}) VALUES ({holes}) ON CONFLICT (job_id) DO UPDATE SET {updates}
         WHERE (excluded.runs, excluded.ended_at_ms <> 0) >= ({t}.runs, {t}.ended_at_ms <> 0)",
        COLUMNS.join(", ")
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for cell in values(row) {
        q = match cell {
            Cell::Text(t) => q.bind(t),
            Cell::Int(n) => q.bind(n),
        };
    }
    q.execute(&mut *conn)
        .await
        .map_err(|e| classify(&e).context("cannot write the job history row"))?;
    Ok(())
}

fn from_row(r: &sqlx::sqlite::SqliteRow) -> HistoryRow {
    from_cells(
        |i| r.try_get::<String, _>(i).unwrap_or_default(),
        |i| r.try_get::<i64, _>(i).unwrap_or_default(),
    )
}

/// Up to `limit` rows, most recently started first, only in `state` when given.
pub async fn list(
    conn: &mut SqliteConnection,
    schema: &str,
    limit: i64,
    state: Option<&str>,
) -> Result<Vec<HistoryRow>, DbFailure> {
    let sql = format!(
        "SELECT {} FROM {} WHERE (?1 IS NULL OR state = ?1)
         ORDER BY CASE WHEN started_at_ms > 0 THEN started_at_ms ELSE submitted_at_ms END DESC, job_id
         LIMIT ?2",
        COLUMNS.join(", "),
        table(schema)
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(state)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| classify(&e).context("cannot read the job history table"))?;
    Ok(rows.iter().map(from_row).collect())
}

/// The row of one job, if written.
pub async fn get(
    conn: &mut SqliteConnection,
    schema: &str,
    job_id: &str,
) -> Result<Option<HistoryRow>, DbFailure> {
    let sql = format!(
        "SELECT {} FROM {} WHERE job_id = ?",
        COLUMNS.join(", "),
        table(schema)
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(job_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| classify(&e).context("cannot read the job history table"))?;
    Ok(row.as_ref().map(from_row))
}

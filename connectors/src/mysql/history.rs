//! The job history table on a MySQL target: `<schema>.job_history` in
//! Ferry's database beside the ledger, one row per job, written in a
//! transaction that locks the row and keeps a later run's or an ended run's
//! row from being overwritten by an earlier write.

use ferry_common::errors::DbFailure;
use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Row};

use super::errors::classify;
use super::session::exec;
use super::sql::quote_ident;
use crate::history_sql::{definitions, from_cells, newer_or_same, values, Cell, COLUMNS};
use crate::postgres::history::HistoryRow;

fn table(schema: &str) -> String {
    format!("{}.job_history", quote_ident(schema))
}

/// Creates Ferry's database and the history table when missing.
pub async fn ensure(conn: &mut MySqlConnection, schema: &str) -> Result<(), DbFailure> {
    exec(
        conn,
        &format!("CREATE DATABASE IF NOT EXISTS {}", quote_ident(schema)),
    )
    .await?;
    exec(
        conn,
        &format!(
            "CREATE TABLE IF NOT EXISTS {} ({}) ENGINE=InnoDB",
            table(schema),
            definitions("longtext", "bigint").replace("job_id longtext", "job_id varchar(64)")
        ),
    )
    .await
    .map_err(|f| f.context("cannot create the job history table"))
}

/// Whether the history table exists.
pub async fn exists(conn: &mut MySqlConnection, schema: &str) -> Result<bool, DbFailure> {
    super::session::has_table(conn, schema, "job_history", "the job history table").await
}

/// Writes a job's row unless the stored one is about a later run or about
/// this run's end while `row` is not.
pub async fn upsert(
    conn: &mut MySqlConnection,
    schema: &str,
    row: &HistoryRow,
) -> Result<(), DbFailure> {
    exec(conn, "START TRANSACTION").await?;
    let result = write_locked(conn, schema, row).await;
    match result {
        Ok(()) => exec(conn, "COMMIT").await,
        Err(f) => {
            let _ = exec(conn, "ROLLBACK").await;
            Err(f.context("cannot write the job history row"))
        }
    }
}

async fn write_locked(
    conn: &mut MySqlConnection,
    schema: &str,
    row: &HistoryRow,
) -> Result<(), DbFailure> {
    let t = table(schema);
    let stored = sqlx::query(AssertSqlSafe(format!(
        "SELECT runs, ended_at_ms FROM {t} WHERE job_id = ? FOR UPDATE"
    )))
    .bind(&row.job_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| classify(&e))?;
    if let Some(s) = stored {
        let (runs, ended): (i64, i64) = (s.get(0), s.get(1));
        if !newer_or_same(row, runs, ended) {
            return Ok(());
        }
    }
    let holes = vec!["?"; COLUMNS.len()].join(", ");
    let updates = COLUMNS[1..]
        .iter()
        .map(|c| format!("{c} = VALUES({c})"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO {t} ({}) VALUES ({holes}) ON DUPLICATE KEY UPDATE {updates}",
        COLUMNS.join(", ")
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for cell in values(row) {
        q = match cell {
            Cell::Text(t) => q.bind(t),
            Cell::Int(n) => q.bind(n),
        };
    }
    q.execute(&mut *conn).await.map_err(|e| classify(&e))?;
    Ok(())
}

fn from_row(r: &sqlx::mysql::MySqlRow) -> HistoryRow {
    from_cells(
        |i| r.try_get::<String, _>(i).unwrap_or_default(),
        |i| r.try_get::<i64, _>(i).unwrap_or_default(),
    )
}

/// Up to `limit` rows, most recently started first, only in `state` when given.
pub async fn list(
    conn: &mut MySqlConnection,
    schema: &str,
    limit: i64,
    state: Option<&str>,
) -> Result<Vec<HistoryRow>, DbFailure> {
    let sql = format!(
        "SELECT {} FROM {} WHERE (? IS NULL OR state = ?)
         ORDER BY IF(started_at_ms > 0, started_at_ms, submitted_at_ms) DESC, job_id LIMIT ?",
        COLUMNS.join(", "),
        table(schema)
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(state)
        .bind(state)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| classify(&e).context("cannot read the job history table"))?;
    Ok(rows.iter().map(from_row).collect())
}

/// The row of one job, if written.
pub async fn get(
    conn: &mut MySqlConnection,
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

//! The job history table in any database: PostgreSQL's `ferry.job_history`,
//! MySQL's in Ferry's database, SQLite's `ferry_job_history` in the file.

use ferry_common::errors::DbFailure;

use super::Conn;
use crate::postgres::history::HistoryRow;
use crate::{mysql, postgres, sqlite};

/// Creates the history table when missing.
pub async fn ensure(conn: &mut Conn, schema: &str) -> Result<(), DbFailure> {
    match conn {
        Conn::Postgres(c) => postgres::history::ensure(c, schema).await,
        Conn::MySql(c, _) => mysql::history::ensure(c, schema).await,
        Conn::Sqlite(c, _) => sqlite::history::ensure(c, schema).await,
    }
}

/// Whether the history table exists.
pub async fn exists(conn: &mut Conn, schema: &str) -> Result<bool, DbFailure> {
    match conn {
        Conn::Postgres(c) => postgres::history::exists(c, schema).await,
        Conn::MySql(c, _) => mysql::history::exists(c, schema).await,
        Conn::Sqlite(c, _) => sqlite::history::exists(c, schema).await,
    }
}

/// Writes a job's row (an idempotent upsert that never goes back a run).
pub async fn upsert(conn: &mut Conn, schema: &str, row: &HistoryRow) -> Result<(), DbFailure> {
    match conn {
        Conn::Postgres(c) => postgres::history::upsert(c, schema, row).await,
        Conn::MySql(c, _) => mysql::history::upsert(c, schema, row).await,
        Conn::Sqlite(c, _) => sqlite::history::upsert(c, schema, row).await,
    }
}

/// Up to `limit` rows, most recently started first, only in `state` when given.
pub async fn list(
    conn: &mut Conn,
    schema: &str,
    limit: i64,
    state: Option<&str>,
) -> Result<Vec<HistoryRow>, DbFailure> {
    match conn {
        Conn::Postgres(c) => postgres::history::list(c, schema, limit, state).await,
        Conn::MySql(c, _) => mysql::history::list(c, schema, limit, state).await,
        Conn::Sqlite(c, _) => sqlite::history::list(c, schema, limit, state).await,
    }
}

/// The row of one job, if written.
pub async fn get(
    conn: &mut Conn,
    schema: &str,
    job_id: &str,
) -> Result<Option<HistoryRow>, DbFailure> {
    match conn {
        Conn::Postgres(c) => postgres::history::get(c, schema, job_id).await,
        Conn::MySql(c, _) => mysql::history::get(c, schema, job_id).await,
        Conn::Sqlite(c, _) => sqlite::history::get(c, schema, job_id).await,
    }
}

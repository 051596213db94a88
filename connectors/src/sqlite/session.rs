//! Opening a SQLite file: `sqlite:PATH` (relative to the process's working
//! directory) or `sqlite:///abs/path`. A missing file is an error, never
//! created by accident; writers wait for the file's single write lock.

use std::path::PathBuf;
use std::time::Duration;

use ferry_common::errors::DbFailure;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Executor};

use super::errors::classify;

/// How long a statement waits for another connection's write lock on the
/// file before failing (transient: the chunk is retried).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Rows SQLite's thread may read ahead of the task taking them (sqlx's
/// default is 50): a batch's worth, so the two threads hand rows over in
/// runs instead of waking each other for every row.
const ROW_BUFFER: usize = crate::rows::BATCH_ROWS;

/// The file a `sqlite:` URL names.
pub fn path_of(url: &str) -> PathBuf {
    let rest = url.split_once(':').map(|(_, r)| r).unwrap_or(url);
    let rest = rest.split('?').next().unwrap_or(rest);
    PathBuf::from(rest.strip_prefix("//").unwrap_or(rest))
}

/// Opens the file of connection `name`; errors name the connection and the file.
pub async fn open(name: &str, url: &str) -> Result<SqliteConnection, DbFailure> {
    let path = path_of(url);
    if !path.is_file() {
        return Err(DbFailure::permanent(format!(
            "connection '{name}': the SQLite file {} does not exist (a SQLite file serves only the host that has it)",
            path.display()
        )));
    }
    SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(false)
        .busy_timeout(BUSY_TIMEOUT)
        .row_buffer_size(ROW_BUFFER)
        .connect()
        .await
        .map_err(|e| classify(&e).context(format!("cannot open '{name}' ({})", path.display())))
}

/// Runs statements that return nothing.
pub async fn exec(conn: &mut SqliteConnection, sql: &str) -> Result<(), DbFailure> {
    conn.execute(sqlx::raw_sql(AssertSqlSafe(sql.to_string())))
        .await
        .map(|_| ())
        .map_err(|e| classify(&e))
}

/// Fails with a message naming the connection when the file cannot be
/// written (a read-only file or directory).
pub async fn check_writable(conn: &mut SqliteConnection, name: &str) -> Result<(), DbFailure> {
    // A file SQLite could only open read-only takes BEGIN IMMEDIATE; writing
    // the header's user_version (to its own value, rolled back) does not.
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| classify(&e))?;
    let tried = exec(
        conn,
        &format!("BEGIN IMMEDIATE; PRAGMA user_version = {version}"),
    )
    .await;
    let _ = exec(conn, "ROLLBACK").await;
    tried.map_err(|f| {
        f.context(format!(
            "connection '{name}' cannot be written (check the file's and its directory's permissions)"
        ))
    })
}

/// Whether the file holds table `name`; `what` names the table in the error.
pub async fn has_table(
    conn: &mut SqliteConnection,
    name: &str,
    what: &str,
) -> Result<bool, DbFailure> {
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?")
            .bind(name)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| classify(&e).context(format!("cannot look up {what}")))?;
    Ok(n > 0)
}

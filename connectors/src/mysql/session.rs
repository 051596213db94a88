//! Opening a MySQL or MariaDB session the way Ferry's statements expect it:
//! UTF-8 (`utf8mb4`), times in UTC (`TIMESTAMP` columns read and write
//! instants), strict mode (a value that does not fit is an error, never a
//! silent truncation), and `||` left as the user's query means it.

use std::str::FromStr;

use ferry_common::connections::redact;
use ferry_common::errors::DbFailure;
use ferry_common::timing::DB_CONNECT_TIMEOUT;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{Connection, Executor};

use super::errors::classify;

/// Session settings every Ferry session runs: strict mode for every table
/// (not only transactional ones), without changing the rest of the server's
/// `sql_mode`.
const SESSION_SETTINGS: &str =
    "SET SESSION sql_mode = CONCAT_WS(',', @@SESSION.sql_mode, 'STRICT_ALL_TABLES')";

/// The connection options of `url` (`mysql://` or `mariadb://`, with
/// `ssl-mode`, `ssl-ca`, `ssl-cert`, `ssl-key` as MySQL clients spell them).
pub fn options(name: &str, url: &str) -> Result<MySqlConnectOptions, DbFailure> {
    let normalized = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("mariadb") => format!("mysql://{rest}"),
        _ => url.to_string(),
    };
    let opts = MySqlConnectOptions::from_str(&normalized).map_err(|e| {
        DbFailure::permanent(format!(
            "connection '{name}' has an invalid URL ({}): {e}",
            redact(url)
        ))
    })?;
    Ok(opts
        .pipes_as_concat(false)
        .timezone(Some("+00:00".to_string())))
}

/// Opens a session on connection `name`; errors name the connection and
/// never its password.
pub async fn open(name: &str, url: &str) -> Result<MySqlConnection, DbFailure> {
    let opts = options(name, url)?;
    let connect = MySqlConnection::connect_with(&opts);
    let mut conn = match tokio::time::timeout(DB_CONNECT_TIMEOUT, connect).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Err(
                classify(&e).context(format!("cannot connect to '{name}' ({})", redact(url)))
            )
        }
        Err(_) => {
            return Err(DbFailure::transient(format!(
                "cannot connect to '{name}' ({}): timed out after {DB_CONNECT_TIMEOUT:?}",
                redact(url)
            )))
        }
    };
    conn.execute(SESSION_SETTINGS)
        .await
        .map_err(|e| classify(&e).context(format!("cannot set up a session on '{name}'")))?;
    Ok(conn)
}

/// Runs a statement that returns nothing.
/// One statement only: MySQL sessions do not take several in one request.
pub async fn exec(conn: &mut MySqlConnection, sql: &str) -> Result<(), DbFailure> {
    conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string())))
        .await
        .map(|_| ())
        .map_err(|e| classify(&e))
}

/// Runs statements that return nothing, one request each, stopping at the
/// first failure.
pub async fn exec_each(conn: &mut MySqlConnection, sql: &[&str]) -> Result<(), DbFailure> {
    for statement in sql {
        exec(conn, statement).await?;
    }
    Ok(())
}

/// The session's current database (what an unqualified table name means).
pub async fn current_database(conn: &mut MySqlConnection) -> Result<Option<String>, DbFailure> {
    sqlx::query_scalar::<_, Option<String>>("SELECT DATABASE()")
        .fetch_one(conn)
        .await
        .map_err(|e| classify(&e))
}

/// Whether database `schema` holds table `name` (compared exactly); `what`
/// names the table in the error.
pub async fn has_table(
    conn: &mut MySqlConnection,
    schema: &str,
    name: &str,
    what: &str,
) -> Result<bool, DbFailure> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE BINARY table_schema = ? AND table_name = ?",
    )
    .bind(schema)
    .bind(name)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| classify(&e).context(format!("cannot look up {what}")))?;
    Ok(n > 0)
}

/// Whether table `table` of database `schema` has column `column` (`what`
/// names them in an error).
pub async fn has_column(
    conn: &mut MySqlConnection,
    schema: &str,
    table: &str,
    column: &str,
    what: &str,
) -> Result<bool, DbFailure> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.columns
          WHERE BINARY table_schema = ? AND table_name = ? AND column_name = ?",
    )
    .bind(schema)
    .bind(table)
    .bind(column)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| classify(&e).context(format!("cannot look up {what}")))?;
    Ok(n > 0)
}

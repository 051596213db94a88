//! What the write modes do in a SQLite target: truncate (delete every row),
//! delete a chunk's key range (repair), and replace: rows load into a plain
//! table, and at the end, in one transaction, the target's rows are replaced
//! by the loaded ones (the target keeps its own schema, indexes and triggers).

use ferry_common::errors::DbFailure;
use ferry_common::proto::{ChunkBounds, KeyColumn, TableRef};
use sqlx::sqlite::SqliteConnection;
use sqlx::AssertSqlSafe;

use super::errors::classify;
use super::read::bind_all;
use super::select::target_filter;
use super::session::exec;
use super::sql::{quote_ident, quote_list, quote_table};
use crate::ddl::create_table_sql;

/// Empties the target table (mode truncate, once per job).
pub async fn truncate(conn: &mut SqliteConnection, table: &TableRef) -> Result<(), DbFailure> {
    exec(conn, &format!("DELETE FROM {}", quote_table(table)))
        .await
        .map_err(|f| f.context("cannot empty the target table"))
}

/// Deletes the rows of `bounds` from `table` by the key's target columns.
pub async fn delete_range(
    conn: &mut SqliteConnection,
    table: &TableRef,
    key: &[KeyColumn],
    bounds: &ChunkBounds,
) -> Result<u64, DbFailure> {
    let (cond, binds) = target_filter(key, bounds);
    let mut sql = format!("DELETE FROM {}", quote_table(table));
    if let Some(c) = cond {
        sql.push_str(" WHERE ");
        sql.push_str(&c);
    }
    let done = bind_all(sqlx::query(AssertSqlSafe(sql)), &binds)
        .execute(&mut *conn)
        .await
        .map_err(|e| {
            classify(&e).context("cannot delete the chunk's rows before copying it again")
        })?;
    Ok(done.rows_affected())
}

/// The table a replace job loads into.
pub fn load_table(table: &TableRef, job_id: &str) -> TableRef {
    TableRef::new(
        table.schema.clone(),
        format!("{}__ferry_{job_id}", table.name),
    )
}

/// Creates the load table with the target's columns and no constraints.
pub async fn create_load_table(
    conn: &mut SqliteConnection,
    table: &TableRef,
    load: &TableRef,
) -> Result<(), DbFailure> {
    exec(
        conn,
        &format!(
            "DROP TABLE IF EXISTS {l}; CREATE TABLE {l} AS SELECT * FROM {t} WHERE 0",
            l = quote_table(load),
            t = quote_table(table)
        ),
    )
    .await
    .map_err(|f| f.context("cannot create the table to load for mode replace"))
}

/// Replaces the target's rows with the loaded ones in one transaction and
/// drops the load table; nothing when an earlier attempt did it.
pub async fn finalize_replace(
    conn: &mut SqliteConnection,
    table: &TableRef,
    load: &TableRef,
    columns: &[&str],
) -> Result<(), DbFailure> {
    let exists: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pragma_table_list WHERE schema = ? AND name = ?")
            .bind(&load.schema)
            .bind(&load.name)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| classify(&e))?;
    if exists == 0 {
        return Ok(());
    }
    let cols = quote_list(columns.iter().copied());
    exec(
        conn,
        &format!(
            "BEGIN IMMEDIATE; DELETE FROM {t}; INSERT INTO {t} ({cols}) SELECT {cols} FROM {l}; DROP TABLE {l}; COMMIT",
            t = quote_table(table),
            l = quote_table(load)
        ),
    )
    .await
    .map_err(|f| f.context("cannot replace the target's rows"))
}

/// Creates `table` with `columns` (`name`, declared type) and, when given, a
/// primary key (`--create-table`).
pub async fn create_table(
    conn: &mut SqliteConnection,
    table: &TableRef,
    columns: &[(String, String)],
    primary_key: &[String],
) -> Result<(), DbFailure> {
    let sql = create_table_sql(&quote_table(table), columns, primary_key, quote_ident);
    exec(conn, &sql)
        .await
        .map_err(|f| f.context("cannot create the target table"))
}

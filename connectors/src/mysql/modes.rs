//! What the write modes do in a MySQL target: truncate once, delete a
//! chunk's key range before it is copied again (repair), and replace's load
//! table, swapped in with MySQL's atomic multi-table `RENAME TABLE`.

use ferry_common::errors::DbFailure;
use ferry_common::proto::{ChunkBounds, KeyColumn, TableRef};
use sqlx::mysql::MySqlConnection;
use sqlx::AssertSqlSafe;

use super::errors::classify;
use super::read::bind_all;
use super::select::target_filter;
use super::session::{exec, exec_each};
use super::sql::{quote_ident, quote_table};
use crate::ddl::create_table_sql;

/// Empties the target table (mode truncate, once per job).
pub async fn truncate(conn: &mut MySqlConnection, table: &TableRef) -> Result<(), DbFailure> {
    exec(conn, &format!("TRUNCATE TABLE {}", quote_table(table)))
        .await
        .map_err(|f| f.context("cannot truncate the target table"))
}

/// Deletes the rows of `bounds` from `table` by the key's target columns
/// (every row without a copied key); returns the rows deleted.
pub async fn delete_range(
    conn: &mut MySqlConnection,
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

/// The table a replace job loads into: `<target>__ferry_<job>`, cut to
/// MySQL's 64 characters, unique per job.
pub fn load_table(table: &TableRef, job_id: &str) -> TableRef {
    let suffix = format!("__ferry_{job_id}");
    let room = 64usize.saturating_sub(suffix.chars().count());
    let prefix: String = table.name.chars().take(room).collect();
    TableRef::new(table.schema.clone(), format!("{prefix}{suffix}"))
}

/// Creates the load table shaped like the target (columns and indexes).
pub async fn create_load_table(
    conn: &mut MySqlConnection,
    table: &TableRef,
    load: &TableRef,
) -> Result<(), DbFailure> {
    let (l, t) = (quote_table(load), quote_table(table));
    exec_each(
        conn,
        &[
            &format!("DROP TABLE IF EXISTS {l}"),
            &format!("CREATE TABLE {l} LIKE {t}"),
        ],
    )
    .await
    .map_err(|f| f.context("cannot create the table to load for mode replace"))
}

/// Swaps the loaded table in atomically and drops the old one. When an
/// earlier attempt already swapped it (the load table is gone), only drops
/// the old table that attempt may have left if it ended between the swap
/// and the drop.
pub async fn finalize_replace(
    conn: &mut MySqlConnection,
    table: &TableRef,
    load: &TableRef,
    job_id: &str,
) -> Result<(), DbFailure> {
    let exists: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE BINARY table_schema = ? AND BINARY table_name = ?",
    )
    .bind(&load.schema)
    .bind(&load.name)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| classify(&e))?;
    let old = load_table(table, &format!("old_{job_id}"));
    let (t, o, l) = (quote_table(table), quote_table(&old), quote_table(load));
    if exists == 0 {
        return exec(conn, &format!("DROP TABLE IF EXISTS {o}"))
            .await
            .map_err(|f| f.context("cannot drop the table replaced by this job"));
    }
    exec_each(
        conn,
        &[
            &format!("RENAME TABLE {t} TO {o}, {l} TO {t}"),
            &format!("DROP TABLE {o}"),
        ],
    )
    .await
    .map_err(|f| f.context("cannot swap the new table in"))
}

/// Creates `table` with `columns` (`name`, MySQL type) and, when given, a
/// primary key (`--create-table`).
pub async fn create_table(
    conn: &mut MySqlConnection,
    table: &TableRef,
    columns: &[(String, String)],
    primary_key: &[String],
) -> Result<(), DbFailure> {
    let sql = create_table_sql(&quote_table(table), columns, primary_key, quote_ident);
    exec(conn, &format!("{sql} ENGINE=InnoDB"))
        .await
        .map_err(|f| f.context("cannot create the target table"))
}

//! What a job does to its target table once, in any database: truncate it
//! (mode truncate), create it (`--create-table`), create and swap in
//! replace's load table, and list refused rows.

use ferry_common::errors::DbFailure;
use ferry_common::proto::TableRef;

use super::Conn;
use crate::kind::DbKind;
use crate::postgres::rejects::StoredReject;
use crate::types::FerryType;
use crate::{mysql, postgres, sqlite};

/// Empties the target table (mode truncate, once per job).
pub async fn truncate(conn: &mut Conn, table: &TableRef) -> Result<(), DbFailure> {
    match conn {
        Conn::Postgres(c) => postgres::modes::truncate(c, table).await,
        Conn::MySql(c, _) => mysql::modes::truncate(c, table).await,
        Conn::Sqlite(c, _) => sqlite::modes::truncate(c, table).await,
    }
}

/// The table a replace job loads into, named for the job beside the target.
pub fn load_table(kind: DbKind, table: &TableRef, job_id: &str) -> TableRef {
    match kind {
        DbKind::Postgres => postgres::replace::load_table(table, job_id),
        DbKind::MySql => mysql::modes::load_table(table, job_id),
        DbKind::Sqlite => sqlite::modes::load_table(table, job_id),
    }
}

/// Creates replace's empty load table shaped like the target (dropping a
/// leftover of an earlier run of the job).
pub async fn create_load_table(
    conn: &mut Conn,
    table: &TableRef,
    load: &TableRef,
) -> Result<(), DbFailure> {
    match conn {
        Conn::Postgres(c) => postgres::replace::create_load_table(c, table, load).await,
        Conn::MySql(c, _) => mysql::modes::create_load_table(c, table, load).await,
        Conn::Sqlite(c, _) => sqlite::modes::create_load_table(c, table, load).await,
    }
}

/// Swaps replace's load table in for the target atomically (PostgreSQL and
/// MySQL rename; SQLite replaces the rows in one transaction); nothing when
/// an earlier attempt already did.
pub async fn finalize_replace(
    conn: &mut Conn,
    table: &TableRef,
    load: &TableRef,
    job_id: &str,
    columns: &[&str],
) -> Result<(), DbFailure> {
    match conn {
        Conn::Postgres(c) => postgres::replace::finalize(c, table, load, job_id).await,
        Conn::MySql(c, _) => mysql::modes::finalize_replace(c, table, load, job_id).await,
        Conn::Sqlite(c, _) => sqlite::modes::finalize_replace(c, table, load, columns).await,
    }
}

/// A query reading every row of `table`, in `kind`'s quoting (what verify
/// reads a target's rows through).
pub fn select_all(kind: DbKind, table: &TableRef) -> String {
    let quoted = match kind {
        DbKind::Postgres => postgres::sql::quote_table(table),
        DbKind::MySql => mysql::sql::quote_table(table),
        DbKind::Sqlite => sqlite::sql::quote_table(table),
    };
    format!("SELECT * FROM {quoted}")
}

/// The target's type for a column holding `t`, in `kind`'s spelling.
pub fn column_type(kind: DbKind, t: &FerryType) -> String {
    match kind {
        DbKind::Postgres => postgres::types::column_type(t),
        DbKind::MySql => mysql::types::column_type(t),
        DbKind::Sqlite => sqlite::types::column_type(t),
    }
}

/// Creates `table` with `columns` (name, type in the target's spelling) and
/// a primary key when given (`--create-table`).
pub async fn create_table(
    conn: &mut Conn,
    table: &TableRef,
    columns: &[(String, String)],
    primary_key: &[String],
) -> Result<(), DbFailure> {
    match conn {
        Conn::Postgres(c) => postgres::modes::create_table(c, table, columns, primary_key).await,
        Conn::MySql(c, _) => mysql::modes::create_table(c, table, columns, primary_key).await,
        Conn::Sqlite(c, _) => sqlite::modes::create_table(c, table, columns, primary_key).await,
    }
}

/// The rows a job's target refused (at most `limit`) and their total.
pub async fn list_rejects(
    conn: &mut Conn,
    schema: &str,
    job_id: &str,
    limit: u32,
) -> Result<(Vec<StoredReject>, u64), DbFailure> {
    match conn {
        Conn::Postgres(c) => postgres::rejects::list(c, schema, job_id, limit).await,
        Conn::MySql(c, _) => mysql::ledger::list_rejects(c, schema, job_id, limit).await,
        Conn::Sqlite(c, _) => sqlite::ledger::list_rejects(c, schema, job_id, limit).await,
    }
}

/// PostgreSQL upserts load each chunk into a temporary stage table and merge
/// it; the stage, when `conn` is PostgreSQL and the mode is upsert.
pub async fn create_stage(conn: &mut Conn, table: &TableRef) -> Result<TableRef, DbFailure> {
    match conn {
        Conn::Postgres(c) => {
            postgres::modes::create_stage(c, table).await?;
            Ok(postgres::modes::stage_table())
        }
        _ => Ok(table.clone()),
    }
}

/// Merges the stage into `table` (PostgreSQL upserts); returns rows merged,
/// or `written` where the insert itself upserted (MySQL, SQLite).
pub async fn merge_stage(
    conn: &mut Conn,
    table: &TableRef,
    columns: &[&str],
    keys: &[String],
    written: u64,
) -> Result<u64, DbFailure> {
    match conn {
        Conn::Postgres(c) => postgres::modes::merge_stage(c, table, columns, keys).await,
        _ => Ok(written),
    }
}

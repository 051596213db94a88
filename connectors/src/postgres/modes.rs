//! What the write modes do in a PostgreSQL target: truncate once, stage and
//! merge an upsert chunk, and delete a chunk's key range before it is copied
//! again (repair).

use ferry_common::errors::{classify_pg, DbFailure};
use ferry_common::proto::{ChunkBounds, KeyColumn, TableRef};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use super::select::{key_filter, Binding};
use super::session::{exec, failed};
use super::sql::{quote_ident, quote_list, quote_table};
use crate::ddl::create_table_sql;

/// The temporary table an upsert chunk loads before merging.
pub fn stage_table() -> TableRef {
    TableRef::new("pg_temp", "ferry_stage")
}

/// Empties the target table (mode truncate, once per job).
pub async fn truncate(target: &Client, table: &TableRef) -> Result<(), DbFailure> {
    exec(target, &format!("TRUNCATE {}", quote_table(table)))
        .await
        .map_err(|f| f.context("cannot truncate the target table"))
}

/// Whether `table` has a unique index (or primary key) on exactly the
/// columns `keys` (any order, no predicate).
pub async fn has_unique_index(
    target: &Client,
    table: &TableRef,
    keys: &[String],
) -> Result<bool, DbFailure> {
    let mut sorted = keys.to_vec();
    sorted.sort();
    let row = target
        .query_one(
            "SELECT EXISTS (
                SELECT 1 FROM pg_index x
                  JOIN pg_class c ON c.oid = x.indrelid
                  JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relname = $2 AND x.indisunique AND x.indpred IS NULL
                   AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_attribute a
                         WHERE a.attrelid = x.indrelid AND a.attnum = ANY (x.indkey)) = $3::text[]
                   AND x.indnkeyatts = cardinality($3::text[]))",
            &[&table.schema, &table.name, &sorted],
        )
        .await
        .map_err(|e| failed("cannot read the target's unique indexes", &e))?;
    Ok(row.get(0))
}

/// Creates the chunk's staging table, shaped like `table`, dropped at commit.
pub async fn create_stage(target: &Client, table: &TableRef) -> Result<(), DbFailure> {
    exec(
        target,
        &format!(
            "CREATE TEMP TABLE ferry_stage (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP",
            quote_table(table)
        ),
    )
    .await
}

/// Merges the staged rows into `table`: insert, or update the other columns
/// where a row with the same `keys` exists. Returns the rows merged.
pub async fn merge_stage(
    target: &Client,
    table: &TableRef,
    columns: &[&str],
    keys: &[String],
) -> Result<u64, DbFailure> {
    let cols = quote_list(columns.iter().copied());
    let updates: Vec<String> = columns
        .iter()
        .filter(|c| !keys.iter().any(|k| k == *c))
        .map(|c| format!("{q} = EXCLUDED.{q}", q = quote_ident(c)))
        .collect();
    let action = if updates.is_empty() {
        "DO NOTHING".to_string()
    } else {
        format!("DO UPDATE SET {}", updates.join(", "))
    };
    let sql = format!(
        "INSERT INTO {} ({cols}) SELECT {cols} FROM {} ON CONFLICT ({}) {action}",
        quote_table(table),
        quote_table(&stage_table()),
        quote_list(keys.iter().map(String::as_str))
    );
    target
        .execute(sql.as_str(), &[])
        .await
        .map_err(|e| classify_pg(&e))
}

/// Deletes the rows of `bounds` from `table`, matching the key's target
/// columns with bound values; without a copied key, every row (a job of one
/// chunk). Returns the rows deleted.
pub async fn delete_range(
    target: &Client,
    table: &TableRef,
    key: &[KeyColumn],
    bounds: &ChunkBounds,
) -> Result<u64, DbFailure> {
    let key_copied = !key.is_empty() && key.iter().all(|k| !k.target.is_empty());
    let filter = key_filter(
        if key_copied { key } else { &[] },
        bounds,
        Binding::Params(0),
        |k| quote_ident(&k.target),
        |k| k.target_type.as_str(),
    );
    let mut sql = format!("DELETE FROM {}", quote_table(table));
    if let Some(c) = &filter.condition {
        sql.push_str(" WHERE ");
        sql.push_str(c);
    }
    let params: Vec<&(dyn ToSql + Sync)> = filter.values.iter().map(|v| v as _).collect();
    target
        .execute(sql.as_str(), &params)
        .await
        .map_err(|e| failed("cannot delete the chunk's rows before copying it again", &e))
}

/// Creates `table` with `columns` (`name`, PostgreSQL type) and, when given,
/// a primary key (`--create-table`).
pub async fn create_table(
    target: &Client,
    table: &TableRef,
    columns: &[(String, String)],
    primary_key: &[String],
) -> Result<(), DbFailure> {
    let sql = create_table_sql(&quote_table(table), columns, primary_key, quote_ident);
    exec(target, &sql)
        .await
        .map_err(|f| f.context("cannot create the target table"))
}

//! Chooses how workers read a range chunk from the source. PostgreSQL plans a
//! key-range chunk of a table stored in key order as a plain index scan, which
//! looks up the heap once per row; a bitmap heap scan reads the same pages a
//! page at a time, in the same order, for about a fifth less source CPU.

use ferry_common::errors::DbFailure;
use tokio_postgres::Client;

use super::sample::root_plan;
use super::select::{bind_settings, ChunkSelect};
use super::session::{exec, failed};

/// Lowest key/heap-order correlation at which a bitmap scan keeps rows in key
/// order (below it, key order helps the target's index more than the source
/// gains).
const MIN_CORRELATION: f64 = 0.9;

/// Whether workers should read chunks like `chunk` with index scans off:
/// true when its plan is a plain index scan of one table whose heap is in
/// key order. No statistics, a join or any other plan answers false.
pub async fn prefer_bitmap_scan(
    source: &Client,
    chunk: &ChunkSelect<'_>,
) -> Result<bool, DbFailure> {
    let root = explain_chunk(source, chunk).await?;
    if root.get("Node Type").and_then(|v| v.as_str()) != Some("Index Scan")
        || root.get("Plans").is_some()
    {
        return Ok(false);
    }
    let text = |k: &str| root.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let (Some(schema), Some(table), Some(index)) =
        (text("Schema"), text("Relation Name"), text("Index Name"))
    else {
        return Ok(false);
    };
    Ok(key_correlation(source, &schema, &table, &index)
        .await?
        .is_some_and(|c| c >= MIN_CORRELATION))
}

/// The plan root (EXPLAIN VERBOSE, FORMAT JSON) of a chunk's SELECT with its
/// bounds bound as workers bind them, in a read-only transaction rolled back
/// after.
pub async fn explain_chunk(
    source: &Client,
    chunk: &ChunkSelect<'_>,
) -> Result<serde_json::Value, DbFailure> {
    let (select, values) = chunk.binary();
    exec(source, "BEGIN READ ONLY").await?;
    let explained = async {
        if let Some(bind) = bind_settings(&values) {
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                values.iter().map(|v| v as _).collect();
            source
                .query(&bind, &params)
                .await
                .map_err(|e| failed("cannot bind a chunk's bounds", &e))?;
        }
        root_plan(source, &select).await
    }
    .await;
    exec(source, "ROLLBACK").await?;
    explained
}

/// pg_stats' correlation of the index's leading column.
async fn key_correlation(
    source: &Client,
    schema: &str,
    table: &str,
    index: &str,
) -> Result<Option<f64>, DbFailure> {
    let row = source
        .query_opt(
            "SELECT s.correlation::float8
               FROM pg_index x
               JOIN pg_class i ON i.oid = x.indexrelid
               JOIN pg_namespace n ON n.oid = i.relnamespace
               JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]
               JOIN pg_stats s ON s.schemaname = $1 AND s.tablename = $2 AND s.attname = a.attname
              WHERE n.nspname = $1 AND i.relname = $3",
            &[&schema, &table, &index],
        )
        .await
        .map_err(|e| failed("cannot read the key's correlation", &e))?;
    Ok(row.and_then(|r| r.get::<_, Option<f64>>(0)))
}

//! Chooses how workers read a range chunk from the source. PostgreSQL plans a
//! key-range chunk of a table stored in key order as a plain index scan, which
//! looks up the heap once per row; a bitmap heap scan reads the same pages a
//! page at a time, in the same order, for about a fifth less source CPU.

use tokio_postgres::Client;

use super::explain::root_plan;

/// Lowest key/heap-order correlation at which a bitmap scan keeps rows in key
/// order (below it, key order helps the target's index more than the source
/// gains).
const MIN_CORRELATION: f64 = 0.9;

/// Whether workers should read chunks like `chunk_select` with index scans
/// off: true when it is a plain index scan of one table whose heap is in key
/// order. Any doubt (no statistics, a join, an error) answers false.
pub async fn prefer_bitmap_scan(source: &Client, chunk_select: &str) -> bool {
    match plain_index_scan(source, chunk_select).await {
        Some((schema, table, index)) => key_correlation(source, &schema, &table, &index)
            .await
            .is_some_and(|c| c >= MIN_CORRELATION),
        None => false,
    }
}

/// The (schema, table, index) of a plan that is one index scan and nothing else.
async fn plain_index_scan(source: &Client, select: &str) -> Option<(String, String, String)> {
    let root = root_plan(source, select)
        .await
        .map_err(|e| tracing::debug!(error = %e, "cannot explain a chunk's SELECT"))
        .ok()?;
    if root.get("Node Type")?.as_str()? != "Index Scan" || root.get("Plans").is_some() {
        return None;
    }
    let text = |k: &str| root.get(k)?.as_str().map(str::to_string);
    Some((text("Schema")?, text("Relation Name")?, text("Index Name")?))
}

/// pg_stats' correlation of the index's leading column.
async fn key_correlation(source: &Client, schema: &str, table: &str, index: &str) -> Option<f64> {
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
        .map_err(|e| tracing::debug!(error = %e, "cannot read the key's correlation"))
        .ok()??;
    row.try_get::<_, Option<f64>>(0).ok()?
}

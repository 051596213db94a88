//! What PostgreSQL expects of one chunk's SELECT, without running it (a dry
//! run): estimated rows and row width from `EXPLAIN`, and whether the chunk's
//! key range is applied by a sequential scan of a whole table (a key without
//! an index: every chunk then reads the full table).

use ferry_common::errors::DbFailure;
use serde_json::Value;
use tokio_postgres::Client;

use super::select::ChunkSelect;

/// PostgreSQL's estimate for one chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkExplain {
    /// Estimated rows.
    pub rows: u64,
    /// Estimated average row width in bytes (EXPLAIN's Plan Width).
    pub width: u64,
    /// The table a sequential scan reads to apply the chunk's key range, if any.
    pub seq_scan_of: Option<String>,
}

/// Explains `chunk`'s SELECT as a worker would run it (bounds bound through
/// the transaction's settings), in a read-only transaction rolled back after.
pub async fn explain_chunk(
    source: &Client,
    chunk: &ChunkSelect<'_>,
) -> Result<ChunkExplain, DbFailure> {
    let bound = !chunk.binary().1.is_empty();
    let root = super::scan::explain_chunk(source, chunk).await?;
    let number = |k: &str| root.get(k).and_then(Value::as_f64).unwrap_or(0.0).max(0.0) as u64;
    Ok(ChunkExplain {
        rows: number("Plan Rows"),
        width: number("Plan Width"),
        seq_scan_of: bound.then(|| bounds_by_seq_scan(&root)).flatten(),
    })
}

/// The relation of a `Seq Scan` node in `node`'s tree whose filter reads the
/// chunk's bounds (`current_setting('ferry.bN')`).
fn bounds_by_seq_scan(node: &Value) -> Option<String> {
    let is_seq = node.get("Node Type").and_then(Value::as_str) == Some("Seq Scan");
    let filters_bounds = node
        .get("Filter")
        .and_then(Value::as_str)
        .is_some_and(|f| f.contains("ferry.b"));
    if is_seq && filters_bounds {
        let text = |k: &str| node.get(k).and_then(Value::as_str).unwrap_or_default();
        let schema = text("Schema");
        let table = text("Relation Name");
        return Some(if schema.is_empty() {
            table.to_string()
        } else {
            format!("{schema}.{table}")
        });
    }
    node.get("Plans")?
        .as_array()?
        .iter()
        .find_map(bounds_by_seq_scan)
}

#[cfg(test)]
mod tests {
    use super::bounds_by_seq_scan;
    use serde_json::json;

    #[test]
    fn finds_the_scan_that_filters_on_the_bounds() {
        let plan = json!({
            "Node Type": "Hash Join",
            "Plans": [
                {"Node Type": "Seq Scan", "Schema": "public", "Relation Name": "dim"},
                {"Node Type": "Seq Scan", "Schema": "public", "Relation Name": "facts",
                 "Filter": "((id >= (current_setting('ferry.b1'::text))::bigint))"}
            ]
        });
        assert_eq!(bounds_by_seq_scan(&plan).as_deref(), Some("public.facts"));
        let indexed = json!({"Node Type": "Index Scan", "Relation Name": "facts",
            "Index Cond": "((id >= (current_setting('ferry.b1'::text))::bigint))"});
        assert_eq!(bounds_by_seq_scan(&indexed), None);
    }
}

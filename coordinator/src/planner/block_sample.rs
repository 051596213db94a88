//! Samples the key of a source query that is a plain scan of one table (no
//! filter, no join, the key a bare column) from a share of the table's blocks
//! (`TABLESAMPLE SYSTEM`) instead of reading every row: planning a
//! 5,000,000-row table reads about 15 % of it instead of all of it. The row
//! count is then an estimate; chunks stay open-ended ranges, so every row is
//! still copied exactly once whatever the sample.

use ferry_common::sql::quote_ident;
use serde_json::Value;
use tokio_postgres::Client;

use super::split::KeySample;

/// Sampled blocks per planned chunk: a block's rows arrive as one cluster, so
/// boundaries need many blocks per chunk to land near the chunk size.
const BLOCKS_PER_CHUNK: f64 = 100.0;
/// Fewest planned chunks for this path; smaller jobs are scanned exactly.
const MIN_CHUNKS: f64 = 20.0;
/// Largest share of the table worth sampling by blocks, in percent.
const MAX_PERCENT: f64 = 25.0;

/// The table behind a plain one-table scan, and the key's column in it.
struct PlainScan {
    schema: String,
    table: String,
    column: String,
    rows: f64,
}

/// A block sample of the key, or None when the query (whose plan's root node
/// is `root`) is not a plain scan of one table, the key column may hold
/// NULLs, the job is small, or anything is in doubt (the caller then scans
/// exactly).
pub async fn sample(
    source: &Client,
    root: &Value,
    key_position: usize,
    chunk_size: u64,
    want_keys: u64,
) -> Option<KeySample> {
    let scan = plain_scan(root, key_position)?;
    let chunks = scan.rows / chunk_size.max(1) as f64;
    if chunks < MIN_CHUNKS {
        return None;
    }
    let row = source
        .query_opt(
            "SELECT (pg_relation_size(c.oid) / current_setting('block_size')::int8)::float8
               FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $3
              WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'm') AND a.attnotnull",
            &[&scan.schema, &scan.table, &scan.column],
        )
        .await
        .map_err(|e| tracing::debug!(error = %e, "cannot read the source table's size"))
        .ok()??;
    let pages: f64 = row.try_get(0).ok()?;
    let percent = 100.0 * chunks * BLOCKS_PER_CHUNK / pages.max(1.0);
    if !(percent > 0.0 && percent <= MAX_PERCENT) {
        return None;
    }
    let thin = (want_keys as f64 / (scan.rows * percent / 100.0)).min(1.0);
    let sql = format!(
        "SELECT count(*)::int8, coalesce(array_agg(k::text ORDER BY k) FILTER (WHERE r < {thin}), '{{}}')
           FROM (SELECT {col} AS k, random() AS r FROM {schema}.{table} TABLESAMPLE SYSTEM ({percent})) AS s",
        col = quote_ident(&scan.column),
        schema = quote_ident(&scan.schema),
        table = quote_ident(&scan.table),
    );
    let row = source
        .query_one(&sql, &[])
        .await
        .map_err(|e| tracing::debug!(error = %e, "cannot block-sample the key"))
        .ok()?;
    let sampled: i64 = row.try_get(0).ok()?;
    let keys: Vec<String> = row.try_get(1).ok()?;
    if sampled <= 0 || (keys.len() as f64) < chunks * 20.0 {
        return None;
    }
    let rows = (sampled as f64 * 100.0 / percent).round() as u64;
    Some(KeySample {
        rows,
        non_null_rows: rows,
        null_rows: 0,
        keys,
        how: format!("{percent:.1}% of the table's blocks, rows estimated"),
    })
}

/// The table and key column when the plan `root` is one sequential scan
/// with no filter whose `key_position`-th output is a bare column.
fn plain_scan(root: &Value, key_position: usize) -> Option<PlainScan> {
    let plain = root.get("Node Type")?.as_str()? == "Seq Scan"
        && root.get("Plans").is_none()
        && root.get("Filter").is_none();
    if !plain {
        return None;
    }
    let output = root
        .get("Output")?
        .as_array()?
        .get(key_position)?
        .as_str()?;
    Some(PlainScan {
        schema: root.get("Schema")?.as_str()?.to_string(),
        table: root.get("Relation Name")?.as_str()?.to_string(),
        column: bare_column(output)?,
        rows: root.get("Plan Rows")?.as_f64()?,
    })
}

/// The column name of an EXPLAIN output entry that is a bare column
/// (`id`, `"Mixed Case"`), None for any expression.
fn bare_column(entry: &str) -> Option<String> {
    if let Some(inner) = entry.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        let unescaped = inner.replace("\"\"", "\"");
        // a lone quote left inside means the entry was more than one identifier
        return (!unescaped.is_empty() && !inner.replace("\"\"", "").contains('"'))
            .then_some(unescaped);
    }
    let simple = !entry.is_empty()
        && entry
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !entry.starts_with(|c: char| c.is_ascii_digit());
    simple.then(|| entry.to_string())
}

#[cfg(test)]
mod tests {
    use super::bare_column;

    #[test]
    fn only_bare_columns_are_columns() {
        assert_eq!(bare_column("id").as_deref(), Some("id"));
        assert_eq!(bare_column("\"Key Col\"").as_deref(), Some("Key Col"));
        assert_eq!(bare_column("\"a\"\"b\"").as_deref(), Some("a\"b"));
        assert_eq!(bare_column("(id)::text"), None);
        assert_eq!(bare_column("items.id"), None);
        assert_eq!(bare_column("(id + 1)"), None);
        assert_eq!(bare_column("\"a\".\"b\""), None);
        assert_eq!(bare_column("1"), None);
    }
}

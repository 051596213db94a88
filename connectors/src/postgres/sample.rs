//! Samples a source query's key (one or more columns) so the planner can cut
//! equal-row chunks: from a share of the table's blocks (`TABLESAMPLE
//! SYSTEM`) when the query is a plain scan of one table with NOT NULL key
//! columns, otherwise by reading every row once (count, NULL keys and a
//! sample of keys in one scan). Both samples are repeatable: the blocks and
//! the thinning follow a seed fixed by the spec, so an unchanged table is
//! split the same way each time it is planned. Keys come back typed: integers as
//! integers, anything else in PostgreSQL's text form of the key's type; the
//! sample is ordered by PostgreSQL in each column's own collation, the order
//! the chunk filters compare in.

use ferry_common::errors::DbFailure;
use ferry_common::proto::{KeyColumn, KeyTuple, KeyValue};
use serde_json::Value;
use tokio_postgres::Client;

use super::session::failed;
use super::sql::quote_ident;
use super::text_array::{TextArray, TextArrayError};
pub use crate::sample::KeySample;
use crate::sample::{sample_fraction, sample_size};

/// Sampled blocks per planned chunk: a block's rows arrive as one cluster, so
/// boundaries need many blocks per chunk to land near the chunk size (never
/// more blocks than the sample keeps keys: see `block_sample`).
const BLOCKS_PER_CHUNK: f64 = 100.0;
/// Fewest planned chunks for the block sample; smaller jobs are scanned exactly.
const MIN_BLOCK_CHUNKS: f64 = 20.0;
/// Largest share of the table worth sampling by blocks, in percent.
const MAX_BLOCK_PERCENT: f64 = 25.0;

/// A row's place in [0, 1) for thinning a sample: a seeded hash of `$expr`
/// rather than `random()`, so planning the same spec twice on an unchanged
/// table samples the same rows (a dry run's chunks are the run's).
fn thinning(expr: &str, seed_param: &str) -> String {
    format!(
        "(hashtextextended(({expr})::text, {seed_param}::int8) & 9007199254740991)::float8 / 9007199254740992.0"
    )
}

/// `thinning` by the key itself when it is one integer column (`columns`
/// are its expressions): hashing the integer makes no text per row, about
/// half the cost of a block sample's query. `otherwise` is hashed as text.
fn key_thinning(
    key: &[KeyColumn],
    columns: &[String],
    otherwise: &str,
    seed_param: &str,
) -> String {
    match (key, columns) {
        ([k], [c]) if INTEGER_TYPES.contains(&k.r#type.as_str()) => format!(
            "(hashint8extended(({c})::int8, {seed_param}::int8) & 9007199254740991)::float8 / 9007199254740992.0"
        ),
        _ => thinning(otherwise, seed_param),
    }
}

/// The sampling seed of a job spec: a hash (FNV-1a) of what it samples, so
/// it is the same for the same spec on every coordinator.
fn seed(query: &str, key: &[KeyColumn], chunk_size: u64) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let names = key.iter().flat_map(|k| k.name.bytes().chain([0]));
    let bytes = query
        .bytes()
        .chain([0])
        .chain(names)
        .chain(chunk_size.to_le_bytes());
    for b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// Integer types whose keys travel as integers.
const INTEGER_TYPES: &[&str] = &["smallint", "integer", "bigint"];

/// The root node of `EXPLAIN (VERBOSE, FORMAT JSON) sql` (node type,
/// relation, schema, output columns, estimated rows, children).
pub async fn root_plan(client: &Client, sql: &str) -> Result<Value, DbFailure> {
    let row = client
        .query_one(&format!("EXPLAIN (VERBOSE, FORMAT JSON) {sql}"), &[])
        .await
        .map_err(|e| failed("cannot explain the source query", &e))?;
    let mut plan: Value = row
        .try_get(0)
        .map_err(|e| failed("cannot read the source query's plan", &e))?;
    Ok(plan
        .get_mut(0)
        .and_then(|p| p.get_mut("Plan"))
        .map(Value::take)
        .unwrap_or(Value::Null))
}

/// Counts the query's rows.
pub async fn count_rows(source: &Client, query: &str) -> Result<u64, DbFailure> {
    let row = source
        .query_one(&format!("SELECT count(*)::int8 FROM ({query}) AS src"), &[])
        .await
        .map_err(|e| failed("cannot count the source rows", &e))?;
    Ok(row.get::<_, i64>(0).max(0) as u64)
}

fn estimated_rows(root: &Value) -> u64 {
    root.get("Plan Rows")
        .and_then(|r| r.as_f64())
        .unwrap_or(0.0)
        .max(0.0) as u64
}

/// One key column's value from its text form: integers as integers,
/// anything else in PostgreSQL's text form of the key's type.
fn typed(key: &KeyColumn, text: &str) -> Result<KeyValue, DbFailure> {
    if !INTEGER_TYPES.contains(&key.r#type.as_str()) {
        return Ok(KeyValue::from_text(text));
    }
    text.parse::<i64>().map(KeyValue::from_int).map_err(|_| {
        DbFailure::permanent(format!(
            "key column '{}' sampled a value '{text}' that is not an integer",
            key.name
        ))
    })
}

/// The key tuples (and row widths when `widths`) of a flattened sample:
/// each sampled row is one key value per column, then its width. The
/// elements are read in place, so only the kept keys take memory.
fn tuples(
    key: &[KeyColumn],
    flat: TextArray<'_>,
    widths: bool,
) -> Result<(Vec<KeyTuple>, Vec<u64>), DbFailure> {
    let unreadable =
        |e: TextArrayError| DbFailure::permanent(format!("cannot read the key sample: {e}"));
    let mut it = flat.elements().map_err(unreadable)?;
    let stride = key.len() + usize::from(widths);
    let mut keys = Vec::with_capacity(it.remaining() / stride.max(1));
    let mut sizes = Vec::new();
    loop {
        let mut values = Vec::with_capacity(key.len());
        for k in key {
            let Some(text) = it.next() else {
                return Ok((keys, sizes));
            };
            values.push(typed(k, text.map_err(unreadable)?)?);
        }
        if widths {
            let w = it
                .next()
                .and_then(|t| t.ok())
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(0);
            sizes.push(w);
        }
        keys.push(KeyTuple::of(values));
    }
}

/// How the sample reads the key: `k0, k1, …` for the columns, the text
/// array of one sampled row, the key order, and "any key column is NULL".
struct KeyExprs {
    /// `src."a" AS k0, src."b" AS k1`.
    select: String,
    /// `ARRAY[k0::text, k1::text(, w::text)]`.
    row: String,
    /// `k0, k1`.
    order: String,
    /// `k0 IS NULL OR k1 IS NULL`.
    any_null: String,
}

impl KeyExprs {
    fn new(columns: &[String], widths: bool) -> Self {
        let names: Vec<String> = (0..columns.len()).map(|i| format!("k{i}")).collect();
        let select = columns
            .iter()
            .zip(&names)
            .map(|(c, k)| format!("{c} AS {k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut row: Vec<String> = names.iter().map(|k| format!("{k}::text")).collect();
        if widths {
            row.push("w::text".into());
        }
        Self {
            select,
            row: format!("ARRAY[{}]", row.join(", ")),
            order: names.join(", "),
            any_null: names
                .iter()
                .map(|k| format!("{k} IS NULL"))
                .collect::<Vec<_>>()
                .join(" OR "),
        }
    }
}

/// Samples the key of `query` (one or more columns, compared as a row in
/// the columns' own collations) for chunks of about `chunk_size` rows; with
/// `widths`, each sampled row's size in bytes too.
pub async fn sample_keys(
    source: &Client,
    query: &str,
    key: &[KeyColumn],
    chunk_size: u64,
    widths: bool,
) -> Result<KeySample, DbFailure> {
    let root = root_plan(source, query).await?;
    let estimate = estimated_rows(&root);
    let want = (sample_fraction(estimate, chunk_size) * estimate as f64) as u64;
    let seed = seed(query, key, chunk_size);
    if let Some(s) = block_sample(source, &root, key, chunk_size, want, widths, seed).await? {
        return Ok(s);
    }
    let mut fraction = sample_fraction(estimate, chunk_size);
    let columns: Vec<String> = key
        .iter()
        .map(|k| format!("src.{}", quote_ident(&k.name)))
        .collect();
    let e = KeyExprs::new(&columns, widths);
    let width = if widths {
        ", pg_column_size(src.*)::int8 AS w"
    } else {
        ""
    };
    // OFFSET 0 keeps the subquery from being inlined, so each row draws
    // one random number however often `r` is read
    let sql = format!(
        "SELECT c, n, ARRAY(SELECT unnest(a)) FROM (
           SELECT count(*)::int8 AS c, count(*) FILTER (WHERE {any_null})::int8 AS n,
                  coalesce(array_agg({row} ORDER BY {order}) FILTER (WHERE NOT ({any_null}) AND r < $1), '{{}}') AS a
             FROM (SELECT {select}{width}, {r} AS r FROM ({query}) AS src OFFSET 0) AS s) AS t",
        r = key_thinning(key, &columns, &format!("ROW({})", columns.join(", ")), "$2"),
        any_null = e.any_null,
        row = e.row,
        order = e.order,
        select = e.select,
    );
    for _ in 0..2 {
        let row = source
            .query_one(&sql, &[&fraction, &seed])
            .await
            .map_err(|e| failed("cannot sample the key column", &e))?;
        let rows = row.get::<_, i64>(0).max(0) as u64;
        let null_rows = row.get::<_, i64>(1).max(0) as u64;
        let (keys, sizes) = tuples(
            key,
            row.try_get(2)
                .map_err(|e| failed("cannot read the key sample", &e))?,
            widths,
        )?;
        let needed = sample_size(rows.div_ceil(chunk_size.max(1))) / 4;
        let better = sample_fraction(rows, chunk_size);
        if (keys.len() as u64) < needed.min(rows - null_rows) && better > fraction * 1.5 {
            fraction = better;
            continue;
        }
        return Ok(KeySample {
            rows,
            non_null_rows: rows - null_rows,
            null_rows,
            keys,
            widths: sizes,
            how: "every row read, rows counted".into(),
        });
    }
    Err(DbFailure::permanent(
        "the source query returned a different row count on each scan: is it deterministic?",
    ))
}

/// The table and key columns when the plan `root` is one sequential scan
/// with no filter whose key outputs are bare columns.
struct PlainScan {
    schema: String,
    table: String,
    columns: Vec<String>,
    rows: f64,
}

fn plain_scan(root: &Value, key: &[KeyColumn]) -> Option<PlainScan> {
    let plain = root.get("Node Type")?.as_str()? == "Seq Scan"
        && root.get("Plans").is_none()
        && root.get("Filter").is_none();
    if !plain {
        return None;
    }
    let output = root.get("Output")?.as_array()?;
    let columns = key
        .iter()
        .map(|k| bare_column(output.get(k.position as usize)?.as_str()?))
        .collect::<Option<Vec<_>>>()?;
    Some(PlainScan {
        schema: root.get("Schema")?.as_str()?.to_string(),
        table: root.get("Relation Name")?.as_str()?.to_string(),
        columns,
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

/// A block sample of the key, or None when the query is not a plain scan of
/// one table, a key column may hold NULLs, or the job is small (the caller
/// then scans exactly). The row count is then an estimate; chunks stay
/// open-ended ranges, so every row is still copied exactly once. Widths are
/// those of the table's whole rows.
async fn block_sample(
    source: &Client,
    root: &Value,
    key: &[KeyColumn],
    chunk_size: u64,
    want_keys: u64,
    widths: bool,
    seed: i64,
) -> Result<Option<KeySample>, DbFailure> {
    let Some(scan) = plain_scan(root, key) else {
        return Ok(None);
    };
    let chunks = scan.rows / chunk_size.max(1) as f64;
    if chunks < MIN_BLOCK_CHUNKS {
        return Ok(None);
    }
    let row = source
        .query_opt(
            "SELECT (pg_relation_size(c.oid) / current_setting('block_size')::int8)::float8
               FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'm')
                AND (SELECT count(*) FROM pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attname = ANY($3::text[]) AND a.attnotnull)
                    = cardinality(ARRAY(SELECT DISTINCT unnest($3::text[])))",
            &[&scan.schema, &scan.table, &scan.columns],
        )
        .await
        .map_err(|e| failed("cannot read the source table's size", &e))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let pages: f64 = row.get(0);
    // 100 blocks per chunk, but no more blocks than keys kept: past the
    // sample's bound more blocks would only be thinned away
    let blocks = (chunks * BLOCKS_PER_CHUNK).min(want_keys as f64);
    let percent = 100.0 * blocks / pages.max(1.0);
    if !(percent > 0.0 && percent <= MAX_BLOCK_PERCENT) {
        return Ok(None);
    }
    let thin = (want_keys as f64 / (scan.rows * percent / 100.0)).min(1.0);
    let columns: Vec<String> = scan
        .columns
        .iter()
        .map(|c| format!("t.{}", quote_ident(c)))
        .collect();
    let e = KeyExprs::new(&columns, widths);
    let width = if widths {
        ", pg_column_size(t.*)::int8 AS w"
    } else {
        ""
    };
    let sql = format!(
        "SELECT c, ARRAY(SELECT unnest(a)) FROM (
           SELECT count(*)::int8 AS c,
                  coalesce(array_agg({row} ORDER BY {order}) FILTER (WHERE r < $2), '{{}}') AS a
             FROM (SELECT {select}{width}, {r} AS r
                     FROM {schema}.{table} AS t TABLESAMPLE SYSTEM ($1) REPEATABLE (($3::int8)::float8) OFFSET 0) AS s) AS x",
        r = key_thinning(key, &columns, "t.ctid", "$3"),
        row = e.row,
        order = e.order,
        select = e.select,
        schema = quote_ident(&scan.schema),
        table = quote_ident(&scan.table),
    );
    let percent4 = percent as f32;
    let row = source
        .query_one(&sql, &[&percent4, &thin, &seed])
        .await
        .map_err(|e| failed("cannot block-sample the key column", &e))?;
    let sampled: i64 = row.get(0);
    let (keys, sizes) = tuples(
        key,
        row.try_get(1)
            .map_err(|e| failed("cannot read the key sample", &e))?,
        widths,
    )?;
    // a sample the thinning left too small is taken again by rows
    if sampled <= 0 || (keys.len() as u64) < want_keys / 5 {
        return Ok(None);
    }
    let rows = (sampled as f64 * 100.0 / percent).round() as u64;
    Ok(Some(KeySample {
        rows,
        non_null_rows: rows,
        null_rows: 0,
        keys,
        widths: sizes,
        how: format!("{percent:.1}% of the table's blocks, rows estimated"),
    }))
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

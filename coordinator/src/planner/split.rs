//! Equal-row key boundaries from a random sample of the key column, so skewed
//! keys do not make one giant chunk.

use ferry_common::errors::classify_pg;
use ferry_common::sql::quote_ident;
use tokio_postgres::Client;

use super::block_sample;
use super::chunk_sql::KeyColumn;
use super::explain::root_plan;
use super::PlanError;

/// Sampled keys per planned chunk: the sample's quantiles put each chunk within
/// a few percent of `chunk_size` rows.
const SAMPLES_PER_CHUNK: u64 = 200;
/// Fewest keys sampled for a parallel plan.
const MIN_SAMPLES: u64 = 10_000;
/// Most keys sampled, bounding the planner's memory.
const MAX_SAMPLES: u64 = 1_000_000;

/// What one scan of the key column tells the planner.
#[derive(Debug, Clone)]
pub struct KeySample {
    /// Rows the query returns.
    pub rows: u64,
    /// Rows whose key is not NULL.
    pub non_null_rows: u64,
    /// Rows whose key is NULL.
    pub null_rows: u64,
    /// A uniform sample of the non-NULL keys, as text, in key order.
    pub keys: Vec<String>,
    /// How the sample was taken, for people.
    pub how: String,
}

fn db_err(context: &str, e: &tokio_postgres::Error) -> PlanError {
    let f = classify_pg(e);
    PlanError {
        class: f.class,
        message: format!("{context}: {}", f.message),
    }
}

/// Counts the query's rows.
pub async fn count_rows(source: &Client, query: &str) -> Result<u64, PlanError> {
    let row = source
        .query_one(&format!("SELECT count(*)::int8 FROM ({query}) AS src"), &[])
        .await
        .map_err(|e| db_err("cannot count source rows", &e))?;
    Ok(row.get::<_, i64>(0).max(0) as u64)
}

/// The planner's row estimate from the plan's root node.
fn estimated_rows(root: &serde_json::Value) -> u64 {
    let est = root
        .get("Plan Rows")
        .and_then(|r| r.as_f64())
        .unwrap_or(0.0);
    est.max(0.0) as u64
}

fn sample_fraction(rows: u64, chunk_size: u64) -> f64 {
    let chunks = rows.div_ceil(chunk_size.max(1));
    let want = (chunks * SAMPLES_PER_CHUNK).clamp(MIN_SAMPLES, MAX_SAMPLES);
    if rows == 0 {
        1.0
    } else {
        (want as f64 / rows as f64).min(1.0)
    }
}

/// Samples the key: from a share of the blocks when the query is a plain scan
/// of one table (`block_sample`), otherwise by counting rows and NULL keys and
/// sampling keys in one scan, again with a better fraction when the
/// optimizer's estimate was far off.
pub async fn sample_keys(
    source: &Client,
    query: &str,
    key: &KeyColumn,
    key_position: Option<usize>,
    chunk_size: u64,
) -> Result<KeySample, PlanError> {
    let root = root_plan(source, query)
        .await
        .map_err(|e| db_err("cannot estimate source rows", &e))?;
    let estimate = estimated_rows(&root);
    if let Some(position) = key_position {
        let want = sample_fraction(estimate, chunk_size) * estimate as f64;
        if let Some(s) =
            block_sample::sample(source, &root, position, chunk_size, want as u64).await
        {
            return Ok(s);
        }
    }
    let mut fraction = sample_fraction(estimate, chunk_size);
    let sql = format!(
        "SELECT count(*)::int8, count(*) FILTER (WHERE k IS NULL)::int8,
                coalesce(array_agg(k::text ORDER BY k) FILTER (WHERE k IS NOT NULL AND r < $1), '{{}}')
           FROM (SELECT src.{} AS k, random() AS r FROM ({query}) AS src) AS s",
        quote_ident(&key.name)
    );
    for _ in 0..2 {
        let row = source
            .query_one(&sql, &[&fraction])
            .await
            .map_err(|e| db_err("cannot sample the key column", &e))?;
        let rows = row.get::<_, i64>(0).max(0) as u64;
        let null_rows = row.get::<_, i64>(1).max(0) as u64;
        let keys: Vec<String> = row.get(2);
        let needed = rows.div_ceil(chunk_size.max(1)) * SAMPLES_PER_CHUNK / 4;
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
            how: "every row read, rows counted".into(),
        });
    }
    Err(PlanError::invalid(
        "the source query returned a different row count on each scan: is it deterministic?",
    ))
}

/// Boundaries that cut `rows` keys, of which `sample` is a sorted uniform
/// sample, into chunks of about `chunk_size` rows. Duplicates collapse, so a
/// single key value never spans two chunks.
pub fn equal_row_boundaries(sample: &[String], rows: u64, chunk_size: u64) -> Vec<String> {
    let chunks = rows.div_ceil(chunk_size.max(1));
    if chunks <= 1 || sample.is_empty() {
        return Vec::new();
    }
    let m = sample.len() as u64;
    let mut out: Vec<String> = Vec::with_capacity(chunks as usize);
    for i in 1..chunks {
        let idx = (i * m / chunks) as usize;
        let b = &sample[idx.min(sample.len() - 1)];
        if out.last() != Some(b) && Some(b) != sample.first() {
            out.push(b.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_follow_the_sample_not_the_domain() {
        // 90% of keys in 1..100, 10% spread to 10,000
        let mut keys: Vec<u64> = (0..900).map(|i| 1 + i / 9).collect();
        keys.extend((0..100).map(|i| 100 + i * 100));
        keys.sort_unstable();
        let sample: Vec<String> = keys.iter().map(|k| format!("{k:05}")).collect();
        let b = equal_row_boundaries(&sample, 1000, 100);
        assert!(b.len() >= 8, "{b:?}");
        // most boundaries fall inside the dense region
        assert!(
            b.iter().filter(|k| k.as_str() < "00100").count() >= 7,
            "{b:?}"
        );
    }

    #[test]
    fn one_chunk_needs_no_boundary() {
        assert!(equal_row_boundaries(&["1".into()], 10, 100).is_empty());
    }
}

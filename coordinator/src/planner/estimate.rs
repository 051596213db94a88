//! Per-chunk estimates of a plan, for the dry run: rows and bytes of each
//! chunk from `EXPLAIN` of the chunk's SELECT on a PostgreSQL source (and
//! whether a chunk's range is applied by a sequential scan), or the plan's
//! rows spread evenly with a width from the column types elsewhere.

use ferry_common::connections::ConnectionRegistry;
use ferry_common::proto::{ColumnPlan, ColumnType, JobSpec, PlanSpread, TypeKind};
use ferry_connectors::kind::DbKind;
use ferry_connectors::postgres::chunk_explain::explain_chunk;
use ferry_connectors::postgres::select::ChunkSelect;

use super::{open_reporting, typed, Plan, PlanError};

/// Most chunks explained one by one; a larger plan is explained at evenly
/// spaced chunks (each EXPLAIN is one round trip).
const MAX_EXPLAINED: usize = 200;

/// Estimates over a plan's chunks.
#[derive(Debug, Clone, Default)]
pub(super) struct ChunkEstimates {
    /// Estimated rows of each chunk looked at.
    pub rows: Vec<u64>,
    /// Estimated bytes of each chunk looked at.
    pub bytes: Vec<u64>,
    /// Average row width in bytes.
    pub avg_row_bytes: u64,
    /// Tables a chunk's range is applied to by a sequential scan.
    pub seq_scans: Vec<String>,
}

/// Estimates each chunk of `plan` (at most `MAX_EXPLAINED` of them).
pub(super) async fn estimate(
    spec: &JobSpec,
    job_id: &str,
    conns: &ConnectionRegistry,
    plan: &Plan,
) -> Result<ChunkEstimates, PlanError> {
    if typed::kind_of(conns, &spec.source)? != DbKind::Postgres {
        return Ok(even(plan, typed_width(&plan.columns)));
    }
    let (source, _) = open_reporting(conns, &spec.source, job_id).await?;
    // chunks run the planner's query when it added the split column (keyless plans)
    let query = if plan.source_query.is_empty() {
        super::bare_query(&spec.query)
    } else {
        plan.source_query.as_str()
    };
    let picked = pick(plan.chunks.len());
    let mut out = ChunkEstimates::default();
    let (mut total_rows, mut total_bytes) = (0u64, 0u64);
    for i in picked {
        let select = ChunkSelect {
            query,
            columns: &plan.columns,
            key: &plan.key,
            bounds: &plan.chunks[i],
        };
        let e = explain_chunk(&source, &select).await?;
        // one chunk reads the whole query: its row count is the plan's
        let rows = if plan.chunks.len() == 1 {
            plan.rows
        } else {
            e.rows
        };
        out.rows.push(rows);
        out.bytes.push(rows.saturating_mul(e.width));
        total_rows += rows;
        total_bytes += rows.saturating_mul(e.width);
        out.avg_row_bytes = out.avg_row_bytes.max(e.width);
        if let Some(t) = e.seq_scan_of {
            if !out.seq_scans.contains(&t) {
                out.seq_scans.push(t);
            }
        }
    }
    if let Some(avg) = total_bytes.checked_div(total_rows) {
        out.avg_row_bytes = avg;
    }
    Ok(out)
}

/// Indices of the chunks to explain: all, or `MAX_EXPLAINED` evenly spaced.
fn pick(chunks: usize) -> Vec<usize> {
    if chunks <= MAX_EXPLAINED {
        return (0..chunks).collect();
    }
    let mut out: Vec<usize> = (0..MAX_EXPLAINED)
        .map(|i| i * (chunks - 1) / (MAX_EXPLAINED - 1))
        .collect();
    out.dedup();
    out
}

/// The plan's rows spread evenly over its chunks, rows `width` bytes wide.
fn even(plan: &Plan, width: u64) -> ChunkEstimates {
    let n = plan.chunks.len().max(1) as u64;
    let rows: Vec<u64> = (0..n)
        .map(|i| plan.rows / n + u64::from(i < plan.rows % n))
        .collect();
    ChunkEstimates {
        bytes: rows.iter().map(|r| r * width).collect(),
        rows,
        avg_row_bytes: width,
        seq_scans: Vec::new(),
    }
}

/// A row's rough width in bytes from its columns' types (typed sources,
/// whose databases give no width estimate Ferry reads).
fn typed_width(columns: &[ColumnPlan]) -> u64 {
    columns
        .iter()
        .map(|c| c.source_type.as_ref().map_or(16, type_width))
        .sum::<u64>()
        .max(1)
}

/// The rough width of one value of type `t`.
fn type_width(t: &ColumnType) -> u64 {
    let bounded = |default: u64| t.max_len.map_or(default, |n| u64::from(n).min(64));
    match TypeKind::try_from(t.kind).unwrap_or(TypeKind::TypeUnspecified) {
        TypeKind::TypeBool => 1,
        TypeKind::TypeInt | TypeKind::TypeFloat => u64::from(t.bits.max(8)) / 8,
        TypeKind::TypeDecimal => 16,
        TypeKind::TypeText | TypeKind::TypeBytes => bounded(32),
        TypeKind::TypeDate => 4,
        TypeKind::TypeTime | TypeKind::TypeTimestamp | TypeKind::TypeTimestamptz => 8,
        TypeKind::TypeUuid => 16,
        TypeKind::TypeJson => 64,
        TypeKind::TypeOther | TypeKind::TypeUnspecified => 32,
    }
}

/// Smallest, median and largest of `values` (zeros when empty).
pub(super) fn spread(values: &[u64]) -> PlanSpread {
    let mut v = values.to_vec();
    v.sort_unstable();
    PlanSpread {
        min: v.first().copied().unwrap_or(0),
        median: v.get(v.len() / 2).copied().unwrap_or(0),
        max: v.last().copied().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_every_chunk_or_an_even_spread() {
        assert_eq!(pick(3), vec![0, 1, 2]);
        let many = pick(1000);
        assert_eq!(many.len(), MAX_EXPLAINED);
        assert_eq!((many[0], many[MAX_EXPLAINED - 1]), (0, 999));
    }

    #[test]
    fn spread_is_min_median_max() {
        let s = spread(&[5, 1, 9, 3]);
        assert_eq!((s.min, s.median, s.max), (1, 5, 9));
        assert_eq!(spread(&[]).max, 0);
    }
}

//! The dry run (`PlanJob`, `ferry plan`): plans a job exactly as a run would
//! (`plan_job`, which writes nothing) and says what running it would take:
//! chunks and their estimated sizes, casts, connections by the operations
//! guide's formula, memory, consistency and warnings. Nothing is written: no
//! job is stored, no table (ledger, load, target) is created.

use ferry_common::connections::ConnectionRegistry;
use ferry_common::ident::parse_table;
use ferry_common::proto::{Consistency, JobSpec, PlanCast, PlanJobResponse, WriteMode};
use ferry_connectors::db::catalog;
use ferry_connectors::kind::DbKind;
use ferry_connectors::postgres::copy::SEND_BUFFER;
use ferry_connectors::postgres::sql::show_ident;
use ferry_connectors::rows::{
    BATCHES_IN_FLIGHT, BATCH_BYTES, BATCH_ROWS, POSTGRES_WRITE_BYTES, POSTGRES_WRITE_ROWS,
};

use super::estimate::{estimate, spread, ChunkEstimates};
use super::{plan_job, typed, Plan, PlanError};
use crate::key_order::{key_order, KeyOrder};

/// The job id planner sessions of a dry run are tagged with (`ferry:plan:dry-run`).
pub const DRY_RUN_ID: &str = "dry-run";
/// The guide's metadata connections: the coordinator's planner session.
const METADATA_CONNECTIONS: u32 = 1;
/// The guide's buffer connections.
const BUFFER_CONNECTIONS: u32 = 2;
/// A chunk larger than this many times the median is skew worth a warning.
const SKEW_FACTOR: u64 = 2;

/// Plans `spec` (defaults already resolved) without writing anything.
pub async fn dry_run(
    spec: &JobSpec,
    conns: &ConnectionRegistry,
) -> Result<PlanJobResponse, PlanError> {
    let plan = plan_job(spec, DRY_RUN_ID, conns).await?;
    let would_create = would_create(spec, conns, &plan).await?;
    super::upsert_key::check_upsert_key(spec, DRY_RUN_ID, conns, &plan, would_create.is_empty())
        .await?;
    let est = estimate(spec, DRY_RUN_ID, conns, &plan).await?;
    let chunks = plan.chunks.len() as u32;
    let workers = spec
        .max_workers
        .unwrap_or(1)
        .min(plan.max_in_flight.unwrap_or(u32::MAX))
        .min(chunks)
        .max(1);
    let from = typed::kind_of(conns, &spec.source)?;
    let into = typed::kind_of(conns, &spec.target)?;
    let (bound, bound_why) = memory_bound(from, into, est.avg_row_bytes, workers);
    let chunk_size = spec.chunk_size.unwrap_or(50_000);
    let split_prone = if would_create.is_empty() {
        split_prone(spec, conns, &plan, workers).await?
    } else {
        Vec::new()
    };
    let sorted_otherwise = if would_create.is_empty() {
        sorted_otherwise(spec, conns, &plan).await
    } else {
        None
    };
    Ok(PlanJobResponse {
        strategy: plan.strategy.clone(),
        chunks,
        rows_estimated: plan.rows,
        rows_per_chunk: Some(spread(&est.rows)),
        bytes_per_chunk: Some(spread(&est.bytes)),
        chunks_explained: est.rows.len() as u32,
        casts: plan
            .columns
            .iter()
            .filter(|c| !c.cast.is_empty())
            .map(|c| PlanCast {
                source: c.source.clone(),
                target: c.target.clone(),
                cast: c.cast.clone(),
            })
            .collect(),
        workers,
        connections_needed: workers * 2 + METADATA_CONNECTIONS + BUFFER_CONNECTIONS,
        connections_metadata: METADATA_CONNECTIONS,
        connections_buffer: BUFFER_CONNECTIONS,
        avg_row_bytes: est.avg_row_bytes,
        memory_guide_bytes: chunk_size
            .saturating_mul(est.avg_row_bytes)
            .saturating_mul(u64::from(workers)),
        memory_bound_bytes: bound,
        memory_bound_why: bound_why,
        consistency: consistency_of(spec).to_string(),
        warnings: warnings(spec, &plan, &est, workers, &split_prone)
            .into_iter()
            .chain(sorted_otherwise)
            .collect(),
        target_table: format!("{}.{}", plan.target.schema, plan.target.name),
        would_create_table: would_create,
        key: plan.key.iter().map(shown_key).collect(),
    })
}

/// The warning for a key the target sorts otherwise than the source (see
/// `key_order`): verify will compare the whole table and repair will refuse.
/// None when the orders agree, the key is not copied, or they cannot be read.
async fn sorted_otherwise(
    spec: &JobSpec,
    conns: &ConnectionRegistry,
    plan: &Plan,
) -> Option<String> {
    if plan.chunks.len() < 2 || plan.key.iter().any(|k| k.target.is_empty()) {
        return None;
    }
    let source = typed::open(conns, &spec.source, DRY_RUN_ID).await.ok()?;
    let target = typed::open(conns, &spec.target, DRY_RUN_ID).await.ok()?;
    let query = super::bare_query(&spec.query);
    let order = key_order(
        &source,
        &target,
        &plan.key,
        &plan.columns,
        query,
        &plan.target,
    )
    .await
    .ok()?;
    match order {
        KeyOrder::Same => None,
        KeyOrder::Differs(why) => Some(format!(
            "key order: {why}; `ferry verify` will compare the whole table at once and `ferry repair` will refuse (a key range of the target holds other chunks' rows): give the target column a collation that sorts as the source's to verify and repair chunk by chunk"
        )),
    }
}

/// A key column as the plan shows it: a split column the planner added to
/// the query (not copied) says what it stands for.
fn shown_key(k: &ferry_common::proto::KeyColumn) -> String {
    match (k.target.is_empty(), k.r#type.as_str()) {
        (false, _) => k.name.clone(),
        (true, "tid") => format!("ctid (block ranges; selected as {}, not copied)", k.name),
        (true, _) => format!(
            "the driving table's key (selected as {}, not copied)",
            k.name
        ),
    }
}

/// The consistency mode the job would run in (the spec's, resolved against
/// the source's kind by `resolve_spec`): "snapshot" when every chunk reads
/// one exported snapshot, "none" when each reads the source as it is.
fn consistency_of(spec: &JobSpec) -> &'static str {
    match Consistency::try_from(spec.consistency) {
        Ok(Consistency::Snapshot) => "snapshot",
        _ => "none",
    }
}

/// With `--create-table` and no target table: the table a run would create,
/// for people (`schema.table (col type, …)`); empty otherwise.
async fn would_create(
    spec: &JobSpec,
    conns: &ConnectionRegistry,
    plan: &Plan,
) -> Result<String, PlanError> {
    if !spec.create_table {
        return Ok(String::new());
    }
    let name = parse_table(&spec.table)
        .map_err(|e| PlanError::invalid(format!("invalid target table: {e}")))?;
    let mut target = typed::open(conns, &spec.target, DRY_RUN_ID).await?;
    if catalog::resolve_table(&mut target, &name).await?.is_some() {
        return Ok(String::new());
    }
    let cols: Vec<String> = plan
        .columns
        .iter()
        .map(|c| {
            let ty = if c.target_db_type.is_empty() {
                &c.verify_type
            } else {
                &c.target_db_type
            };
            format!("{} {ty}", show_ident(&c.target))
        })
        .collect();
    Ok(format!(
        "{}.{} ({})",
        plan.target.schema,
        plan.target.name,
        cols.join(", ")
    ))
}

/// What Ferry's workers hold at most for `workers` chunks in flight, and
/// how: between PostgreSQL databases the COPY buffer being filled and the
/// one being sent (`SEND_BUFFER` each) plus one row; across kinds the typed
/// batches a reader may run ahead (`BATCHES_IN_FLIGHT` in the channel, one
/// being filled, one being written), each at most `BATCH_ROWS` rows or
/// `BATCH_BYTES` bytes, where a PostgreSQL target's write gathers up to
/// `POSTGRES_WRITE_ROWS` rows or `POSTGRES_WRITE_BYTES` bytes instead of one.
fn memory_bound(from: DbKind, into: DbKind, row: u64, workers: u32) -> (u64, String) {
    let workers64 = u64::from(workers);
    if from == DbKind::Postgres && into == DbKind::Postgres {
        let per_chunk = 2 * SEND_BUFFER as u64 + row;
        return (
            per_chunk * workers64,
            format!(
                "binary COPY: 2 × {} KiB buffers + one row per chunk in flight, × {workers} chunks",
                SEND_BUFFER / 1024
            ),
        );
    }
    let batch = (BATCH_ROWS as u64 * row).min(BATCH_BYTES as u64 + row);
    if into == DbKind::Postgres {
        let batches = BATCHES_IN_FLIGHT as u64 + 1;
        let write = (POSTGRES_WRITE_ROWS as u64 * row).min(POSTGRES_WRITE_BYTES as u64 + row);
        return (
            (batch * batches + write) * workers64,
            format!(
                "typed batches: {batches} batches of at most {BATCH_ROWS} rows or {} MiB and one COPY of at most {POSTGRES_WRITE_ROWS} rows or {} MiB per chunk in flight, × {workers} chunks",
                BATCH_BYTES >> 20,
                POSTGRES_WRITE_BYTES >> 20
            ),
        );
    }
    let batches = BATCHES_IN_FLIGHT as u64 + 2;
    (
        batch * batches * workers64,
        format!(
            "typed batches: {batches} batches of at most {BATCH_ROWS} rows or {} MiB per chunk in flight, × {workers} chunks",
            BATCH_BYTES >> 20
        ),
    )
}

/// For a load of several streams into an existing table that is empty (or
/// that truncate mode empties): its indexes that such a load leaves larger
/// than one stream would. A hint only: when the target cannot be read
/// (a role without SELECT on it), the plan goes on without it.
async fn split_prone(
    spec: &JobSpec,
    conns: &ConnectionRegistry,
    plan: &Plan,
    workers: u32,
) -> Result<Vec<String>, PlanError> {
    let emptied = match WriteMode::try_from(spec.mode) {
        Ok(WriteMode::Append | WriteMode::Unspecified) => false,
        Ok(WriteMode::Truncate) => true,
        _ => return Ok(Vec::new()),
    };
    if workers < 2 {
        return Ok(Vec::new());
    }
    let mut target = typed::open(conns, &spec.target, DRY_RUN_ID).await?;
    match catalog::split_prone_indexes(&mut target, &plan.target, emptied).await {
        Ok(indexes) => Ok(indexes),
        Err(e) => {
            tracing::debug!(error = %e.message, "no index-growth hint: cannot read the target");
            Ok(Vec::new())
        }
    }
}

/// Problems worth fixing before running; `split_prone`: the indexes an
/// append of `workers` streams into the empty target would leave larger.
fn warnings(
    spec: &JobSpec,
    plan: &Plan,
    est: &ChunkEstimates,
    workers: u32,
    split_prone: &[String],
) -> Vec<String> {
    let mut out = Vec::new();
    let chunk_size = spec.chunk_size.unwrap_or(50_000);
    if plan.key.is_empty() && plan.chunks.len() == 1 {
        out.push(format!(
            "no key: the job runs as one chunk on one worker ({} rows); pass --key COL (an indexed column of the query) to run in parallel",
            plan.rows
        ));
    } else if plan.chunks.len() == 1 && plan.rows > chunk_size {
        out.push(format!(
            "one chunk of {} rows although --chunk-size is {chunk_size}: {}",
            plan.rows, plan.strategy
        ));
    }
    let s = spread(&est.rows);
    if est.rows.len() > 1 && s.max > SKEW_FACTOR * s.median.max(1) {
        out.push(format!(
            "skew: the largest chunk is estimated at {} rows, more than {SKEW_FACTOR}× the median {} (many rows share a key value, or the statistics are stale: ANALYZE the source table)",
            s.max, s.median
        ));
    }
    if !split_prone.is_empty() {
        out.push(format!(
            "index growth: up to {workers} streams loading the empty {}.{} leave its single-column B-tree index{} {} larger than one stream would (31 % larger with 2 streams in Ferry's benchmark: pages below another stream's keys split in the middle and stay half full); for a first load, --mode replace builds the indexes once after the load, compact and faster",
            show_ident(&plan.target.schema),
            show_ident(&plan.target.name),
            if split_prone.len() == 1 { "" } else { "es" },
            split_prone
                .iter()
                .map(|i| show_ident(i))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for table in &est.seq_scans {
        out.push(format!(
            "sequential scan per chunk: each chunk's key range is applied by reading all of {table} ({} reads of the whole table); create an index on the key column ({}) or pass --key with an indexed column",
            plan.chunks.len(),
            plan.key
                .iter()
                .map(|k| show_ident(&k.name))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_bound_does_not_grow_with_chunk_size() {
        let (pg, my, sq) = (DbKind::Postgres, DbKind::MySql, DbKind::Sqlite);
        let (copy, why) = memory_bound(pg, pg, 100, 4);
        assert_eq!(copy, 4 * (2 * SEND_BUFFER as u64 + 100));
        assert!(why.contains("COPY"), "{why}");
        let (typed, _) = memory_bound(pg, my, 100, 2);
        assert_eq!(typed, 2 * (BATCHES_IN_FLIGHT as u64 + 2) * 200_000);
        let (wide, _) = memory_bound(pg, sq, 10_000, 1);
        assert_eq!(
            wide,
            (BATCHES_IN_FLIGHT as u64 + 2) * (BATCH_BYTES as u64 + 10_000)
        );
        // into PostgreSQL, one write gathers several batches
        let (gathered, why) = memory_bound(sq, pg, 100, 2);
        let batches = (BATCHES_IN_FLIGHT as u64 + 1) * 200_000;
        assert_eq!(gathered, 2 * (batches + POSTGRES_WRITE_ROWS as u64 * 100));
        assert!(why.contains("one COPY"), "{why}");
    }
}

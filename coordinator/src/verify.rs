//! `ferry verify` and `ferry rejects`: compare each chunk's rows in source and
//! target by count and an order-independent hash, and list refused rows. The
//! connector computes the digests from the job's typed plan.

use ferry_common::connections::ConnectionRegistry;
use ferry_common::db::DbRole;
use ferry_common::proto::{ChunkBounds, ChunkCheck, ChunkRecord, JobRecord, Reject, TableRef};
use ferry_connectors::db::{self, target as db_target, Conn};
use ferry_connectors::postgres::select::ChunkSelect;
use ferry_connectors::postgres::verify as digests;

use crate::error::{CoordinatorError, Reason};
use crate::key_order::{key_order, KeyOrder};
use crate::verify_typed::{is_typed, Sides};

fn unknown_connection(field: &str, e: impl ToString) -> CoordinatorError {
    CoordinatorError::precondition(field, Reason::UnknownConnection, e.to_string())
}

async fn open(
    conns: &ConnectionRegistry,
    field: &str,
    name: &str,
    job_id: &str,
) -> Result<Conn, CoordinatorError> {
    let url = conns.url(name).map_err(|e| unknown_connection(field, e))?;
    db::open(
        DbRole::Planner,
        name,
        url,
        Some(&format!("ferry:verify:{job_id}")),
    )
    .await
    .map_err(|f| CoordinatorError::Database(f.message))
}

/// The PostgreSQL session behind `conn` (a PostgreSQL → PostgreSQL job's).
fn postgres<'a>(
    conn: &'a Conn,
    field: &str,
) -> Result<&'a tokio_postgres::Client, CoordinatorError> {
    conn.postgres().ok_or_else(|| {
        CoordinatorError::precondition(
            field,
            Reason::UnknownConnection,
            format!(
                "the job was planned for PostgreSQL but the connection is now {}: give the coordinator the job's connections",
                conn.kind().name()
            ),
        )
    })
}

/// Whether the job's key lands in the target, so chunks can be compared
/// range by range there.
pub fn key_copied(job: &JobRecord) -> bool {
    !job.key.is_empty() && job.key.iter().all(|k| !k.target.is_empty())
}

/// One check standing for every chunk, described by `range`: all rows, the
/// rejected ones summed (chunk number 0).
fn whole_table(chunks: &[ChunkRecord], range: String) -> ChunkRecord {
    ChunkRecord {
        chunk_no: 0,
        range,
        bounds: Some(ChunkBounds::all()),
        rows_rejected: chunks.iter().map(|c| c.rows_rejected).sum(),
        ..Default::default()
    }
}

/// A chunk side's row count and order-independent hash.
#[derive(PartialEq, Eq)]
struct Count {
    rows: u64,
    hash: String,
}

/// A planned job's two sides, opened for comparing them: its source and
/// target sessions, its query and the table its rows are in.
struct Sessions<'a> {
    source: Conn,
    target: Conn,
    query: &'a str,
    table: &'a TableRef,
}

/// Opens both sides of `job`, or says it was never planned.
async fn open_both<'a>(
    conns: &ConnectionRegistry,
    job: &'a JobRecord,
) -> Result<Sessions<'a>, CoordinatorError> {
    let (Some(spec), Some(target_table), false) = (
        job.spec.as_ref(),
        job.target.as_ref(),
        job.columns.is_empty(),
    ) else {
        return Err(CoordinatorError::precondition(
            "job_id",
            Reason::NotPlanned,
            "the job was never planned: nothing to verify",
        ));
    };
    Ok(Sessions {
        source: open(conns, "spec.source", &spec.source, &job.job_id).await?,
        target: open(conns, "spec.target", &spec.target, &job.job_id).await?,
        query: crate::planner::bare_query(&spec.query),
        table: job.load.as_ref().unwrap_or(target_table),
    })
}

/// Compares every chunk of `job`.
pub async fn verify(
    conns: &ConnectionRegistry,
    job: &JobRecord,
    chunks: &[ChunkRecord],
) -> Result<Vec<ChunkCheck>, CoordinatorError> {
    let Sessions {
        mut source,
        mut target,
        query,
        table,
    } = open_both(conns, job).await?;
    // target rows of a key that is not copied (ctid, a driving table's key),
    // or that the target sorts differently, cannot be mapped back to chunks:
    // compare the whole table at once
    let whole;
    let chunks = if chunks.len() <= 1 {
        chunks
    } else if !key_copied(job) {
        let why = "the whole table (the split column is not copied into the target)";
        whole = [whole_table(chunks, why.into())];
        &whole[..]
    } else if let KeyOrder::Differs(why) =
        key_order(&source, &target, &job.key, &job.columns, query, table).await?
    {
        whole = [whole_table(chunks, format!("the whole table ({why})"))];
        &whole[..]
    } else {
        chunks
    };
    let typed = is_typed(job)
        .then(|| Sides::of(job, query, table, &target))
        .transpose()?;
    let mut out = Vec::with_capacity(chunks.len());
    for c in chunks {
        let bounds = c.bounds.clone().unwrap_or_else(ChunkBounds::all);
        let (s, d) = if let Some(sides) = &typed {
            let (s, d) = tokio::join!(
                sides.digest(&mut source, &sides.source, &bounds),
                sides.digest(&mut target, &sides.target, &bounds)
            );
            let (s, d) = (s?, d?);
            ((s.rows, s.sum.to_string()), (d.rows, d.sum.to_string()))
        } else {
            let select = ChunkSelect {
                query,
                columns: &job.columns,
                key: &job.key,
                bounds: &bounds,
            };
            let (pg_source, pg_target) = (
                postgres(&source, "spec.source")?,
                postgres(&target, "spec.target")?,
            );
            let (s, d) = tokio::join!(
                digests::source_digest(pg_source, &select),
                digests::target_digest(pg_target, table, &job.columns, &job.key, &bounds)
            );
            let s = s.map_err(|f| CoordinatorError::Database(f.message))?;
            let d = d.map_err(|f| CoordinatorError::Database(f.message))?;
            ((s.rows, s.hash), (d.rows, d.hash))
        };
        let (s, d) = (
            Count {
                rows: s.0,
                hash: s.1,
            },
            Count {
                rows: d.0,
                hash: d.1,
            },
        );
        let matches = if c.rows_rejected > 0 {
            d.rows + c.rows_rejected == s.rows
        } else {
            s == d
        };
        out.push(ChunkCheck {
            chunk_no: c.chunk_no,
            range: c.range.clone(),
            source_rows: s.rows,
            target_rows: d.rows,
            rejected_rows: c.rows_rejected,
            matches,
        });
    }
    Ok(out)
}

/// Refuses `ferry repair` of a job split on a key the target sorts
/// differently from the source (see `key_order`): deleting a chunk's range
/// there would delete rows of other chunks and not copy them back.
pub async fn check_repairable(
    conns: &ConnectionRegistry,
    job: &JobRecord,
    chunks: usize,
) -> Result<(), CoordinatorError> {
    if !key_copied(job) || chunks < 2 {
        return Ok(());
    }
    let s = open_both(conns, job).await?;
    match key_order(&s.source, &s.target, &job.key, &job.columns, s.query, s.table).await? {
        KeyOrder::Same => Ok(()),
        KeyOrder::Differs(why) => Err(CoordinatorError::precondition(
            "job_id",
            Reason::NoKeyInTarget,
            format!(
                "repair deletes a chunk's key range in the target and copies it again, but {why}, so such a range holds rows of other chunks there. Give the target column a collation that sorts as the source's (ALTER TABLE … ALTER COLUMN … TYPE … COLLATE …), or submit the job again with --mode truncate or --mode replace"
            ),
        )),
    }
}

/// The rows a job's target refused, by chunk, and their total.
pub async fn list_rejects(
    conns: &ConnectionRegistry,
    ledger_schema: &str,
    job: &JobRecord,
    limit: u32,
) -> Result<(Vec<Reject>, u64), CoordinatorError> {
    let spec = job.spec.clone().unwrap_or_default();
    let mut target = open(conns, "spec.target", &spec.target, &job.job_id).await?;
    let limit = if limit == 0 { 1000 } else { limit };
    let (rows, total) = db_target::list_rejects(&mut target, ledger_schema, &job.job_id, limit)
        .await
        .map_err(|f| CoordinatorError::Database(f.message))?;
    let rejects = rows
        .into_iter()
        .map(|r| Reject {
            chunk_no: r.chunk_no,
            key: r.key,
            row: r.row,
            sqlstate: r.sqlstate,
            message: r.message,
        })
        .collect();
    Ok((rejects, total))
}

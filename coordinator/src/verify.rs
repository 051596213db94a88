//! `ferry verify` and `ferry rejects`: compare each chunk's rows in source and
//! target by count and an order-independent hash, and list refused rows. The
//! connector computes the digests from the job's typed plan.

use ferry_common::connections::ConnectionRegistry;
use ferry_common::proto::{ChunkBounds, ChunkCheck, ChunkRecord, JobRecord, Reject};
use ferry_connectors::postgres::select::ChunkSelect;
use ferry_connectors::postgres::{rejects, session, verify as digests};
use tokio_postgres::Client;

use crate::error::CoordinatorError;

fn invalid(m: impl Into<String>) -> CoordinatorError {
    CoordinatorError::InvalidArgument(m.into())
}

async fn open(
    conns: &ConnectionRegistry,
    name: &str,
    job_id: &str,
) -> Result<Client, CoordinatorError> {
    let url = conns.url(name).map_err(|e| invalid(e.to_string()))?;
    let client = session::open(name, url)
        .await
        .map_err(|f| CoordinatorError::Database(f.message))?;
    session::tag(&client, &format!("ferry:verify:{job_id}"))
        .await
        .map_err(|f| CoordinatorError::Database(f.message))?;
    Ok(client)
}

/// Whether the job's key lands in the target, so chunks can be compared
/// range by range there.
pub fn key_copied(job: &JobRecord) -> bool {
    !job.key.is_empty() && job.key.iter().all(|k| !k.target.is_empty())
}

/// Compares every chunk of `job`.
pub async fn verify(
    conns: &ConnectionRegistry,
    job: &JobRecord,
    chunks: &[ChunkRecord],
) -> Result<Vec<ChunkCheck>, CoordinatorError> {
    let spec = job.spec.clone().unwrap_or_default();
    let (Some(target_table), false) = (job.target.as_ref(), job.columns.is_empty()) else {
        return Err(invalid("the job was never planned: nothing to verify"));
    };
    if !key_copied(job) && chunks.len() > 1 {
        return Err(invalid(
            "verify compares key ranges, but the key column is not copied into the target: add it to the query and the target",
        ));
    }
    let table = job.load.as_ref().unwrap_or(target_table);
    let source = open(conns, &spec.source, &job.job_id).await?;
    let target = open(conns, &spec.target, &job.job_id).await?;
    let query = spec.query.trim().trim_end_matches(';').trim();
    let mut out = Vec::with_capacity(chunks.len());
    for c in chunks {
        let bounds = c.bounds.clone().unwrap_or_else(ChunkBounds::all);
        let select = ChunkSelect {
            query,
            columns: &job.columns,
            key: &job.key,
            bounds: &bounds,
        };
        let (s, d) = tokio::join!(
            digests::source_digest(&source, &select),
            digests::target_digest(&target, table, &job.columns, &job.key, &bounds)
        );
        let s = s.map_err(|f| CoordinatorError::Database(f.message))?;
        let d = d.map_err(|f| CoordinatorError::Database(f.message))?;
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

/// The rows a job's target refused, by chunk, and their total.
pub async fn list_rejects(
    conns: &ConnectionRegistry,
    ledger_schema: &str,
    job: &JobRecord,
    limit: u32,
) -> Result<(Vec<Reject>, u64), CoordinatorError> {
    let spec = job.spec.clone().unwrap_or_default();
    let target = open(conns, &spec.target, &job.job_id).await?;
    let limit = if limit == 0 { 1000 } else { limit };
    let (rows, total) = rejects::list(&target, ledger_schema, &job.job_id, limit)
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

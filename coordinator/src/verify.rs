//! `ferry verify` and `ferry rejects`: compare each chunk's rows in source and
//! target by count and an order-independent hash, and list refused rows.

use ferry_common::connections::ConnectionRegistry;
use ferry_common::db::connect;
use ferry_common::errors::classify_pg;
use ferry_common::proto::{ChunkCheck, ChunkRecord, JobRecord, Reject};
use ferry_common::sql::quote_ident;

use crate::error::{CoordinatorError, Reason};
use crate::planner::{compose, KEY};

fn unknown_connection(field: &str, e: impl ToString) -> CoordinatorError {
    CoordinatorError::precondition(field, Reason::UnknownConnection, e.to_string())
}

fn db(context: &str, e: &tokio_postgres::Error) -> CoordinatorError {
    CoordinatorError::Database(format!("{context}: {}", classify_pg(e).message))
}

/// Count and hash of rows, the same on both sides for the same rows.
async fn digest(
    client: &tokio_postgres::Client,
    select: &str,
) -> Result<(u64, String), tokio_postgres::Error> {
    let row = client
        .query_one(
            &format!("SELECT count(*)::int8, coalesce(sum(hashtext(v::text)::int8), 0)::text FROM ({select}) AS v"),
            &[],
        )
        .await?;
    Ok((row.get::<_, i64>(0).max(0) as u64, row.get(1)))
}

/// Compares every chunk of `job`.
pub async fn verify(
    conns: &ConnectionRegistry,
    job: &JobRecord,
    chunks: &[ChunkRecord],
) -> Result<Vec<ChunkCheck>, CoordinatorError> {
    let spec = job.spec.clone().unwrap_or_default();
    if job.select_verify.is_empty() {
        return Err(CoordinatorError::precondition(
            "job_id",
            Reason::NotPlanned,
            "the job was never planned: nothing to verify",
        ));
    }
    if job.key_target.is_empty() && chunks.len() > 1 {
        return Err(CoordinatorError::precondition(
            "job_id",
            Reason::NoKeyInTarget,
            "verify compares key ranges, but the key column is not copied into the target: add it to the query and the target",
        ));
    }
    let source_url = conns
        .url(&spec.source)
        .map_err(|e| unknown_connection("spec.source", e))?;
    let target_url = conns
        .url(&spec.target)
        .map_err(|e| unknown_connection("spec.target", e))?;
    let source = connect(&spec.source, source_url)
        .await
        .map_err(|f| CoordinatorError::Database(f.message))?;
    let target = connect(&spec.target, target_url)
        .await
        .map_err(|f| CoordinatorError::Database(f.message))?;
    let target_select = format!(
        "SELECT {} FROM {}",
        job.target_columns.join(", "),
        job.load_table
    );
    let mut out = Vec::with_capacity(chunks.len());
    for c in chunks {
        let src_sql = compose(&job.select_verify, &c.predicate, &job.key_source);
        let dst_sql = if c.predicate.is_empty() {
            target_select.clone()
        } else {
            format!(
                "{target_select} WHERE {}",
                c.predicate.replace(KEY, &job.key_target)
            )
        };
        let (s, d) = tokio::join!(digest(&source, &src_sql), digest(&target, &dst_sql));
        let (src_rows, src_hash) = s.map_err(|e| db("cannot read the source", &e))?;
        let (dst_rows, dst_hash) = d.map_err(|e| db("cannot read the target", &e))?;
        let matches = if c.rows_rejected > 0 {
            dst_rows + c.rows_rejected == src_rows
        } else {
            src_rows == dst_rows && src_hash == dst_hash
        };
        out.push(ChunkCheck {
            chunk_no: c.chunk_no,
            range: c.range.clone(),
            source_rows: src_rows,
            target_rows: dst_rows,
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
    let url = conns
        .url(&spec.target)
        .map_err(|e| unknown_connection("spec.target", e))?;
    let target = connect(&spec.target, url)
        .await
        .map_err(|f| CoordinatorError::Database(f.message))?;
    let table = format!("{}.rejects", quote_ident(ledger_schema));
    let limit = if limit == 0 { 1000 } else { limit } as i64;
    let rows = target
        .query(
            &format!(
                "SELECT chunk_no, coalesce(key, ''), row_text, sqlstate, message FROM {table}
                  WHERE job_id = $1 ORDER BY chunk_no, id LIMIT $2"
            ),
            &[&job.job_id, &limit],
        )
        .await
        .map_err(|e| db("cannot read the rejects table", &e))?;
    let total: i64 = target
        .query_one(
            &format!("SELECT count(*) FROM {table} WHERE job_id = $1"),
            &[&job.job_id],
        )
        .await
        .map_err(|e| db("cannot count rejects", &e))?
        .get(0);
    let rejects = rows
        .into_iter()
        .map(|r| Reject {
            chunk_no: r.get::<_, i32>(0) as u32,
            key: r.get(1),
            row: r.get(2),
            sqlstate: r.get(3),
            message: r.get(4),
        })
        .collect();
    Ok((rejects, total.max(0) as u64))
}

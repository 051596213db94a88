//! The chunk executor (the guide's ChunkProcessor): streams binary COPY out of
//! the source straight into binary COPY into the target, in bounded buffers,
//! inside the transaction that claimed the chunk's ledger row.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use ferry_common::errors::{classify_pg, DbFailure, ErrorClass};
use ferry_common::proto::{ChunkAssignment, WriteMode};
use futures::{FutureExt, SinkExt, StreamExt};
use tokio_postgres::Client;

use crate::fault::Faults;
use crate::held::ChunkHandle;
use crate::ledger::{self, Claim};
use crate::pool::Pool;
use crate::rejects;
use crate::rowcount::TupleCounter;
use crate::session::Session;

/// Bytes gathered before one send to the target; memory per chunk in flight
/// is bounded by this, not by the chunk's row count.
pub const SEND_BUFFER: usize = 256 * 1024;

/// How a chunk attempt ended.
#[derive(Debug)]
pub enum Outcome {
    /// Committed now.
    Committed {
        /// Rows landed.
        rows_written: u64,
        /// Rows rejected.
        rows_rejected: u64,
    },
    /// An earlier attempt had committed it; nothing was copied.
    AlreadyCommitted {
        /// Rows it landed.
        rows_written: u64,
        /// Rows it rejected.
        rows_rejected: u64,
    },
    /// Rolled back after a database failure.
    Failed(DbFailure),
    /// Rolled back on request (cancel, lost lease).
    Aborted(String),
}

/// What a chunk attempt needs besides its assignment.
pub struct ChunkContext {
    /// Connections.
    pub pool: Pool,
    /// The registration: worker id, held chunks, the fence, the coordinator.
    pub session: Arc<Session>,
    /// Fault points.
    pub faults: Faults,
}

enum Stop {
    Db(DbFailure),
    Abort(String),
}

impl From<DbFailure> for Stop {
    fn from(f: DbFailure) -> Self {
        Stop::Db(f)
    }
}

fn pg(e: tokio_postgres::Error) -> Stop {
    Stop::Db(classify_pg(&e))
}

/// Runs one chunk attempt to its end.
pub async fn process(ctx: &ChunkContext, a: &ChunkAssignment, handle: &ChunkHandle) -> Outcome {
    let target = match ctx.pool.get(&a.target).await {
        Ok(c) => c,
        Err(f) => return Outcome::Failed(f),
    };
    let worker_id = ctx.session.id();
    match ledger::claim(&target, a, &worker_id).await {
        Ok(Claim::Claimed) => {}
        Ok(Claim::AlreadyCommitted {
            rows_written,
            rows_rejected,
        }) => {
            ctx.pool.put(&a.target, target);
            return Outcome::AlreadyCommitted {
                rows_written,
                rows_rejected,
            };
        }
        Err(f) => return Outcome::Failed(f),
    }
    let source = match ctx.pool.get(&a.source).await {
        Ok(c) => c,
        Err(f) => return Outcome::Failed(f),
    };
    let result = match source_scan(&source, a, true).await {
        Ok(()) => stream_chunk(ctx, a, handle, &source, &target).await,
        Err(stop) => Err(stop),
    };
    match result {
        Ok((rows_written, rows_rejected)) => {
            ctx.faults.after_commit();
            // The chunk is committed: a source that cannot take the RESET is
            // dropped rather than pooled with the setting still on.
            if source_scan(&source, a, false).await.is_ok() {
                ctx.pool.put(&a.source, source);
            }
            ctx.pool.put(&a.target, target);
            Outcome::Committed {
                rows_written,
                rows_rejected,
            }
        }
        Err(stop) => {
            // Dropping the connections ends their sessions, which rolls the
            // transaction back even where a ROLLBACK could not be sent.
            drop(source);
            drop(target);
            match stop {
                Stop::Db(f) => Outcome::Failed(f),
                Stop::Abort(why) => Outcome::Aborted(why),
            }
        }
    }
}

/// Turns index scans off on the source session for a chunk the planner marked
/// for a bitmap heap scan (`on`), and back to the session default after it.
async fn source_scan(source: &Client, a: &ChunkAssignment, on: bool) -> Result<(), Stop> {
    if !a.source_bitmap_scan {
        return Ok(());
    }
    let sql = if on {
        "SET enable_indexscan = off"
    } else {
        "RESET enable_indexscan"
    };
    source.batch_execute(sql).await.map_err(pg)
}

fn check_fence(ctx: &ChunkContext, handle: &ChunkHandle) -> Result<(), Stop> {
    if handle.cancel.is_cancelled() {
        return Err(Stop::Abort(
            "the coordinator asked to stop (job cancelled or chunk leased again)".into(),
        ));
    }
    if !ctx.session.held.lease_valid(Instant::now()) {
        return Err(Stop::Abort(
            "no heartbeat acknowledged within the lease time: self-fenced".into(),
        ));
    }
    Ok(())
}

/// The temporary table an upsert chunk loads before merging.
const STAGE: &str = "pg_temp.ferry_stage";

async fn exec(target: &Client, sql: &str) -> Result<(), Stop> {
    target.batch_execute(sql).await.map_err(pg)
}

/// Inside the claimed transaction: (repair) delete the range, copy fast, fall
/// back to the row-isolating path on a data error, merge (upsert), record
/// rejects and counts, and commit unless the coordinator says stop.
async fn stream_chunk(
    ctx: &ChunkContext,
    a: &ChunkAssignment,
    handle: &ChunkHandle,
    source: &Client,
    target: &Client,
) -> Result<(u64, u64), Stop> {
    if !a.repair_delete.is_empty() {
        exec(
            target,
            &format!("DELETE FROM {} WHERE {}", a.target_table, a.repair_delete),
        )
        .await?;
    }
    let upsert = a.mode == WriteMode::Upsert as i32;
    let load_into = if upsert {
        exec(
            target,
            &format!(
                "CREATE TEMP TABLE ferry_stage (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP",
                a.target_table
            ),
        )
        .await?;
        STAGE.to_string()
    } else {
        a.target_table.clone()
    };
    exec(target, "SAVEPOINT ferry_chunk").await?;
    let (copied, rejected) = match fast_copy(ctx, a, handle, source, target, &load_into).await {
        Ok(n) => (n, Vec::new()),
        Err(Stop::Db(f)) if f.class == ErrorClass::Data => {
            exec(target, "ROLLBACK TO SAVEPOINT ferry_chunk").await?;
            let r = a.chunk.as_ref();
            tracing::info!(
                job = r.map(|c| c.job_id.as_str()).unwrap_or(""),
                chunk = r.map(|c| c.chunk_no).unwrap_or(0),
                error = %f.message,
                "data error in chunk: isolating the rows the target refuses"
            );
            let slow = rejects::copy_isolating(source, target, a, &load_into).await?;
            (slow.written, slow.rejected)
        }
        Err(e) => return Err(e),
    };
    let written = if upsert {
        merge(target, a).await?
    } else {
        copied
    };
    rejects::record(target, a, &rejected).await?;
    let rejected = rejected.len() as u64;
    handle.rows.store(written + rejected, Ordering::Relaxed);
    ledger::record_counts(target, a, written, rejected).await?;
    check_fence(ctx, handle)?;
    if !ctx.session.still_holds(&handle.chunk, written).await {
        return Err(Stop::Abort(
            "the coordinator asked to stop before the commit (job cancelled or chunk leased again)"
                .into(),
        ));
    }
    exec(target, "COMMIT").await?;
    Ok((written, rejected))
}

/// Merges the staged rows into the target: insert, or update on the upsert key.
async fn merge(target: &Client, a: &ChunkAssignment) -> Result<u64, Stop> {
    let cols = a.target_columns.join(", ");
    let keys = a.upsert_keys.join(", ");
    let updates: Vec<String> = a
        .target_columns
        .iter()
        .filter(|c| !a.upsert_keys.contains(c))
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    let action = if updates.is_empty() {
        "DO NOTHING".to_string()
    } else {
        format!("DO UPDATE SET {}", updates.join(", "))
    };
    let sql = format!(
        "INSERT INTO {} ({cols}) SELECT {cols} FROM {STAGE} ON CONFLICT ({keys}) {action}",
        a.target_table
    );
    target.execute(sql.as_str(), &[]).await.map_err(pg)
}

/// The fast path: binary COPY out of the source straight into binary COPY
/// into `table`, in bounded buffers.
async fn fast_copy(
    ctx: &ChunkContext,
    a: &ChunkAssignment,
    handle: &ChunkHandle,
    source: &Client,
    target: &Client,
    table: &str,
) -> Result<u64, Stop> {
    let copy_in = format!(
        "COPY {table} ({}) FROM STDIN (FORMAT binary)",
        a.target_columns.join(", ")
    );
    let copy_out = format!("COPY ({}) TO STDOUT (FORMAT binary)", a.source_select);
    let sink = target
        .copy_in::<_, Bytes>(copy_in.as_str())
        .await
        .map_err(pg)?;
    futures::pin_mut!(sink);
    let stream = source.copy_out(copy_out.as_str()).await.map_err(pg)?;
    futures::pin_mut!(stream);

    let mut counter = TupleCounter::new();
    let mut buf = BytesMut::with_capacity(SEND_BUFFER + 64 * 1024);
    loop {
        // Rows the source already sent are taken without arming the cancel
        // future (a row is one message: this loop runs once per row); only
        // when the source has nothing ready does the wait also watch cancel.
        let next = match stream.next().now_or_never() {
            Some(n) => Some(n),
            None => tokio::select! {
                biased;
                _ = handle.cancel.cancelled() => None,
                n = stream.next() => Some(n),
            },
        };
        let Some(next) = next else {
            return Err(Stop::Abort(
                "the coordinator asked to stop (job cancelled or chunk leased again)".into(),
            ));
        };
        match next {
            Some(Ok(bytes)) => {
                counter.feed(&bytes);
                buf.extend_from_slice(&bytes);
                if buf.len() >= SEND_BUFFER {
                    check_fence(ctx, handle)?;
                    handle.rows.store(counter.rows(), Ordering::Relaxed);
                    sink.send(buf.split().freeze()).await.map_err(pg)?;
                }
            }
            Some(Err(e)) => return Err(pg(e)),
            None => break,
        }
    }
    if !buf.is_empty() {
        sink.send(buf.split().freeze()).await.map_err(pg)?;
    }
    let rows = sink.as_mut().finish().await.map_err(pg)?;
    handle.rows.store(rows, Ordering::Relaxed);
    if rows != counter.rows() {
        return Err(Stop::Db(DbFailure {
            class: ErrorClass::Transient,
            sqlstate: None,
            message: format!(
                "target took {rows} rows but the source sent {}",
                counter.rows()
            ),
        }));
    }
    Ok(rows)
}

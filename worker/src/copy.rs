//! The chunk executor (the guide's ChunkProcessor): claims the chunk's ledger
//! row in the target, reads the chunk from the source in a read-only
//! transaction, streams it into the target, isolates refused rows, and
//! commits unless the coordinator says stop. Every statement comes from the
//! connector, built from the chunk's typed assignment.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use ferry_common::db::DbRole;
use ferry_common::errors::{DbFailure, ErrorClass};
use ferry_common::proto::{ChunkAssignment, ChunkBounds, ChunkRef, TableRef, WriteMode};
use ferry_connectors::db::Conn;
use ferry_connectors::postgres::copy::{
    begin_read, end_read, pass_through, rewind_read, CopyControl, CopyStop,
};
use ferry_connectors::postgres::ledger::{Attempt, Claim};
use ferry_connectors::postgres::select::ChunkSelect;
use ferry_connectors::postgres::session::exec;
use ferry_connectors::postgres::snapshot::SnapshotId;
use ferry_connectors::postgres::{modes, rejects};
use ferry_connectors::reject_key::KeyFields;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use crate::fault::Faults;
use crate::held::ChunkHandle;
use crate::pool::Pool;
use crate::session::Session;

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
    /// Fired when the worker stops: a report then asks for no next chunk.
    pub shutdown: CancellationToken,
}

/// The parts of an assignment every attempt needs, checked once.
pub(crate) struct Chunk<'a> {
    /// The chunk's id.
    pub r: &'a ChunkRef,
    /// The table rows land in.
    pub table: &'a TableRef,
    /// Its rows.
    pub bounds: ChunkBounds,
    /// The target columns, in row order.
    pub columns: Vec<&'a str>,
    /// The job's source snapshot to read in (None: the chunk's own).
    pub snapshot: Option<SnapshotId>,
}

impl<'a> Chunk<'a> {
    /// Checks an assignment has what every attempt needs.
    pub fn of(a: &'a ChunkAssignment) -> Result<Self, DbFailure> {
        let incomplete = |what: &str| {
            DbFailure::permanent(format!(
                "the coordinator sent a chunk without {what}: the coordinator and this worker are of different versions"
            ))
        };
        let r = a.chunk.as_ref().ok_or_else(|| incomplete("its id"))?;
        let table = a
            .table
            .as_ref()
            .ok_or_else(|| incomplete("a target table"))?;
        if a.columns.is_empty() || a.query.is_empty() {
            return Err(incomplete("its query and columns"));
        }
        let snapshot = match a.snapshot.as_str() {
            "" => None,
            id => Some(SnapshotId::parse(id).map_err(|e| {
                DbFailure::permanent(format!("the coordinator sent a bad source snapshot: {e}"))
            })?),
        };
        Ok(Self {
            snapshot,
            r,
            table,
            bounds: a.bounds.clone().unwrap_or_else(ChunkBounds::all),
            columns: a.columns.iter().map(|c| c.target.as_str()).collect(),
        })
    }

    /// The ledger attempt this assignment is.
    pub fn attempt(&self, a: &'a ChunkAssignment, worker: &'a str) -> Attempt<'a> {
        Attempt {
            ledger_schema: &a.ledger_schema,
            job_id: &self.r.job_id,
            chunk_no: self.r.chunk_no,
            attempt: a.attempt,
            token: self.r.fencing_token,
            worker,
            repair: a.repair,
        }
    }

    fn select(&self, a: &'a ChunkAssignment) -> ChunkSelect<'_> {
        ChunkSelect {
            query: &a.query,
            columns: &a.columns,
            key: &a.key,
            bounds: &self.bounds,
        }
    }
}

/// The fence and progress of one attempt, as the copy sees them.
struct Control<'a> {
    ctx: &'a ChunkContext,
    handle: &'a ChunkHandle,
}

impl CopyControl for Control<'_> {
    fn check(&self) -> Result<(), String> {
        check_fence(self.ctx, self.handle)
    }

    fn cancel(&self) -> &CancellationToken {
        &self.handle.cancel
    }

    fn progress(&self, rows: u64) {
        self.handle.rows.store(rows, Ordering::Relaxed);
        self.ctx.faults.mid_copy(&self.handle.chunk);
    }

    fn sent(&self, bytes: usize) {
        self.handle.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// Whether the attempt may go on: not cancelled, lease not expired.
pub(crate) fn check_fence(ctx: &ChunkContext, handle: &ChunkHandle) -> Result<(), String> {
    if handle.cancel.is_cancelled() {
        return Err("the coordinator asked to stop (job cancelled or chunk leased again)".into());
    }
    if !ctx.session.held.lease_valid(Instant::now()) {
        crate::metrics::metrics().self_fenced.add(1, &[]);
        return Err("no heartbeat acknowledged within the lease time: self-fenced".into());
    }
    Ok(())
}

/// Runs one chunk attempt to its end: rows of PostgreSQL → PostgreSQL plans
/// pass through as binary COPY, every other pair as typed values.
pub async fn process(ctx: &ChunkContext, a: &ChunkAssignment, handle: &ChunkHandle) -> Outcome {
    let chunk = match Chunk::of(a) {
        Ok(c) => c,
        Err(f) => return Outcome::Failed(f),
    };
    if crate::typed::is_typed(a) {
        return crate::typed::process(ctx, a, &chunk, handle).await;
    }
    let worker_id = ctx.session.id();
    let attempt = chunk.attempt(a, &worker_id);
    // Source and target are readied at once: the claim of the ledger row in
    // the target beside the read transaction in the source, each one
    // pipelined round trip.
    let (target, source) = futures::join!(
        ctx.pool.get(&a.target, DbRole::Target),
        ctx.pool.get(&a.source, DbRole::Source)
    );
    let target = match target {
        Ok(Conn::Postgres(c)) => c,
        Ok(other) => return Outcome::Failed(not_postgres(&a.target, &other)),
        Err(f) => return Outcome::Failed(f),
    };
    let source = match source {
        Ok(Conn::Postgres(c)) => c,
        Ok(other) => return Outcome::Failed(not_postgres(&a.source, &other)),
        Err(f) => return Outcome::Failed(f),
    };
    let select = chunk.select(a);
    let (claim, read) = futures::join!(
        attempt.claim(&target),
        begin_read(
            &source,
            &select,
            a.source_bitmap_scan,
            chunk.snapshot.as_ref(),
        )
    );
    match claim {
        Ok(Claim::Claimed) => {}
        Ok(Claim::AlreadyCommitted {
            rows_written,
            rows_rejected,
        }) => {
            ctx.pool
                .put(&a.target, DbRole::Target, Conn::Postgres(target));
            if read.is_ok() && end_read(&source).await.is_ok() {
                ctx.pool
                    .put(&a.source, DbRole::Source, Conn::Postgres(source));
            }
            return Outcome::AlreadyCommitted {
                rows_written,
                rows_rejected,
            };
        }
        // dropping the connections ends their sessions and transactions
        Err(f) => return Outcome::Failed(f),
    }
    let result = match read {
        Ok(()) => stream_chunk(ctx, a, &chunk, &attempt, handle, &source, &target).await,
        Err(f) => Err(CopyStop::Db(f)),
    };
    // The target commits; the source's read transaction ends beside it.
    let result = match result {
        Ok(counts) => {
            let (committed, ended) = futures::join!(exec(&target, "COMMIT"), end_read(&source));
            committed
                .map(|()| (counts, ended.is_ok()))
                .map_err(CopyStop::Db)
        }
        Err(stop) => Err(stop),
    };
    match result {
        Ok(((rows_written, rows_rejected), source_ended)) => {
            ctx.faults.after_commit();
            // The chunk is committed: a source that cannot end its read
            // transaction is dropped rather than pooled.
            if source_ended {
                ctx.pool
                    .put(&a.source, DbRole::Source, Conn::Postgres(source));
            }
            ctx.pool
                .put(&a.target, DbRole::Target, Conn::Postgres(target));
            Outcome::Committed {
                rows_written,
                rows_rejected,
            }
        }
        Err(stop) => {
            // Dropping the connections ends their sessions, which rolls the
            // transactions back even where a ROLLBACK could not be sent.
            drop(source);
            drop(target);
            stop.into()
        }
    }
}

impl From<CopyStop> for Outcome {
    fn from(stop: CopyStop) -> Self {
        match stop {
            CopyStop::Db(f) => Outcome::Failed(f),
            CopyStop::Abort(why) => Outcome::Aborted(why),
        }
    }
}

/// A plan for PostgreSQL rows met another database under the same name: the
/// connection changed between planning and this attempt.
fn not_postgres(name: &str, conn: &Conn) -> DbFailure {
    DbFailure::permanent(format!(
        "connection '{name}' is {} here but the job was planned for PostgreSQL: give the coordinator and every worker the same connections, then `ferry resume` the job",
        conn.kind().name()
    ))
}

/// Inside the claimed transaction: (repair) delete the range, copy fast, fall
/// back to the row-isolating path on a data error, merge (upsert), record
/// rejects and counts; the caller commits (Ok) unless the coordinator said stop.
async fn stream_chunk(
    ctx: &ChunkContext,
    a: &ChunkAssignment,
    chunk: &Chunk<'_>,
    attempt: &Attempt<'_>,
    handle: &ChunkHandle,
    source: &Client,
    target: &Client,
) -> Result<(u64, u64), CopyStop> {
    if a.repair {
        modes::delete_range(target, chunk.table, &a.key, &chunk.bounds).await?;
        rejects::forget(target, &a.ledger_schema, &chunk.r.job_id, chunk.r.chunk_no).await?;
    }
    let upsert = a.mode == WriteMode::Upsert as i32;
    let load_into = if upsert {
        modes::create_stage(target, chunk.table).await?;
        modes::stage_table()
    } else {
        chunk.table.clone()
    };
    let select = chunk.select(a);
    let control = Control { ctx, handle };
    exec(target, "SAVEPOINT ferry_chunk").await?;
    let (copied, rejected) = match pass_through(
        source,
        target,
        &select,
        &load_into,
        &chunk.columns,
        &control,
    )
    .await
    {
        Ok(n) => (n, Vec::new()),
        Err(CopyStop::Db(f)) if f.class == ErrorClass::Data => {
            exec(target, "ROLLBACK TO SAVEPOINT ferry_chunk").await?;
            rewind_read(source).await?;
            tracing::info!(
                job = %chunk.r.job_id,
                chunk = chunk.r.chunk_no,
                error = %f.message,
                "data error in chunk: isolating the rows the target refuses"
            );
            let key = KeyFields::of(&a.key);
            let slow =
                rejects::isolate(source, target, &select, &load_into, &chunk.columns, &key).await?;
            (slow.written, slow.rejected)
        }
        Err(e) => return Err(e),
    };
    let written = if upsert {
        modes::merge_stage(target, chunk.table, &chunk.columns, &a.upsert_key).await?
    } else {
        copied
    };
    rejects::record(
        target,
        &a.ledger_schema,
        &chunk.r.job_id,
        chunk.r.chunk_no,
        &rejected,
    )
    .await?;
    let rejected = rejected.len() as u64;
    handle.rows.store(written + rejected, Ordering::Relaxed);
    check_fence(ctx, handle).map_err(CopyStop::Abort)?;
    // the counts are written while the coordinator is asked whether the
    // attempt still holds its chunk; the caller commits only after both
    let (counts, holds) = futures::join!(
        attempt.record_counts(target, written, rejected),
        ctx.session.still_holds(&handle.chunk, written)
    );
    counts?;
    if !holds {
        return Err(CopyStop::Abort(
            "the coordinator asked to stop before the commit (job cancelled or chunk leased again)"
                .into(),
        ));
    }
    check_fence(ctx, handle).map_err(CopyStop::Abort)?;
    Ok((written, rejected))
}

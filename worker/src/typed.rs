//! The chunk executor for rows that cross database kinds (MySQL, SQLite, or
//! PostgreSQL paired with one of them): the source's rows are read as typed
//! values in bounded batches by one task while this one converts each batch
//! to the target columns' types and writes it under a savepoint, isolating
//! refused rows. Claim, repair, rejects, counts and the commit are the same
//! steps as the PostgreSQL path, in the target's one transaction.

use std::sync::atomic::Ordering;

use ferry_common::db::DbRole;
use ferry_common::errors::DbFailure;
use ferry_common::proto::{ChunkAssignment, WriteMode};
use ferry_connectors::coltype;
use ferry_connectors::db::chunk::{self as db_chunk, Attempt, Claim};
use ferry_connectors::db::read::{read_chunk, ChunkRead};
use ferry_connectors::db::target as db_target;
use ferry_connectors::db::write::{TableWrite, Writer};
use ferry_connectors::db::Conn;
use ferry_connectors::isolate::{self, Isolated};
use ferry_connectors::postgres::copy::CopyStop;
use ferry_connectors::reject_key::KeyFields;
use ferry_connectors::rows;
use ferry_connectors::types::FerryType;

use crate::copy::{check_fence, Chunk, ChunkContext, Outcome};
use crate::held::ChunkHandle;

/// Whether the plan carries rows as typed values (every column has its
/// source and target types); PostgreSQL → PostgreSQL plans do not.
pub fn is_typed(a: &ChunkAssignment) -> bool {
    !a.columns.is_empty()
        && a.columns
            .iter()
            .all(|c| c.source_type.is_some() && c.target_type.is_some())
}

/// The source and target types of every column, in order.
struct Types {
    source: Vec<FerryType>,
    target: Vec<FerryType>,
    target_db: Vec<String>,
}

impl Types {
    fn of(a: &ChunkAssignment) -> Result<Self, DbFailure> {
        let unknown = |column: &str| {
            DbFailure::permanent(format!(
                "the coordinator sent column '{column}' with a type this worker does not know: the coordinator is newer than this worker; upgrade the workers"
            ))
        };
        let mut t = Types {
            source: Vec::with_capacity(a.columns.len()),
            target: Vec::with_capacity(a.columns.len()),
            target_db: Vec::with_capacity(a.columns.len()),
        };
        for c in &a.columns {
            let s = c.source_type.as_ref().and_then(coltype::from_proto);
            let d = c.target_type.as_ref().and_then(coltype::from_proto);
            let (Some(s), Some(d)) = (s, d) else {
                return Err(unknown(&c.source));
            };
            t.source.push(s);
            t.target.push(d);
            t.target_db.push(c.target_db_type.clone());
        }
        Ok(t)
    }
}

/// Runs one typed chunk attempt to its end.
pub(crate) async fn process(
    ctx: &ChunkContext,
    a: &ChunkAssignment,
    chunk: &Chunk<'_>,
    handle: &ChunkHandle,
) -> Outcome {
    let types = match Types::of(a) {
        Ok(t) => t,
        Err(f) => return Outcome::Failed(f),
    };
    let worker_id = ctx.session.id();
    let attempt = chunk.attempt(a, &worker_id);
    let mut target = match ctx.pool.get(&a.target, DbRole::Target).await {
        Ok(c) => c,
        Err(f) => return Outcome::Failed(f),
    };
    match db_chunk::claim(&mut target, &attempt).await {
        Ok(Claim::Claimed) => {}
        Ok(Claim::AlreadyCommitted {
            rows_written,
            rows_rejected,
        }) => {
            ctx.pool.put(&a.target, DbRole::Target, target);
            return Outcome::AlreadyCommitted {
                rows_written,
                rows_rejected,
            };
        }
        Err(f) => return Outcome::Failed(f),
    }
    let mut source = match ctx.pool.get(&a.source, DbRole::Source).await {
        Ok(c) => c,
        Err(f) => return Outcome::Failed(f),
    };
    let result = stream_chunk(
        ctx,
        a,
        chunk,
        &attempt,
        &types,
        handle,
        &mut source,
        &mut target,
    )
    .await;
    match result {
        Ok((rows_written, rows_rejected)) => {
            ctx.faults.after_commit();
            ctx.pool.put(&a.source, DbRole::Source, source);
            ctx.pool.put(&a.target, DbRole::Target, target);
            Outcome::Committed {
                rows_written,
                rows_rejected,
            }
        }
        // Dropping the connections ends their sessions, which rolls the
        // transactions back even where a ROLLBACK could not be sent.
        Err(stop) => stop.into(),
    }
}

/// Inside the claimed transaction: (repair) delete the range, stream the
/// source's batches through conversion and isolation into the target,
/// merge (PostgreSQL upsert), record rejects and counts, and commit unless
/// the coordinator says stop.
#[allow(clippy::too_many_arguments)]
async fn stream_chunk(
    ctx: &ChunkContext,
    a: &ChunkAssignment,
    chunk: &Chunk<'_>,
    attempt: &Attempt<'_>,
    types: &Types,
    handle: &ChunkHandle,
    source: &mut Conn,
    target: &mut Conn,
) -> Result<(u64, u64), CopyStop> {
    if a.repair {
        db_chunk::delete_range(target, chunk.table, &a.key, &chunk.bounds).await?;
        db_chunk::forget_rejects(target, attempt).await?;
    }
    let upsert = a.mode == WriteMode::Upsert as i32;
    let postgres_target = target.postgres().is_some();
    let load_into = if upsert && postgres_target {
        db_target::create_stage(target, chunk.table).await?
    } else {
        chunk.table.clone()
    };
    // MySQL and SQLite upsert in the insert itself; PostgreSQL merges its stage.
    let insert_upsert: &[String] = if upsert && !postgres_target {
        &a.upsert_key
    } else {
        &[]
    };
    let key = KeyFields::of(&a.key);
    let read = ChunkRead {
        query: &a.query,
        columns: &a.columns,
        key: &a.key,
        bounds: &chunk.bounds,
        types: &types.source,
        bitmap_scan: a.source_bitmap_scan,
        snapshot: chunk.snapshot.as_ref(),
    };
    let (tx, rx) = rows::channel();
    let reading = read_chunk(source, &read, tx);
    let writing = async {
        // owned here, so a writer that stops closes the channel and the reader stops too
        let mut rx = rx;
        let w = TableWrite {
            table: &load_into,
            columns: &chunk.columns,
            base_types: &types.target_db,
            upsert_key: insert_upsert,
        };
        let mut writer = Writer::new(&mut *target, &w).await?;
        let mut out = Isolated::default();
        // PostgreSQL takes several batches in one COPY (see POSTGRES_WRITE_ROWS)
        let (most_rows, most_bytes) = if postgres_target {
            (rows::POSTGRES_WRITE_ROWS, rows::POSTGRES_WRITE_BYTES)
        } else {
            (1, 1)
        };
        let mut gathered: Vec<rows::Row> = Vec::new();
        let mut gathered_bytes = 0;
        let mut more = true;
        while more {
            match rx.recv().await {
                Some(batch) => {
                    let batch = batch?;
                    check_fence(ctx, handle).map_err(CopyStop::Abort)?;
                    let mut rows = isolate::convert_rows(batch.rows, &types.target, &key, &mut out);
                    gathered.append(&mut rows);
                    gathered_bytes += batch.bytes;
                    ctx.faults.mid_copy(&handle.chunk);
                }
                None => more = false,
            }
            let full = gathered.len() >= most_rows || gathered_bytes >= most_bytes;
            if gathered.is_empty() || (more && !full) {
                continue;
            }
            isolate::write(&mut writer, &gathered, &key, &mut out).await?;
            gathered.clear();
            handle
                .bytes
                .fetch_add(gathered_bytes as u64, Ordering::Relaxed);
            gathered_bytes = 0;
            handle
                .rows
                .store(out.written + out.rejected.len() as u64, Ordering::Relaxed);
        }
        Ok::<_, CopyStop>(out)
    };
    let (read, written) = tokio::join!(reading, writing);
    // The writer's failure is the cause when both ended: a reader whose
    // channel closed only says so.
    let out = written?;
    read?;
    let written = if upsert && postgres_target {
        db_target::merge_stage(
            target,
            chunk.table,
            &chunk.columns,
            &a.upsert_key,
            out.written,
        )
        .await?
    } else {
        out.written
    };
    db_chunk::record_rejects(target, attempt, &out.rejected).await?;
    let rejected = out.rejected.len() as u64;
    handle.rows.store(written + rejected, Ordering::Relaxed);
    db_chunk::record_counts(target, attempt, written, rejected).await?;
    check_fence(ctx, handle).map_err(CopyStop::Abort)?;
    if !ctx.session.still_holds(&handle.chunk, written).await {
        return Err(CopyStop::Abort(
            "the coordinator asked to stop before the commit (job cancelled or chunk leased again)"
                .into(),
        ));
    }
    db_chunk::commit(target).await?;
    Ok((written, rejected))
}

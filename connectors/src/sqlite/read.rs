//! Reads a chunk from SQLite as values, by each value's storage class
//! (SQLite types values, not columns): integers, reals, text and blobs come
//! as they are stored and are converted to the target's types afterwards.
//! The rows are read on a blocking thread through a read-only handle of
//! Ferry's own on the connection's file (`raw.rs`), in one read
//! transaction (one snapshot of the file).

use std::path::Path;

use ferry_common::errors::DbFailure;
use sqlx::sqlite::{SqliteArguments, SqliteConnection};
use sqlx::Sqlite;

use super::errors::classify;
use super::raw::{self, RawDb};
use super::session::BUSY_TIMEOUT;
use crate::bounds::Bind;
use crate::rows::{BatchSender, Batcher};

/// Binds the chunk's bounds.
pub fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, Sqlite, SqliteArguments>,
    binds: &[Bind],
) -> sqlx::query::Query<'q, Sqlite, SqliteArguments> {
    for b in binds {
        q = match b {
            Bind::Int(i) => q.bind(*i),
            Bind::Text(t) => q.bind(t.clone()),
        };
    }
    q
}

/// Streams the rows of `select` (with `binds`) from the file `conn` has
/// open as batches of values; returns the rows read. A failure is also sent
/// down the channel, so the writer stops.
pub async fn read_chunk(
    conn: &mut SqliteConnection,
    select: &str,
    binds: &[Bind],
    columns: usize,
    tx: BatchSender,
) -> Result<u64, DbFailure> {
    let file = {
        let mut handle = conn.lock_handle().await.map_err(|e| classify(&e))?;
        // SAFETY: the lock keeps sqlx's own thread off the handle meanwhile.
        unsafe { raw::main_file(handle.as_raw_handle()) }
    };
    let Some(file) = file else {
        let f = DbFailure::permanent(
            "an in-memory SQLite database cannot be read as a source: name a file".to_string(),
        );
        let _ = tx.send(Err(f.clone())).await;
        return Err(f);
    };
    let select = select.to_string();
    let binds = binds.to_vec();
    let failed = tx.clone();
    let batcher = Batcher::new(tx);
    let read =
        tokio::task::spawn_blocking(move || read_file(&file, &select, &binds, columns, batcher))
            .await;
    match read {
        Ok(done) => done,
        Err(e) => {
            let f = DbFailure::transient(format!("the SQLite reader thread failed: {e}"));
            let _ = failed.send(Err(f.clone())).await;
            Err(f)
        }
    }
}

/// The blocking part of [`read_chunk`].
fn read_file(
    file: &Path,
    select: &str,
    binds: &[Bind],
    columns: usize,
    mut batcher: Batcher,
) -> Result<u64, DbFailure> {
    let read = (|| {
        let db = RawDb::open_read_only(file, BUSY_TIMEOUT)?;
        db.exec("BEGIN")?;
        let rows = (|| {
            let mut stmt = db.prepare(select)?;
            stmt.bind_all(binds)?;
            while stmt.step()? {
                let mut row = Vec::with_capacity(columns);
                for i in 0..columns {
                    row.push(stmt.value(i)?);
                }
                if !batcher.push_blocking(row) {
                    break;
                }
            }
            Ok::<_, DbFailure>(())
        })();
        let end = db.exec("COMMIT");
        rows.and(end)
    })();
    match read {
        Ok(()) => Ok(batcher.finish_blocking()),
        Err(f) => {
            batcher.fail_blocking(f.clone());
            Err(f)
        }
    }
}

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;

//! Reading one chunk of rows from any database as typed values in bounded
//! batches: PostgreSQL by text COPY in a repeatable-read read-only
//! transaction, MySQL in a consistent-snapshot read-only transaction, SQLite
//! in a read transaction (one snapshot of the file).

use ferry_common::errors::DbFailure;
use ferry_common::proto::{ChunkBounds, ColumnPlan, KeyColumn};

use super::Conn;
use crate::rows::BatchSender;
use crate::types::FerryType;
use crate::{mysql, postgres, sqlite};

/// The rows of one chunk: the query, the columns it reads, the key and the bounds.
#[derive(Debug, Clone, Copy)]
pub struct ChunkRead<'a> {
    /// The user's query (or `SELECT … FROM table` for a target's rows).
    pub query: &'a str,
    /// The columns read, by their `source` names, in order.
    pub columns: &'a [ColumnPlan],
    /// The key columns (by `name`, typed by `type`).
    pub key: &'a [KeyColumn],
    /// The chunk's rows.
    pub bounds: &'a ChunkBounds,
    /// What each column holds (MySQL decodes by it).
    pub types: &'a [FerryType],
    /// PostgreSQL: read with index scans off (the planner's choice).
    pub bitmap_scan: bool,
    /// PostgreSQL: the job's exported snapshot to read in (None: the chunk's own).
    pub snapshot: Option<&'a postgres::snapshot::SnapshotId>,
}

impl ChunkRead<'_> {
    fn names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.source.as_str()).collect()
    }

    fn pg_select(&self) -> postgres::select::ChunkSelect<'_> {
        postgres::select::ChunkSelect {
            query: self.query,
            columns: self.columns,
            key: self.key,
            bounds: self.bounds,
        }
    }
}

/// Streams the chunk's rows into `tx` as typed batches; returns the rows
/// read. A failure is also sent down the channel, so the writer stops.
/// The connection is left outside any transaction.
pub async fn read_chunk(
    conn: &mut Conn,
    chunk: &ChunkRead<'_>,
    tx: BatchSender,
) -> Result<u64, DbFailure> {
    match conn {
        Conn::Postgres(c) => {
            let select = chunk.pg_select();
            if let Err(f) =
                postgres::copy::begin_read(c, &select, chunk.bitmap_scan, chunk.snapshot).await
            {
                let _ = postgres::session::exec(c, "ROLLBACK").await;
                let _ = tx.send(Err(f.clone())).await;
                return Err(f);
            }
            let read = postgres::typed::read_chunk(c, &select, chunk.types, tx).await;
            match read {
                Ok(n) => {
                    postgres::copy::end_read(c).await?;
                    Ok(n)
                }
                Err(f) => {
                    let _ = postgres::session::exec(c, "ROLLBACK").await;
                    Err(f)
                }
            }
        }
        Conn::MySql(c, _) => {
            let (sql, binds) =
                mysql::select::chunk_select(chunk.query, &chunk.names(), chunk.key, chunk.bounds);
            mysql::read::read_chunk(c, &sql, &binds, chunk.types, tx).await
        }
        Conn::Sqlite(c, _) => {
            let (sql, binds) =
                sqlite::select::chunk_select(chunk.query, &chunk.names(), chunk.key, chunk.bounds);
            sqlite::read::read_chunk(c, &sql, &binds, chunk.columns.len(), tx).await
        }
    }
}

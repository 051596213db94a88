//! A chunk's count and order-independent digest computed by Ferry from
//! normalized values, the same way on any database: each value is converted
//! to the target column's type (as the copy converts it) and hashed in its
//! canonical text form, so equal rows hash equally in PostgreSQL, MySQL and
//! SQLite whatever each stores.

use ferry_common::errors::DbFailure;

use super::read::{read_chunk, ChunkRead};
use super::Conn;
use crate::convert::convert;
use crate::rows;
use crate::types::FerryType;
use crate::value::{RowDigest, Value};

/// Reads the chunk and digests its rows with values converted to `to`.
pub async fn chunk_digest(
    conn: &mut Conn,
    chunk: &ChunkRead<'_>,
    to: &[FerryType],
) -> Result<RowDigest, DbFailure> {
    let (tx, mut rx) = rows::channel();
    let read = read_chunk(conn, chunk, tx);
    let digest = async {
        let mut d = RowDigest::default();
        while let Some(batch) = rx.recv().await {
            for row in batch?.rows {
                let row: Vec<Value> = row
                    .into_iter()
                    .zip(to)
                    .map(|(v, ty)| convert(v.clone(), ty).unwrap_or(v))
                    .collect();
                d.add(&row);
            }
        }
        Ok::<_, DbFailure>(d)
    };
    let (read, digest) = tokio::join!(read, digest);
    read?;
    digest
}

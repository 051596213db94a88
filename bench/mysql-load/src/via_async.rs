//! Methods (b) and (c) on mysql_async: `LOAD DATA LOCAL INFILE` fed from
//! memory by a one-time local infile handler, and text-protocol multi-row
//! `INSERT`s. Both run the ledger claim and the rows on one connection in
//! one transaction per chunk.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

use crate::data::{Row, COLUMNS};
use crate::encode::{sql_row, tsv_row, TSV_CLAUSES};
use crate::via_sqlx::{LEDGER_SQL, SESSION_SETTINGS};
use crate::Server;

/// Opens a plaintext TCP session with Ferry's session settings. mysql_async
/// would otherwise switch a 127.0.0.1 connection to the server's Unix
/// socket (`prefer_socket`), which the other methods do not use.
pub async fn connect(server: &Server) -> Result<Conn> {
    let opts = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(server.port)
        .user(Some(server.user.clone()))
        .pass(Some(server.password.clone()))
        .db_name(Some(server.database.clone()))
        .prefer_socket(false)
        .setup(vec![SESSION_SETTINGS, "SET time_zone = '+00:00'"]);
    Conn::new(opts).await.context("mysql_async connect")
}

/// The `LOAD DATA` statement for one chunk.
pub fn load_sql(name: &str) -> String {
    format!(
        "LOAD DATA LOCAL INFILE '{name}' INTO TABLE items {TSV_CLAUSES} ({})",
        COLUMNS.join(", ")
    )
}

/// The chunk's rows as a stream of tab-separated pieces of about `piece`
/// bytes, encoded as the server asks for them.
fn tsv_stream(
    rows: Arc<Vec<Row>>,
    start: usize,
    end: usize,
    piece: usize,
) -> mysql_async::InfileData {
    stream::unfold(start, move |at| {
        let rows = rows.clone();
        async move {
            if at >= end {
                return None;
            }
            let mut buf = Vec::with_capacity(piece + 512);
            let mut i = at;
            while i < end && buf.len() < piece {
                tsv_row(&mut buf, &rows[i]);
                i += 1;
            }
            Some((Ok(Bytes::from(buf)), i))
        }
    })
    .boxed()
}

/// Loads rows `start..end` with one `LOAD DATA LOCAL INFILE`; a load that
/// skipped a row or produced a warning is an error (the caller rolls back).
pub async fn load_chunk(
    conn: &mut Conn,
    rows: &Arc<Vec<Row>>,
    start: usize,
    end: usize,
    piece: usize,
    name: &str,
) -> Result<u64> {
    let rows = rows.clone();
    // the handler must be Sync: it builds the (Send-only) stream when the server asks
    conn.set_infile_handler(async move { Ok(tsv_stream(rows, start, end, piece)) });
    conn.query_drop(load_sql(name)).await?;
    let (got, warnings) = (conn.affected_rows(), conn.get_warnings());
    if got != (end - start) as u64 || warnings != 0 {
        bail!(
            "load data wrote {got} of {} rows with {warnings} warnings ({})",
            end - start,
            conn.info()
        );
    }
    Ok(got)
}

/// Method (b): per chunk, `START TRANSACTION`, the ledger claim, one
/// `LOAD DATA LOCAL INFILE` streamed from memory, `COMMIT`.
pub async fn run_load(
    conn: &mut Conn,
    job: &str,
    rows: &Arc<Vec<Row>>,
    chunk: usize,
    piece: usize,
) -> Result<u64> {
    let mut total = 0;
    let mut start = 0;
    let mut n = 0i32;
    while start < rows.len() {
        let end = (start + chunk).min(rows.len());
        conn.query_drop("START TRANSACTION").await?;
        conn.exec_drop(LEDGER_SQL, (job, n)).await?;
        total += load_chunk(conn, rows, start, end, piece, &format!("chunk-{n}")).await?;
        conn.query_drop("COMMIT").await?;
        start = end;
        n += 1;
    }
    Ok(total)
}

/// Method (c): per chunk, `START TRANSACTION`, the ledger claim,
/// text-protocol `INSERT … VALUES (…),(…)` of at most `batch` rows and half
/// of `max_allowed_packet` bytes each, `COMMIT`.
pub async fn run_insert(
    conn: &mut Conn,
    job: &str,
    rows: &[Row],
    chunk: usize,
    batch: usize,
    max_allowed_packet: usize,
) -> Result<u64> {
    let head = format!("INSERT INTO items ({}) VALUES ", COLUMNS.join(", "));
    let max_bytes = (max_allowed_packet / 2).max(64 * 1024);
    let mut total = 0;
    for (n, part) in rows.chunks(chunk).enumerate() {
        conn.query_drop("START TRANSACTION").await?;
        conn.exec_drop(LEDGER_SQL, (job, n as i32)).await?;
        let mut start = 0;
        while start < part.len() {
            let mut sql = Vec::with_capacity(max_bytes.min(1 << 20));
            sql.extend_from_slice(head.as_bytes());
            let mut end = start;
            while end < part.len() && end - start < batch && sql.len() < max_bytes - 4096 {
                if end > start {
                    sql.push(b',');
                }
                sql_row(&mut sql, &part[end]);
                end += 1;
            }
            // the encoder writes valid UTF-8 (it only adds ASCII escapes to UTF-8 text)
            let sql = String::from_utf8(sql).context("insert text is not UTF-8")?;
            conn.query_drop(sql).await?;
            let got = conn.affected_rows();
            if got != (end - start) as u64 {
                bail!("insert affected {got} rows, expected {}", end - start);
            }
            total += got;
            start = end;
        }
        conn.query_drop("COMMIT").await?;
    }
    Ok(total)
}

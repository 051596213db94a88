//! The slow path of a chunk whose fast binary COPY hit a data error: the rows
//! are read again as text without casts and copied under savepoints; the row
//! the target refuses (found by the line number PostgreSQL reports) goes to
//! `ferry.rejects` with the database's message, in the same transaction as the
//! rows that land.

use bytes::{Bytes, BytesMut};
use ferry_common::errors::{classify_pg, DbFailure, ErrorClass};
use ferry_common::proto::ChunkAssignment;
use ferry_common::sql::quote_ident;
use futures::{SinkExt, StreamExt};
use tokio_postgres::Client;

/// One refused row.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// The key, as text (None when NULL or not copied).
    pub key: Option<String>,
    /// The row in COPY text form.
    pub row: String,
    /// SQLSTATE of the refusal.
    pub sqlstate: String,
    /// The database's message.
    pub message: String,
}

/// What the slow path landed.
#[derive(Debug, Default)]
pub struct SlowResult {
    /// Rows copied.
    pub written: u64,
    /// Rows refused.
    pub rejected: Vec<Rejected>,
}

/// Reads the chunk's rows as COPY text lines (the chunk is held in memory on
/// this path only).
async fn read_lines(source: &Client, a: &ChunkAssignment) -> Result<Vec<Bytes>, DbFailure> {
    let sql = format!("COPY ({}) TO STDOUT", a.text_select);
    let stream = source
        .copy_out(sql.as_str())
        .await
        .map_err(|e| classify_pg(&e))?;
    futures::pin_mut!(stream);
    let mut pending = BytesMut::new();
    let mut lines = Vec::new();
    while let Some(chunk) = stream.next().await {
        pending.extend_from_slice(&chunk.map_err(|e| classify_pg(&e))?);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            lines.push(pending.split_to(pos + 1).freeze());
        }
    }
    if !pending.is_empty() {
        lines.push(pending.freeze());
    }
    Ok(lines)
}

/// Copies `lines` as text into `table`; returns rows copied or the error.
async fn copy_text(
    target: &Client,
    table: &str,
    columns: &str,
    lines: &[Bytes],
) -> Result<u64, tokio_postgres::Error> {
    let sql = format!("COPY {table} ({columns}) FROM STDIN");
    let sink = target.copy_in::<_, Bytes>(sql.as_str()).await?;
    futures::pin_mut!(sink);
    let mut buf = BytesMut::with_capacity(256 * 1024);
    for line in lines {
        buf.extend_from_slice(line);
        if buf.len() >= 256 * 1024 {
            sink.send(buf.split().freeze()).await?;
        }
    }
    if !buf.is_empty() {
        sink.send(buf.split().freeze()).await?;
    }
    sink.as_mut().finish().await
}

/// The 1-based line of a COPY error (`COPY t, line 12, column x: …`).
fn error_line(e: &tokio_postgres::Error) -> Option<usize> {
    let context = e.as_db_error()?.where_()?;
    let rest = &context[context.find(", line ")? + 7..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// The key field of a COPY text line, unescaped enough to identify the row.
fn key_of(line: &[u8], key_index: i32) -> Option<String> {
    let i = usize::try_from(key_index).ok()?;
    let text = String::from_utf8_lossy(line);
    let field = text.trim_end_matches('\n').split('\t').nth(i)?.to_string();
    (field != "\\N").then_some(field)
}

async fn exec(target: &Client, sql: &str) -> Result<(), DbFailure> {
    target.batch_execute(sql).await.map_err(|e| classify_pg(&e))
}

/// Lines sent per COPY on this path: a refused row costs a re-send of at most
/// this many lines, not of the rest of the chunk.
const BATCH_LINES: usize = 1_000;

/// Copies the chunk in batches under savepoints; a batch the target refuses is
/// copied again up to the refused row (found by its line number), the row is
/// rejected, and the copy goes on after it.
pub async fn copy_isolating(
    source: &Client,
    target: &Client,
    a: &ChunkAssignment,
    table: &str,
) -> Result<SlowResult, DbFailure> {
    let lines = read_lines(source, a).await?;
    let columns = a.target_columns.join(", ");
    let mut out = SlowResult::default();
    let mut i = 0;
    while i < lines.len() {
        let end = (i + BATCH_LINES).min(lines.len());
        exec(target, "SAVEPOINT ferry_rows").await?;
        match copy_text(target, table, &columns, &lines[i..end]).await {
            Ok(n) => {
                exec(target, "RELEASE SAVEPOINT ferry_rows").await?;
                out.written += n;
                i = end;
            }
            Err(e) => {
                exec(target, "ROLLBACK TO SAVEPOINT ferry_rows").await?;
                let f = classify_pg(&e);
                let line = error_line(&e).filter(|l| *l >= 1 && *l <= end - i);
                let (ErrorClass::Data, Some(line)) = (f.class, line) else {
                    return Err(f);
                };
                if line > 1 {
                    exec(target, "SAVEPOINT ferry_rows").await?;
                    match copy_text(target, table, &columns, &lines[i..i + line - 1]).await {
                        Ok(n) => {
                            exec(target, "RELEASE SAVEPOINT ferry_rows").await?;
                            out.written += n;
                        }
                        Err(e) => return Err(classify_pg(&e)),
                    }
                }
                let bad = &lines[i + line - 1];
                out.rejected.push(Rejected {
                    key: key_of(bad, a.key_index),
                    row: String::from_utf8_lossy(bad)
                        .trim_end_matches('\n')
                        .to_string(),
                    sqlstate: f.sqlstate.clone().unwrap_or_default(),
                    message: f.message.clone(),
                });
                i += line;
            }
        }
    }
    Ok(out)
}

/// Writes refused rows to the rejects table, in the chunk's transaction.
pub async fn record(
    target: &Client,
    a: &ChunkAssignment,
    rejected: &[Rejected],
) -> Result<(), DbFailure> {
    if rejected.is_empty() {
        return Ok(());
    }
    let Some(r) = a.chunk.as_ref() else {
        return Ok(());
    };
    let sql = format!(
        "INSERT INTO {}.rejects (job_id, chunk_no, key, row_text, sqlstate, message)
         SELECT $1, $2, k, r, s, m FROM unnest($3::text[], $4::text[], $5::text[], $6::text[]) AS t(k, r, s, m)",
        quote_ident(&a.ledger_schema)
    );
    let keys: Vec<Option<String>> = rejected.iter().map(|x| x.key.clone()).collect();
    let rows: Vec<String> = rejected.iter().map(|x| x.row.clone()).collect();
    let states: Vec<String> = rejected.iter().map(|x| x.sqlstate.clone()).collect();
    let messages: Vec<String> = rejected.iter().map(|x| x.message.clone()).collect();
    target
        .execute(
            &sql,
            &[
                &r.job_id,
                &(r.chunk_no as i32),
                &keys,
                &rows,
                &states,
                &messages,
            ],
        )
        .await
        .map_err(|e| classify_pg(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::key_of;

    #[test]
    fn finds_the_key_field() {
        assert_eq!(key_of(b"17\tabc\t\\N\n", 0), Some("17".into()));
        assert_eq!(key_of(b"17\t\\N\n", 1), None);
        assert_eq!(key_of(b"17\tx\n", -1), None);
    }
}

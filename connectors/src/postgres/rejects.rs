//! The slow path of a chunk whose binary COPY hit a data error: the rows are
//! read again as text without conversions and copied in batches under
//! savepoints; a batch the target refuses is halved until the refused rows
//! stand alone (bisection: it needs no line number from the error message,
//! so it works whatever language the server speaks). Each refused row goes to
//! the rejects table with the database's SQLSTATE and message, in the same
//! transaction as the rows that land.

use bytes::{Bytes, BytesMut};
use ferry_common::errors::{classify_pg, DbFailure, ErrorClass};
use ferry_common::proto::TableRef;
use futures::{SinkExt, StreamExt};
use tokio_postgres::Client;

use super::select::ChunkSelect;
use super::session::exec;
use super::sql::{quote_ident, quote_list, quote_table};
use crate::reject_key::KeyFields;

/// Lines sent per COPY on this path before any refusal: a batch with a bad
/// row is halved until the row is alone.
const BATCH_LINES: usize = 1_000;

pub use crate::isolate::Rejected;

/// What the slow path landed.
#[derive(Debug, Default)]
pub struct Isolated {
    /// Rows copied.
    pub written: u64,
    /// Rows refused.
    pub rejected: Vec<Rejected>,
}

/// Reads the chunk's rows as COPY text lines (the chunk is held in memory on
/// this path only). Inside the chunk's read transaction.
async fn read_lines(source: &Client, chunk: &ChunkSelect<'_>) -> Result<Vec<Bytes>, DbFailure> {
    let (select, _) = chunk.text();
    let sql = format!("COPY ({select}) TO STDOUT");
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
    copy_in: &str,
    lines: &[Bytes],
) -> Result<u64, tokio_postgres::Error> {
    let sink = target.copy_in::<_, Bytes>(copy_in).await?;
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

/// Decodes one field of a COPY text line (`\N` is NULL; backslash escapes
/// undone), so a key reads as the value itself.
pub fn decode_field(field: &str) -> Option<String> {
    if field == "\\N" {
        return None;
    }
    let mut out = String::with_capacity(field.len());
    let mut bytes: Vec<u8> = Vec::new();
    let mut chars = field.chars().peekable();
    let flush = |bytes: &mut Vec<u8>, out: &mut String| {
        if !bytes.is_empty() {
            out.push_str(&String::from_utf8_lossy(bytes));
            bytes.clear();
        }
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            flush(&mut bytes, &mut out);
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => bytes.push(8),
            Some('f') => bytes.push(12),
            Some('n') => bytes.push(b'\n'),
            Some('r') => bytes.push(b'\r'),
            Some('t') => bytes.push(b'\t'),
            Some('v') => bytes.push(11),
            Some(d @ '0'..='7') => {
                let mut v = d.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match chars.peek().and_then(|c| c.to_digit(8)) {
                        Some(x) => {
                            v = v * 8 + x;
                            chars.next();
                        }
                        None => break,
                    }
                }
                bytes.push(v as u8);
            }
            Some('x') => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 {
                    match chars.peek().and_then(|c| c.to_digit(16)) {
                        Some(x) => {
                            v = v * 16 + x;
                            chars.next();
                            n += 1;
                        }
                        None => break,
                    }
                }
                if n == 0 {
                    flush(&mut bytes, &mut out);
                    out.push('x');
                } else {
                    bytes.push(v as u8);
                }
            }
            Some(other) => {
                flush(&mut bytes, &mut out);
                out.push(other);
            }
            None => {}
        }
    }
    flush(&mut bytes, &mut out);
    Some(out)
}

/// The key of a COPY text line, from its decoded key fields.
fn key_of(line: &[u8], key: &KeyFields) -> Option<String> {
    let text = String::from_utf8_lossy(line);
    let fields: Vec<&str> = text.trim_end_matches('\n').split('\t').collect();
    key.text(|i| fields.get(i).map(|f| decode_field(f)))
}

/// Copies the chunk's rows as text into `table`, isolating the rows the
/// target refuses for a data reason; any other failure ends the chunk.
/// `key` names a refused row by its key columns' places in the select list.
pub async fn isolate(
    source: &Client,
    target: &Client,
    chunk: &ChunkSelect<'_>,
    table: &TableRef,
    columns: &[&str],
    key: &KeyFields,
) -> Result<Isolated, DbFailure> {
    let lines = read_lines(source, chunk).await?;
    let copy_in = format!(
        "COPY {} ({}) FROM STDIN",
        quote_table(table),
        quote_list(columns.iter().copied())
    );
    let mut out = Isolated::default();
    // ranges still to copy, the next one on top
    let mut todo: Vec<(usize, usize)> = (0..lines.len())
        .step_by(BATCH_LINES)
        .map(|i| (i, (i + BATCH_LINES).min(lines.len())))
        .rev()
        .collect();
    while let Some((from, to)) = todo.pop() {
        exec(target, "SAVEPOINT ferry_rows").await?;
        match copy_text(target, &copy_in, &lines[from..to]).await {
            Ok(n) => {
                exec(target, "RELEASE SAVEPOINT ferry_rows").await?;
                out.written += n;
            }
            Err(e) => {
                exec(target, "ROLLBACK TO SAVEPOINT ferry_rows").await?;
                let f = classify_pg(&e);
                if f.class != ErrorClass::Data {
                    return Err(f);
                }
                if to - from == 1 {
                    let bad = &lines[from];
                    out.rejected.push(Rejected {
                        key: key_of(bad, key),
                        row: String::from_utf8_lossy(bad)
                            .trim_end_matches('\n')
                            .to_string(),
                        sqlstate: f.sqlstate.clone().unwrap_or_default(),
                        message: f.message,
                    });
                } else {
                    let mid = from + (to - from) / 2;
                    todo.push((mid, to));
                    todo.push((from, mid));
                }
            }
        }
    }
    Ok(out)
}

/// Writes refused rows to the rejects table, in the chunk's transaction.
pub async fn record(
    target: &Client,
    ledger_schema: &str,
    job_id: &str,
    chunk_no: u32,
    rejected: &[Rejected],
) -> Result<(), DbFailure> {
    if rejected.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO {}.rejects (job_id, chunk_no, key, row_text, sqlstate, message)
         SELECT $1, $2, k, r, s, m FROM unnest($3::text[], $4::text[], $5::text[], $6::text[]) AS t(k, r, s, m)",
        quote_ident(ledger_schema)
    );
    let keys: Vec<Option<String>> = rejected.iter().map(|x| x.key.clone()).collect();
    let rows: Vec<String> = rejected.iter().map(|x| x.row.clone()).collect();
    let states: Vec<String> = rejected.iter().map(|x| x.sqlstate.clone()).collect();
    let messages: Vec<String> = rejected.iter().map(|x| x.message.clone()).collect();
    target
        .execute(
            &sql,
            &[
                &job_id,
                &(chunk_no as i32),
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

/// Forgets the rows an earlier attempt of the chunk refused (a repair copies
/// the chunk again and records its own), in the chunk's transaction.
pub async fn forget(
    target: &Client,
    ledger_schema: &str,
    job_id: &str,
    chunk_no: u32,
) -> Result<(), DbFailure> {
    target
        .execute(
            &format!(
                "DELETE FROM {}.rejects WHERE job_id = $1 AND chunk_no = $2",
                quote_ident(ledger_schema)
            ),
            &[&job_id, &(chunk_no as i32)],
        )
        .await
        .map_err(|e| classify_pg(&e))?;
    Ok(())
}

/// One stored refused row.
#[derive(Debug, Clone)]
pub struct StoredReject {
    /// Chunk number.
    pub chunk_no: u32,
    /// Key as text ("" when NULL).
    pub key: String,
    /// The row in COPY text form.
    pub row: String,
    /// SQLSTATE.
    pub sqlstate: String,
    /// The database's message.
    pub message: String,
}

/// The rows a job's target refused (at most `limit`), by chunk, and how many
/// there are in all.
pub async fn list(
    target: &Client,
    ledger_schema: &str,
    job_id: &str,
    limit: u32,
) -> Result<(Vec<StoredReject>, u64), DbFailure> {
    let table = format!("{}.rejects", quote_ident(ledger_schema));
    let rows = target
        .query(
            &format!(
                "SELECT chunk_no, coalesce(key, ''), row_text, sqlstate, message FROM {table}
                  WHERE job_id = $1 ORDER BY chunk_no, id LIMIT $2"
            ),
            &[&job_id, &i64::from(limit)],
        )
        .await
        .map_err(|e| classify_pg(&e).context("cannot read the rejects table"))?;
    let total: i64 = target
        .query_one(
            &format!("SELECT count(*) FROM {table} WHERE job_id = $1"),
            &[&job_id],
        )
        .await
        .map_err(|e| classify_pg(&e).context("cannot count rejects"))?
        .get(0);
    let rejects = rows
        .into_iter()
        .map(|r| StoredReject {
            chunk_no: r.get::<_, i32>(0).max(0) as u32,
            key: r.get(1),
            row: r.get(2),
            sqlstate: r.get(3),
            message: r.get(4),
        })
        .collect();
    Ok((rejects, total.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::{decode_field, key_of, KeyFields};

    #[test]
    fn finds_and_decodes_the_key_field() {
        let at = KeyFields::at;
        assert_eq!(key_of(b"17\tabc\t\\N\n", &at(&[0])), Some("17".into()));
        assert_eq!(key_of(b"17\t\\N\n", &at(&[1])), None);
        assert_eq!(key_of(b"17\tx\n", &KeyFields::default()), None);
        assert_eq!(
            key_of(b"new\\nline3\tx\n", &at(&[0])).as_deref(),
            Some("new\nline3")
        );
        assert_eq!(
            key_of(b"17\t\\N\ta\\tb\n", &at(&[0, 1, 2])).as_deref(),
            Some("(17,,\"a\tb\")")
        );
    }

    #[test]
    fn undoes_copy_escapes() {
        assert_eq!(
            decode_field("back\\\\slash").as_deref(),
            Some("back\\slash")
        );
        assert_eq!(decode_field("a\\tb\\rc").as_deref(), Some("a\tb\rc"));
        assert_eq!(
            decode_field("it's {key} $1 🚀").as_deref(),
            Some("it's {key} $1 🚀")
        );
        assert_eq!(decode_field("\\101\\x42").as_deref(), Some("AB"));
        assert_eq!(decode_field("\\N"), None);
    }
}

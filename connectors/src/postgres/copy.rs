//! PostgreSQL to PostgreSQL: binary COPY out of the source streamed straight
//! into binary COPY into the target, never decoded, in bounded buffers. The
//! source is read in a read-only transaction of its own (one snapshot for
//! the chunk, also for the text re-read that isolates refused rows), whose
//! settings carry the chunk's bounds.

use bytes::{Bytes, BytesMut};
use ferry_common::errors::{classify_pg, DbFailure, ErrorClass};
use ferry_common::proto::TableRef;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, CopyInSink};
use tokio_util::sync::CancellationToken;

use super::rowcount::TupleCounter;
use super::select::{bind_settings, ChunkSelect};
use super::session::exec;
use super::snapshot::SnapshotId;
use super::sql::{quote_list, quote_table};

/// Bytes gathered before one send to the target; memory per chunk in flight
/// is bounded by this, not by the chunk's row count.
pub const SEND_BUFFER: usize = 256 * 1024;

/// Bytes worth sending before `SEND_BUFFER` fills when the source has no
/// more rows ready this instant.
const EARLY_SEND: usize = 16 * 1024;

/// Why a copy stopped before its end.
#[derive(Debug)]
pub enum CopyStop {
    /// A database failed or refused a row.
    Db(DbFailure),
    /// The caller asked to stop (cancel, lost lease); the reason, for people.
    Abort(String),
}

impl From<DbFailure> for CopyStop {
    fn from(f: DbFailure) -> Self {
        CopyStop::Db(f)
    }
}

/// What a copy asks of its caller while it streams.
pub trait CopyControl: Sync {
    /// Err(reason) when the attempt must stop writing (self-fenced, cancelled).
    fn check(&self) -> Result<(), String>;
    /// Cancelled when the coordinator asks the attempt to stop.
    fn cancel(&self) -> &CancellationToken;
    /// Publishes the rows streamed so far.
    fn progress(&self, rows: u64);
    /// Counts COPY bytes about to be sent to the target (for metrics).
    fn sent(&self, _bytes: usize) {}
}

fn pg(e: tokio_postgres::Error) -> CopyStop {
    CopyStop::Db(classify_pg(&e))
}

/// Opens the chunk's read-only transaction on the source (repeatable read,
/// so every read of the chunk sees the same rows; in the job's exported
/// `snapshot` when it has one), turns index scans off when the planner
/// chose bitmap scans, and binds the chunk's bounds.
pub async fn begin_read(
    source: &Client,
    chunk: &ChunkSelect<'_>,
    bitmap_scan: bool,
    snapshot: Option<&SnapshotId>,
) -> Result<(), DbFailure> {
    // One round trip: the statements are pipelined, and the first failure is
    // the answer (a failed step fails the ones after it; `begin_in` rolls
    // the transaction back behind them).
    let begin = async {
        match snapshot {
            Some(id) => super::snapshot::begin_in(source, id).await,
            None => exec(source, super::snapshot::BEGIN_SNAPSHOT).await,
        }
    };
    let index_scans = async {
        if bitmap_scan {
            exec(source, "SET LOCAL enable_indexscan = off").await
        } else {
            Ok(())
        }
    };
    let (_, values) = chunk.binary();
    let bind = async {
        let Some(sql) = bind_settings(&values) else {
            return Ok(());
        };
        let params: Vec<(&(dyn ToSql + Sync), Type)> =
            values.iter().map(|v| (v as _, Type::TEXT)).collect();
        source
            .query_typed(&sql, &params)
            .await
            .map(|_| ())
            .map_err(|e| classify_pg(&e))
    };
    // a read that fails on a bad value (a cast) is rewound to here
    let savepoint = exec(source, "SAVEPOINT ferry_read");
    let (begun, index_scans, bound, saved) = futures::join!(begin, index_scans, bind, savepoint);
    begun.and(index_scans).and(bound).and(saved)
}

/// Rewinds the chunk's read transaction after a failed read (a value the
/// cast refused aborts it), keeping its snapshot and bounds for a re-read.
pub async fn rewind_read(source: &Client) -> Result<(), DbFailure> {
    exec(source, "ROLLBACK TO SAVEPOINT ferry_read").await
}

/// Ends the chunk's read transaction (nothing was written in it).
pub async fn end_read(source: &Client) -> Result<(), DbFailure> {
    exec(source, "COMMIT").await
}

/// Sends what `buf` gathered (`rows` streamed so far) to the target, once
/// the attempt may still write.
async fn send_gathered(
    mut sink: std::pin::Pin<&mut CopyInSink<Bytes>>,
    buf: &mut BytesMut,
    rows: u64,
    control: &impl CopyControl,
) -> Result<(), CopyStop> {
    control.check().map_err(CopyStop::Abort)?;
    control.progress(rows);
    control.sent(buf.len());
    sink.send(buf.split().freeze()).await.map_err(pg)
}

/// Streams the chunk's rows from the source into `table`'s `columns` and
/// returns the rows copied. Inside `begin_read` on the source and the
/// chunk's transaction on the target.
pub async fn pass_through(
    source: &Client,
    target: &Client,
    chunk: &ChunkSelect<'_>,
    table: &TableRef,
    columns: &[&str],
    control: &impl CopyControl,
) -> Result<u64, CopyStop> {
    let copy_in = format!(
        "COPY {} ({}) FROM STDIN (FORMAT binary)",
        quote_table(table),
        quote_list(columns.iter().copied())
    );
    let (select, _) = chunk.binary();
    let copy_out = format!("COPY ({select}) TO STDOUT (FORMAT binary)");
    // both ends start at once: the source plans its query while the target
    // readies its COPY
    let (sink, stream) = futures::join!(
        target.copy_in::<_, Bytes>(copy_in.as_str()),
        source.copy_out(copy_out.as_str())
    );
    let sink = sink.map_err(pg)?;
    futures::pin_mut!(sink);
    let stream = stream.map_err(pg)?;
    futures::pin_mut!(stream);

    let stopped = || {
        CopyStop::Abort(
            "the coordinator asked to stop (job cancelled or chunk leased again)".into(),
        )
    };
    let mut counter = TupleCounter::new();
    let mut buf = BytesMut::with_capacity(SEND_BUFFER + 64 * 1024);
    loop {
        // Rows the source already sent are taken without arming the cancel
        // future (a row is one message: this loop runs once per row); only
        // when the source has nothing ready does the wait also watch cancel.
        let next = match stream.next().now_or_never() {
            Some(n) => n,
            // the source paused: what is gathered goes now rather than
            // leave the target idle (at a chunk's start, or a slow source)
            None if buf.len() >= EARLY_SEND => {
                send_gathered(sink.as_mut(), &mut buf, counter.rows(), control).await?;
                continue;
            }
            None => tokio::select! {
                biased;
                _ = control.cancel().cancelled() => return Err(stopped()),
                n = stream.next() => n,
            },
        };
        match next {
            Some(Ok(bytes)) => {
                counter.feed(&bytes);
                buf.extend_from_slice(&bytes);
                if buf.len() >= SEND_BUFFER {
                    send_gathered(sink.as_mut(), &mut buf, counter.rows(), control).await?;
                }
            }
            Some(Err(e)) => return Err(pg(e)),
            None => break,
        }
    }
    if !buf.is_empty() {
        control.sent(buf.len());
        sink.send(buf.split().freeze()).await.map_err(pg)?;
    }
    let rows = sink.as_mut().finish().await.map_err(pg)?;
    control.progress(rows);
    if rows != counter.rows() {
        return Err(CopyStop::Db(DbFailure {
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

//! Rows in flight between databases of different kinds: batches of typed
//! values, bounded in rows and bytes, handed from a source's reader task to
//! the target's writer through a small channel, so memory per chunk is
//! bounded by a few batches whatever the chunk's size.

use ferry_common::errors::DbFailure;
use tokio::sync::mpsc;

use crate::value::Value;

/// One row: a value per column.
pub type Row = Vec<Value>;

/// Most rows in one batch.
pub const BATCH_ROWS: usize = 2_000;
/// Most bytes (estimated) in one batch.
pub const BATCH_BYTES: usize = 1 << 20;
/// Batches a reader may run ahead of its writer.
pub const BATCHES_IN_FLIGHT: usize = 2;
/// Most rows gathered from several batches into one write into PostgreSQL:
/// each write is a COPY under a savepoint (four round trips, a statement and
/// a subtransaction), which per batch cost about as much as the batch's rows.
pub const POSTGRES_WRITE_ROWS: usize = 10 * BATCH_ROWS;
/// Most bytes (estimated) gathered likewise.
pub const POSTGRES_WRITE_BYTES: usize = 8 * BATCH_BYTES;

/// A batch of rows.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RowBatch {
    /// The rows.
    pub rows: Vec<Row>,
    /// Their estimated size in bytes.
    pub bytes: usize,
}

/// The rough size of a value in memory and on the wire.
pub fn value_size(v: &Value) -> usize {
    match v {
        Value::Text(t) | Value::Decimal(t) | Value::Json(t) => t.len() + 8,
        Value::Bytes(b) => b.len() + 8,
        _ => 16,
    }
}

/// Where a reader sends its batches.
pub type BatchSender = mpsc::Sender<Result<RowBatch, DbFailure>>;
/// Where a writer takes them from.
pub type BatchReceiver = mpsc::Receiver<Result<RowBatch, DbFailure>>;

/// A channel for one chunk's batches.
pub fn channel() -> (BatchSender, BatchReceiver) {
    mpsc::channel(BATCHES_IN_FLIGHT)
}

/// Gathers rows into batches and sends each full one.
#[derive(Debug)]
pub struct Batcher {
    tx: BatchSender,
    batch: RowBatch,
    rows: u64,
}

impl Batcher {
    /// A batcher sending into `tx`.
    pub fn new(tx: BatchSender) -> Self {
        Self {
            tx,
            batch: RowBatch::default(),
            rows: 0,
        }
    }

    /// Adds a row; false when the writer has gone (stop reading).
    pub async fn push(&mut self, row: Row) -> bool {
        match self.add(row) {
            Some(full) => self.tx.send(Ok(full)).await.is_ok(),
            None => true,
        }
    }

    /// [`Batcher::push`] from a blocking thread (never from async code).
    pub fn push_blocking(&mut self, row: Row) -> bool {
        match self.add(row) {
            Some(full) => self.tx.blocking_send(Ok(full)).is_ok(),
            None => true,
        }
    }

    /// Adds a row; returns the batch when it is full.
    fn add(&mut self, row: Row) -> Option<RowBatch> {
        self.batch.bytes += row.iter().map(value_size).sum::<usize>();
        self.batch.rows.push(row);
        self.rows += 1;
        (self.batch.rows.len() >= BATCH_ROWS || self.batch.bytes >= BATCH_BYTES)
            .then(|| std::mem::take(&mut self.batch))
    }

    /// Sends what is left and returns the rows read.
    pub async fn finish(mut self) -> u64 {
        if let Some(last) = self.rest() {
            let _ = self.tx.send(Ok(last)).await;
        }
        self.rows
    }

    /// The rows not yet sent, if any.
    fn rest(&mut self) -> Option<RowBatch> {
        (!self.batch.rows.is_empty()).then(|| std::mem::take(&mut self.batch))
    }

    /// Tells the writer the read failed.
    pub async fn fail(self, f: DbFailure) {
        let _ = self.tx.send(Err(f)).await;
    }

    /// [`Batcher::finish`] from a blocking thread.
    pub fn finish_blocking(mut self) -> u64 {
        if let Some(last) = self.rest() {
            let _ = self.tx.blocking_send(Ok(last));
        }
        self.rows
    }

    /// [`Batcher::fail`] from a blocking thread.
    pub fn fail_blocking(self, f: DbFailure) {
        let _ = self.tx.blocking_send(Err(f));
    }
}

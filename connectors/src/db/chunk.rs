//! One chunk attempt's steps in any target: claim the ledger row (opening
//! the chunk's transaction), clear a repaired range, record refused rows and
//! counts, commit.

use ferry_common::errors::DbFailure;
use ferry_common::proto::{ChunkBounds, KeyColumn, TableRef};

use super::Conn;
use crate::isolate::Rejected;
pub use crate::postgres::ledger::{Attempt, Claim};
use crate::{mysql, postgres, sqlite};

fn my<'a>(a: &Attempt<'a>) -> mysql::ledger::Attempt<'a> {
    mysql::ledger::Attempt {
        schema: a.ledger_schema,
        job_id: a.job_id,
        chunk_no: a.chunk_no,
        attempt: a.attempt,
        token: a.token,
        worker: a.worker,
        repair: a.repair,
    }
}

fn lite<'a>(a: &Attempt<'a>) -> sqlite::ledger::Attempt<'a> {
    sqlite::ledger::Attempt {
        schema: a.ledger_schema,
        job_id: a.job_id,
        chunk_no: a.chunk_no,
        attempt: a.attempt,
        token: a.token,
        worker: a.worker,
        repair: a.repair,
    }
}

/// Opens the chunk's transaction and claims its ledger row first; an
/// earlier attempt's commit comes back as `AlreadyCommitted` (transaction
/// ended). Stalled older attempts of the chunk are ended where the
/// database lets Ferry do so (PostgreSQL, MySQL).
pub async fn claim(conn: &mut Conn, a: &Attempt<'_>) -> Result<Claim, DbFailure> {
    match conn {
        Conn::Postgres(c) => a.claim(c).await,
        Conn::MySql(c, _) => my(a).claim(c).await,
        Conn::Sqlite(c, _) => lite(a).claim(c).await,
    }
}

/// Records the chunk's counts in its claimed ledger row.
pub async fn record_counts(
    conn: &mut Conn,
    a: &Attempt<'_>,
    written: u64,
    rejected: u64,
) -> Result<(), DbFailure> {
    match conn {
        Conn::Postgres(c) => a.record_counts(c, written, rejected).await,
        Conn::MySql(c, _) => my(a).record_counts(c, written, rejected).await,
        Conn::Sqlite(c, _) => lite(a).record_counts(c, written, rejected).await,
    }
}

/// Forgets an earlier attempt's refused rows (repair).
pub async fn forget_rejects(conn: &mut Conn, a: &Attempt<'_>) -> Result<(), DbFailure> {
    match conn {
        Conn::Postgres(c) => {
            postgres::rejects::forget(c, a.ledger_schema, a.job_id, a.chunk_no).await
        }
        Conn::MySql(c, _) => my(a).forget_rejects(c).await,
        Conn::Sqlite(c, _) => lite(a).forget_rejects(c).await,
    }
}

/// Records refused rows in the chunk's transaction.
pub async fn record_rejects(
    conn: &mut Conn,
    a: &Attempt<'_>,
    rejected: &[Rejected],
) -> Result<(), DbFailure> {
    if rejected.is_empty() {
        return Ok(());
    }
    match conn {
        Conn::Postgres(c) => {
            postgres::rejects::record(c, a.ledger_schema, a.job_id, a.chunk_no, rejected).await
        }
        Conn::MySql(c, _) => my(a).record_rejects(c, rejected).await,
        Conn::Sqlite(c, _) => lite(a).record_rejects(c, rejected).await,
    }
}

/// Deletes the chunk's key range from `table` (repair), in the chunk's
/// transaction; returns the rows deleted.
pub async fn delete_range(
    conn: &mut Conn,
    table: &TableRef,
    key: &[KeyColumn],
    bounds: &ChunkBounds,
) -> Result<u64, DbFailure> {
    match conn {
        Conn::Postgres(c) => postgres::modes::delete_range(c, table, key, bounds).await,
        Conn::MySql(c, _) => mysql::modes::delete_range(c, table, key, bounds).await,
        Conn::Sqlite(c, _) => sqlite::modes::delete_range(c, table, key, bounds).await,
    }
}

/// Commits the chunk's transaction.
pub async fn commit(conn: &mut Conn) -> Result<(), DbFailure> {
    conn.exec("COMMIT").await
}

//! One snapshot across sessions: a session exports its transaction's
//! snapshot (`pg_export_snapshot()`), and other sessions of the same database
//! read in it (`SET TRANSACTION SNAPSHOT`) while the exporting transaction
//! stays open. The snapshot id goes into SQL as a literal (the statement
//! takes no parameter), so it is checked strictly first.

use std::fmt;

use ferry_common::errors::{classify_pg, DbFailure, ErrorClass};
use tokio_postgres::Client;

use super::session::exec;

/// The transaction every snapshot is exported from and read in.
pub const BEGIN_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// An exported snapshot's id as PostgreSQL prints it: two groups of eight
/// hex digits and a decimal counter, separated by dashes
/// (`00000003-0000001B-1`). Nothing else passes `parse`, so the id is safe
/// to put between quotes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SnapshotId(String);

/// A snapshot id that is not of PostgreSQL's form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{0}' is not a PostgreSQL snapshot id (hex groups and a counter, like 00000003-0000001B-1)"
)]
pub struct BadSnapshotId(pub String);

impl SnapshotId {
    /// Checks `text` is of the form `XXXXXXXX-XXXXXXXX-N` (hex, hex, decimal).
    pub fn parse(text: &str) -> Result<Self, BadSnapshotId> {
        let bad = || BadSnapshotId(text.chars().take(64).collect());
        let parts: Vec<&str> = text.split('-').collect();
        let [a, b, n] = parts.as_slice() else {
            return Err(bad());
        };
        let hex = |s: &str| s.len() == 8 && s.bytes().all(|c| c.is_ascii_hexdigit());
        let counter = !n.is_empty() && n.len() <= 10 && n.bytes().all(|c| c.is_ascii_digit());
        if hex(a) && hex(b) && counter {
            Ok(Self(text.to_string()))
        } else {
            Err(bad())
        }
    }

    /// The id as PostgreSQL printed it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `SET TRANSACTION SNAPSHOT '<id>'`: the id is a checked literal.
    pub fn set_transaction(&self) -> String {
        debug_assert!(Self::parse(&self.0).is_ok());
        format!("SET TRANSACTION SNAPSHOT '{}'", self.0)
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether a failure to read in a snapshot means the snapshot is gone (its
/// exporting transaction ended: "invalid snapshot identifier", or "could
/// not import the requested snapshot").
pub fn is_lost(f: &DbFailure) -> bool {
    matches!(f.sqlstate.as_deref(), Some("22023") | Some("55000")) && f.message.contains("snapshot")
}

/// Opens a repeatable-read read-only transaction on `client` and exports
/// its snapshot; the transaction stays open (the snapshot lives as long).
pub async fn export(client: &Client) -> Result<SnapshotId, DbFailure> {
    exec(client, BEGIN_SNAPSHOT).await?;
    export_open(client).await
}

/// Opens a repeatable-read read-only transaction on `client` in snapshot
/// `id` and exports it again under a new id: the same instant, held by this
/// session (a new coordinator takes over a snapshot the old one still holds).
pub async fn adopt(client: &Client, id: &SnapshotId) -> Result<SnapshotId, DbFailure> {
    begin_in(client, id).await?;
    export_open(client).await
}

async fn export_open(client: &Client) -> Result<SnapshotId, DbFailure> {
    let row = client
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(|e| classify_pg(&e).context("cannot export the source's snapshot"))?;
    let text: String = row.get(0);
    SnapshotId::parse(&text).map_err(|e| DbFailure::permanent(e.to_string()))
}

/// Opens a repeatable-read read-only transaction on `client` that reads in
/// snapshot `id`. A snapshot the source no longer knows is a transient
/// failure (the job's current snapshot is sent with the retry); the
/// transaction is rolled back on failure.
pub async fn begin_in(client: &Client, id: &SnapshotId) -> Result<(), DbFailure> {
    // one round trip: both statements are pipelined
    let set_snapshot = id.set_transaction();
    let (begun, set) = futures::join!(
        exec(client, BEGIN_SNAPSHOT),
        client.batch_execute(&set_snapshot)
    );
    begun?;
    if let Err(e) = set {
        let _ = exec(client, "ROLLBACK").await;
        let f = classify_pg(&e);
        if is_lost(&f) {
            return Err(DbFailure {
                class: ErrorClass::Transient,
                sqlstate: f.sqlstate,
                message: format!(
                    "the job's source snapshot {id} is gone (the coordinator holding it stopped): {}",
                    f.message
                ),
            });
        }
        return Err(f.context(format!("cannot read in the source snapshot {id}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_postgres_ids_only() {
        for ok in ["00000003-0000001B-1", "0000000a-000000ff-12"] {
            assert_eq!(SnapshotId::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "00000003-0000001B",
            "00000003-0000001B-",
            "0000003-0000001B-1",
            "00000003-0000001G-1",
            "00000003-0000001B-1'; DROP TABLE t; --",
            "00000003-0000001B-1-2",
            "00000003-0000001B-x",
            "00000003-0000001B-12345678901",
        ] {
            assert!(SnapshotId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn statement_quotes_the_id() {
        let id = SnapshotId::parse("00000003-0000001B-1").unwrap();
        assert_eq!(
            id.set_transaction(),
            "SET TRANSACTION SNAPSHOT '00000003-0000001B-1'"
        );
    }

    #[test]
    fn lost_snapshots_are_recognised() {
        let f = DbFailure {
            class: ErrorClass::Data,
            sqlstate: Some("22023".into()),
            message: "invalid snapshot identifier: \"00000003-0000001B-1\"".into(),
        };
        assert!(is_lost(&f));
        let other = DbFailure {
            message: "invalid input syntax".into(),
            ..f
        };
        assert!(!is_lost(&other));
    }
}

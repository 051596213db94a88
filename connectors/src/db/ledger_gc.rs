//! Ledger collection in any database (`ferry gc`, and the leader on a
//! schedule): the ledger rows of jobs long finished leave PostgreSQL's
//! `<schema>.ledger`, MySQL's `<schema>.ledger` (with the job's `attempts`
//! rows) and SQLite's `<schema>_ledger`. Rejected rows stay: they are the
//! user's record.

use std::collections::HashSet;
use std::time::Duration;

use ferry_common::errors::DbFailure;

use super::Conn;
use crate::{mysql, postgres, sqlite};

/// What a collection removed from one database's ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    /// Jobs whose ledger rows were removed, in id order.
    pub jobs: Vec<String>,
    /// Ledger rows removed.
    pub rows: u64,
}

impl Collected {
    /// Counts `rows` removed of `job` (a job that kept its rows is not listed).
    pub fn add(&mut self, job: String, rows: u64) {
        if rows > 0 {
            self.jobs.push(job);
            self.rows += rows;
        }
    }
}

/// Removes the ledger rows of every job whose newest row committed more than
/// `older_than` ago and that `keep` does not name, one job at a time; None
/// when the database has no ledger table for `schema` (nothing is created).
/// A job whose chunk commits while it is collected keeps its rows.
pub async fn collect(
    conn: &mut Conn,
    schema: &str,
    older_than: Duration,
    keep: &HashSet<String>,
) -> Result<Option<Collected>, DbFailure> {
    match conn {
        Conn::Postgres(c) => postgres::ledger_gc::collect(c, schema, older_than, keep).await,
        Conn::MySql(c, _) => mysql::ledger_gc::collect(c, schema, older_than, keep).await,
        Conn::Sqlite(c, _) => sqlite::ledger_gc::collect(c, schema, older_than, keep).await,
    }
}

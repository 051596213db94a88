//! Writing typed rows into any target table, in the chunk's transaction:
//! PostgreSQL by binary COPY encoded from the values, MySQL by multi-row
//! INSERT statements within `max_allowed_packet` and 65,535 placeholders,
//! SQLite by multi-row INSERT statements. Each batch runs under a savepoint
//! so a refused row can be isolated (`isolate::write`).

use ferry_common::errors::DbFailure;
use ferry_common::proto::TableRef;

use super::Conn;
use crate::isolate::RowTarget;
use crate::rows::Row;
use crate::{mysql, postgres, sqlite};

/// Where rows go: the table, its columns in row order, and for upserts the
/// key whose existing rows are updated (MySQL, SQLite).
#[derive(Debug, Clone, Copy)]
pub struct TableWrite<'a> {
    /// The table written.
    pub table: &'a TableRef,
    /// Its columns, in the order of the row values.
    pub columns: &'a [&'a str],
    /// The columns' types as the target spells them without modifiers
    /// (PostgreSQL's binary COPY encodes by them).
    pub base_types: &'a [String],
    /// Upsert key columns (MySQL `ON DUPLICATE KEY UPDATE`, SQLite
    /// `ON CONFLICT … DO UPDATE`); empty for plain inserts.
    pub upsert_key: &'a [String],
}

enum How {
    Postgres(postgres::typed::CopyIn),
    MySql(mysql::write::Insert),
    Sqlite(sqlite::write::Insert),
}

/// A target connection ready to take one table's rows.
pub struct Writer<'c> {
    conn: &'c mut Conn,
    how: How,
}

/// The savepoint each batch runs under.
const SAVEPOINT: &str = "ferry_batch";

impl<'c> Writer<'c> {
    /// Prepares writing `w` on `conn` (MySQL reads `max_allowed_packet`).
    pub async fn new(conn: &'c mut Conn, w: &TableWrite<'_>) -> Result<Writer<'c>, DbFailure> {
        let how = match &mut *conn {
            Conn::Postgres(_) => How::Postgres(postgres::typed::CopyIn::new(
                w.table,
                w.columns,
                w.base_types.to_vec(),
            )),
            Conn::MySql(c, _) => {
                let packet = mysql::write::max_allowed_packet(c).await?;
                How::MySql(mysql::write::Insert::new(
                    w.table,
                    w.columns,
                    w.base_types,
                    w.upsert_key,
                    packet,
                ))
            }
            Conn::Sqlite(..) => {
                How::Sqlite(sqlite::write::Insert::new(w.table, w.columns, w.upsert_key))
            }
        };
        Ok(Writer { conn, how })
    }
}

impl RowTarget for Writer<'_> {
    async fn savepoint(&mut self) -> Result<(), DbFailure> {
        self.conn.exec(&format!("SAVEPOINT {SAVEPOINT}")).await
    }

    async fn rollback_to_savepoint(&mut self) -> Result<(), DbFailure> {
        self.conn
            .exec(&format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}"))
            .await
    }

    async fn release_savepoint(&mut self) -> Result<(), DbFailure> {
        self.conn
            .exec(&format!("RELEASE SAVEPOINT {SAVEPOINT}"))
            .await
    }

    async fn insert(&mut self, rows: &[Row]) -> Result<u64, DbFailure> {
        match (&mut *self.conn, &self.how) {
            (Conn::Postgres(c), How::Postgres(copy)) => copy.rows(c, rows).await,
            (Conn::MySql(c, _), How::MySql(insert)) => insert.rows(c, rows).await,
            (Conn::Sqlite(c, _), How::Sqlite(insert)) => insert.rows(c, rows).await,
            _ => Err(DbFailure::permanent(
                "internal error: a writer prepared for one database used on another",
            )),
        }
    }
}

//! One connection to any database Ferry speaks, and the operations the
//! planner, the scheduler and the worker need from every kind: each one
//! dispatches to that database's module. A new database (Oracle) is one
//! more variant here and one more module beside `postgres`, `mysql` and
//! `sqlite`.

pub mod capacity;
pub mod catalog;
pub mod chunk;
pub mod digest;
pub mod history;
pub mod ledger_gc;
pub mod read;
pub mod target;
pub mod write;

use ferry_common::db::{DbRole, OpenGuard};
use ferry_common::errors::DbFailure;
use sqlx::mysql::MySqlConnection;
use sqlx::sqlite::SqliteConnection;
use tokio_postgres::Client;

use crate::kind::DbKind;
use crate::{mysql, postgres, sqlite};

/// An open session on one database.
pub enum Conn {
    /// PostgreSQL (tokio-postgres).
    Postgres(Client),
    /// MySQL or MariaDB (sqlx), counted as open while it lives.
    MySql(Box<MySqlConnection>, OpenGuard),
    /// A SQLite file (sqlx), counted as open while it lives.
    Sqlite(Box<SqliteConnection>, OpenGuard),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conn({})", self.kind().name())
    }
}

impl Conn {
    /// Which database this is.
    pub fn kind(&self) -> DbKind {
        match self {
            Conn::Postgres(_) => DbKind::Postgres,
            Conn::MySql(..) => DbKind::MySql,
            Conn::Sqlite(..) => DbKind::Sqlite,
        }
    }

    /// Whether the session has ended (a PostgreSQL connection closed by the
    /// server; sqlx sessions are checked by their next statement).
    pub fn is_closed(&self) -> bool {
        match self {
            Conn::Postgres(c) => c.is_closed(),
            _ => false,
        }
    }

    /// The PostgreSQL client, when this is PostgreSQL.
    pub fn postgres(&self) -> Option<&Client> {
        match self {
            Conn::Postgres(c) => Some(c),
            _ => None,
        }
    }

    /// Runs statements that return nothing.
    pub async fn exec(&mut self, sql: &str) -> Result<(), DbFailure> {
        match self {
            Conn::Postgres(c) => postgres::session::exec(c, sql).await,
            Conn::MySql(c, _) => mysql::session::exec(c, sql).await,
            Conn::Sqlite(c, _) => sqlite::session::exec(c, sql).await,
        }
    }
}

/// Opens a session on connection `name` (`url`) for `role`, with Ferry's
/// session settings; `tag` names PostgreSQL sessions (`application_name`).
/// Errors name the connection and never its password.
pub async fn open(
    role: DbRole,
    name: &str,
    url: &str,
    tag: Option<&str>,
) -> Result<Conn, DbFailure> {
    match DbKind::of_url(name, url)? {
        DbKind::Postgres => {
            let client = postgres::session::open_as(role, name, url).await?;
            if let Some(tag) = tag {
                postgres::session::tag(&client, tag).await?;
            }
            Ok(Conn::Postgres(client))
        }
        DbKind::MySql => {
            let conn = mysql::session::open(name, url).await?;
            Ok(Conn::MySql(Box::new(conn), OpenGuard::new(name, role)))
        }
        DbKind::Sqlite => {
            let conn = sqlite::session::open(name, url).await?;
            Ok(Conn::Sqlite(Box::new(conn), OpenGuard::new(name, role)))
        }
    }
}

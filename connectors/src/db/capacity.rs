//! How many connections a database server accepts, for the coordinator's
//! connection budget: PostgreSQL's `max_connections` less the slots kept for
//! superusers, MySQL's `max_connections`; SQLite has no limit.

use ferry_common::errors::{classify_pg, DbFailure};

use super::Conn;

/// The connections a server accepts from ordinary users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// `max_connections`.
    pub max_connections: u32,
    /// Slots only superusers may use (`superuser_reserved_connections`; 0 on MySQL,
    /// whose one extra superuser slot is beyond `max_connections`).
    pub reserved: u32,
}

/// The server's capacity, or `None` for a database without a connection
/// limit (SQLite).
pub async fn server_capacity(conn: &mut Conn) -> Result<Option<Capacity>, DbFailure> {
    match conn {
        Conn::Postgres(c) => {
            let row = c
                .query_one(
                    "SELECT current_setting('max_connections')::int4, \
                     current_setting('superuser_reserved_connections')::int4",
                    &[],
                )
                .await
                .map_err(|e| classify_pg(&e).context("cannot read max_connections"))?;
            let max: i32 = row.get(0);
            let reserved: i32 = row.get(1);
            Ok(Some(Capacity {
                max_connections: max.max(0) as u32,
                reserved: reserved.max(0) as u32,
            }))
        }
        Conn::MySql(c, _) => {
            let max: u64 = sqlx::query_scalar("SELECT CAST(@@max_connections AS UNSIGNED)")
                .fetch_one(&mut **c)
                .await
                .map_err(|e| {
                    crate::mysql::errors::classify(&e).context("cannot read max_connections")
                })?;
            Ok(Some(Capacity {
                max_connections: u32::try_from(max).unwrap_or(u32::MAX),
                reserved: 0,
            }))
        }
        Conn::Sqlite(..) => Ok(None),
    }
}

//! Opening PostgreSQL connections with a timeout and without leaking secrets,
//! and counting the connections this process holds open (for metrics).

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::connections::redact;
use crate::errors::{classify_pg, DbFailure, ErrorClass};
use crate::timing::DB_CONNECT_TIMEOUT;

/// What a connection is opened for, as metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DbRole {
    /// A worker reading a chunk.
    Source,
    /// A worker writing a chunk.
    Target,
    /// The coordinator: planning, finalizing, verify, history.
    Planner,
}

impl DbRole {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DbRole::Source => "source",
            DbRole::Target => "target",
            DbRole::Planner => "planner",
        }
    }
}

/// Open connections by (connection name, role).
static OPEN: Mutex<BTreeMap<(String, DbRole), i64>> = Mutex::new(BTreeMap::new());

fn count(label: &str, role: DbRole, delta: i64) {
    let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
    let n = open.entry((label.to_string(), role)).or_insert(0);
    *n += delta;
}

/// Connections this process holds open now, by name and role.
pub fn open_connections() -> Vec<(String, DbRole, i64)> {
    OPEN.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|((name, role), n)| (name.clone(), *role, *n))
        .collect()
}

/// Opens a coordinator-side connection (role planner); see `connect_as`.
pub async fn connect(label: &str, url: &str) -> Result<tokio_postgres::Client, DbFailure> {
    connect_as(DbRole::Planner, label, url).await
}

/// Opens a connection to `url` for `role`, spawning its driver task; errors
/// name the connection (`label`) and never the password. The connection
/// counts as open until its driver task ends.
pub async fn connect_as(
    role: DbRole,
    label: &str,
    url: &str,
) -> Result<tokio_postgres::Client, DbFailure> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| DbFailure {
        class: ErrorClass::Permanent,
        sqlstate: None,
        message: format!(
            "connection '{label}' has an invalid URL ({}): {e}",
            redact(url)
        ),
    })?;
    let fut = config.connect(tokio_postgres::NoTls);
    let (client, connection) = match tokio::time::timeout(DB_CONNECT_TIMEOUT, fut).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            let mut f = classify_pg(&e);
            f.message = format!(
                "cannot connect to '{label}' ({}): {}",
                redact(url),
                f.message
            );
            return Err(f);
        }
        Err(_) => {
            return Err(DbFailure {
                class: ErrorClass::Transient,
                sqlstate: None,
                message: format!(
                    "cannot connect to '{label}' ({}): timed out after {:?}",
                    redact(url),
                    DB_CONNECT_TIMEOUT
                ),
            })
        }
    };
    let name = label.to_ascii_lowercase();
    count(&name, role, 1);
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "database connection closed");
        }
        count(&name, role, -1);
    });
    Ok(client)
}

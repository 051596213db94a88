//! Opening PostgreSQL connections with a timeout and without leaking
//! secrets; TLS as libpq's `sslmode` means it (`pg_tls`); and counting the
//! connections this process holds open (for metrics).

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::connections::redact;
use crate::errors::{classify_pg, DbFailure, ErrorClass};
use crate::pg_tls::{self, Encryption, HandshakeRefusal, OpenError, PgTarget, SslMode};
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

/// Opens a coordinator-side connection (role planner); see `connect_reporting_as`.
pub async fn connect(label: &str, url: &str) -> Result<tokio_postgres::Client, DbFailure> {
    connect_as(DbRole::Planner, label, url).await
}

/// Like `connect`, also saying whether the session is encrypted.
pub async fn connect_reporting(
    label: &str,
    url: &str,
) -> Result<(tokio_postgres::Client, Encryption), DbFailure> {
    connect_reporting_as(DbRole::Planner, label, url).await
}

/// Opens a connection for `role`; see `connect_reporting_as`.
pub async fn connect_as(
    role: DbRole,
    label: &str,
    url: &str,
) -> Result<tokio_postgres::Client, DbFailure> {
    connect_reporting_as(role, label, url)
        .await
        .map(|(client, _)| client)
}

/// Opens a connection to `url` for `role`, spawning its driver task, and
/// says whether it is encrypted; errors name the connection (`label`) and
/// never the password. The connection counts as open until it ends.
pub async fn connect_reporting_as(
    role: DbRole,
    label: &str,
    url: &str,
) -> Result<(tokio_postgres::Client, Encryption), DbFailure> {
    let target = PgTarget::parse(url).map_err(|e| DbFailure {
        class: ErrorClass::Permanent,
        sqlstate: None,
        message: format!(
            "connection '{label}' has an invalid URL ({}): {e}",
            redact(url)
        ),
    })?;
    let mode = target.tls.mode;
    let name = label.to_ascii_lowercase();
    let closed = {
        let name = name.clone();
        move || count(&name, role, -1)
    };
    match tokio::time::timeout(DB_CONNECT_TIMEOUT, pg_tls::open(&target, closed)).await {
        Ok(Ok(pair)) => {
            count(&name, role, 1);
            Ok(pair)
        }
        Ok(Err(OpenError::Tls(e))) => Err(DbFailure {
            class: ErrorClass::Permanent,
            sqlstate: None,
            message: format!("cannot connect to '{label}' ({}): {e}", redact(url)),
        }),
        Ok(Err(OpenError::Postgres(e))) => {
            let mut f = classify_pg(&e);
            let hint = tls_hint(&e, &f, mode, &target);
            if hint.is_some() {
                // a refused certificate or a refused plaintext session does not heal by retrying
                f.class = ErrorClass::Permanent;
            }
            f.message = format!(
                "cannot connect to '{label}' ({}): {}{}",
                redact(url),
                f.message,
                hint.unwrap_or_default()
            );
            Err(f)
        }
        Err(_) => Err(DbFailure {
            class: ErrorClass::Transient,
            sqlstate: None,
            message: format!(
                "cannot connect to '{label}' ({}): timed out after {:?}",
                redact(url),
                DB_CONNECT_TIMEOUT
            ),
        }),
    }
}

/// What to add to a connection error about TLS: a certificate the handshake
/// refused, or a plaintext session the server's pg_hba.conf refused.
fn tls_hint(
    e: &tokio_postgres::Error,
    f: &DbFailure,
    mode: SslMode,
    target: &PgTarget,
) -> Option<String> {
    let hosts: Vec<String> = target
        .config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let host = hosts.join(",");
    match pg_tls::handshake_refusal(e) {
        Some(HandshakeRefusal::WrongHost) => Some(format!(
            " (sslmode={}: the server's certificate is not valid for host '{host}'; connect by a name the certificate lists, or fix the certificate)",
            mode.as_str()
        )),
        Some(HandshakeRefusal::Untrusted) => Some(format!(
            " (sslmode={}: the server's certificate for host '{host}' does not chain to sslrootcert)",
            mode.as_str()
        )),
        // 28000: no pg_hba.conf entry; for a plaintext session, the server may want TLS
        None if mode == SslMode::Disable && f.sqlstate.as_deref() == Some("28000") => Some(
            " (sslmode=disable: this connection was not encrypted, and the server refused it; it may accept only TLS: use sslmode=require or verify-full)".into(),
        ),
        None => None,
    }
}

//! Opening PostgreSQL connections with a timeout and without leaking secrets.

use crate::connections::redact;
use crate::errors::{classify_pg, DbFailure, ErrorClass};
use crate::timing::DB_CONNECT_TIMEOUT;

/// Opens a connection to `url`, spawning its driver task; errors name the
/// connection (`label`) and never the password.
pub async fn connect(label: &str, url: &str) -> Result<tokio_postgres::Client, DbFailure> {
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
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "database connection closed");
        }
    });
    Ok(client)
}

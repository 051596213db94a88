//! Opening a PostgreSQL session the way every Ferry statement expects it:
//! text forms of dates, intervals and floats that read back exactly on any
//! other session (a chunk's bounds are read on one server and applied on
//! another; rows isolated as text are read from one and written to another).

use ferry_common::db;
use ferry_common::errors::{classify_pg, DbFailure};
use ferry_common::pg_tls::Encryption;
use tokio_postgres::Client;

/// Settings of every Ferry session: ISO dates (day and month never swap
/// between servers with different defaults), PostgreSQL-style intervals, and
/// floats printed with enough digits to read back exactly.
const SESSION_SETTINGS: &str =
    "SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 3";

/// Opens a session on connection `name` (`url`, with libpq's `sslmode`
/// and friends); errors name the connection and never its password.
pub async fn open(name: &str, url: &str) -> Result<Client, DbFailure> {
    Ok(open_reporting(name, url).await?.0)
}

/// Like `open`, also saying whether the session is encrypted.
pub async fn open_reporting(name: &str, url: &str) -> Result<(Client, Encryption), DbFailure> {
    let (client, encryption) = db::connect_reporting(name, url).await?;
    client
        .batch_execute(SESSION_SETTINGS)
        .await
        .map_err(|e| classify_pg(&e).context(format!("cannot set up a session on '{name}'")))?;
    Ok((client, encryption))
}

/// Runs statements that return nothing.
pub async fn exec(client: &Client, sql: &str) -> Result<(), DbFailure> {
    client.batch_execute(sql).await.map_err(|e| classify_pg(&e))
}

/// Maps a driver error to a failure with `context` in front.
pub fn failed(context: &str, e: &tokio_postgres::Error) -> DbFailure {
    classify_pg(e).context(context)
}

/// Names the session (`application_name`), so operators and Ferry itself can
/// tell its sessions apart in `pg_stat_activity`.
pub async fn tag(client: &Client, name: &str) -> Result<(), DbFailure> {
    client
        .execute("SELECT set_config('application_name', $1, false)", &[&name])
        .await
        .map_err(|e| classify_pg(&e))?;
    Ok(())
}

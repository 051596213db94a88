//! A new SQLite file for unit tests, in the system's temporary directory.

use std::path::PathBuf;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::ConnectOptions;

use super::session::exec;

/// Creates `ferry-<name>-<pid>.db` afresh, runs `setup` in it and returns
/// its path and an sqlx connection to it.
pub async fn file(name: &str, setup: &str) -> (PathBuf, SqliteConnection) {
    let path = std::env::temp_dir().join(format!("ferry-{name}-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut conn = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .connect()
        .await
        .expect("a new SQLite file");
    exec(&mut conn, setup).await.expect("setup");
    (path, conn)
}

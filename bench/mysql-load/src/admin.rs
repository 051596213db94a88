//! Untimed work around each run: creating and emptying the tables, letting
//! InnoDB flush the previous run's dirty pages, checking the result, and
//! reading CPU times.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::data::{CHECKSUM_SQL, ITEMS_DDL};

/// Creates `items` and Ferry's ledger table (as `connectors/src/mysql/ledger.rs` does).
pub async fn create(conn: &mut Conn) -> Result<()> {
    conn.query_drop("DROP TABLE IF EXISTS items").await?;
    conn.query_drop(ITEMS_DDL).await?;
    conn.query_drop("CREATE DATABASE IF NOT EXISTS ferry").await?;
    conn.query_drop(
        "CREATE TABLE IF NOT EXISTS ferry.ledger (
             job_id varchar(64) NOT NULL, chunk_no int NOT NULL, attempt int NOT NULL,
             fencing_token bigint NOT NULL, worker varchar(128) NOT NULL,
             rows_written bigint NOT NULL DEFAULT 0, rows_rejected bigint NOT NULL DEFAULT 0,
             committed_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
             PRIMARY KEY (job_id, chunk_no)) ENGINE=InnoDB",
    )
    .await?;
    Ok(())
}

/// Empties `items` and the ledger.
pub async fn truncate(conn: &mut Conn) -> Result<()> {
    conn.query_drop("TRUNCATE TABLE items").await?;
    conn.query_drop("TRUNCATE TABLE ferry.ledger").await?;
    Ok(())
}

async fn dirty_pages(conn: &mut Conn) -> Result<u64> {
    let v: Option<(String, u64)> = conn
        .query_first("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")
        .await?;
    Ok(v.map(|(_, n)| n).unwrap_or(0))
}

/// Lets InnoDB flush dirty pages (at most `limit`), so a run does not pay
/// for the previous run's writes; returns the dirty pages left.
pub async fn quiesce(conn: &mut Conn, limit: Duration) -> Result<u64> {
    let before: Option<f64> = conn
        .query_first("SELECT @@GLOBAL.innodb_max_dirty_pages_pct")
        .await?;
    conn.query_drop("SET GLOBAL innodb_max_dirty_pages_pct = 0")
        .await?;
    let deadline = Instant::now() + limit;
    let mut left = dirty_pages(conn).await?;
    while left > 64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        left = dirty_pages(conn).await?;
    }
    conn.query_drop(format!(
        "SET GLOBAL innodb_max_dirty_pages_pct = {}",
        before.unwrap_or(90.0)
    ))
    .await?;
    Ok(left)
}

/// Checks that `items` holds exactly the expected rows and the ledger one row per chunk.
pub async fn verify(conn: &mut Conn, expected: (u64, u64), chunks: u64) -> Result<()> {
    let got: Option<(u64, String)> = conn.query_first(CHECKSUM_SQL).await?;
    let Some((count, sum)) = got else {
        bail!("checksum query returned nothing")
    };
    if (count, sum.as_str()) != (expected.0, expected.1.to_string().as_str()) {
        bail!(
            "items has count {count} checksum {sum}, expected {} and {}",
            expected.0,
            expected.1
        );
    }
    let ledger: Option<u64> = conn.query_first("SELECT COUNT(*) FROM ferry.ledger").await?;
    if ledger != Some(chunks) {
        bail!("ledger has {ledger:?} rows, expected {chunks}");
    }
    Ok(())
}

/// One global integer variable.
pub async fn variable(conn: &mut Conn, name: &str) -> Result<String> {
    let v: Option<String> = conn
        .query_first(format!("SELECT CAST(@@GLOBAL.{name} AS CHAR)"))
        .await?;
    Ok(v.unwrap_or_default())
}

/// CPU seconds (user + system) of a process, from `/proc/PID/stat`.
pub fn process_cpu(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // fields after the command name (which is in parentheses and may hold spaces)
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return f64::NAN;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(f64::NAN);
    // utime and stime are fields 14 and 15 of stat: indexes 11 and 12 after the name
    // SAFETY: sysconf only reads a configuration value
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// CPU seconds of this process and of its waited-for children.
pub fn own_cpu() -> (f64, f64) {
    let get = |who| {
        // SAFETY: rusage is plain data (all-zero is valid); getrusage writes into it
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
        t(u.ru_utime) + t(u.ru_stime)
    };
    (get(libc::RUSAGE_SELF), get(libc::RUSAGE_CHILDREN))
}

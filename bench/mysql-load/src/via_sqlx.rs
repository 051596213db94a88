//! Method (a): sqlx 0.9 multi-row prepared `INSERT … VALUES (?,…),(?,…)`,
//! built and bound as `connectors/src/mysql/write.rs` does it, on a session
//! set up as `connectors/src/mysql/session.rs` sets it up.

use anyhow::{bail, Context, Result};
use sqlx::mysql::{MySqlArguments, MySqlConnectOptions, MySqlConnection, MySqlSslMode};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Connection, Executor, MySql};

use crate::data::{Row, Value, COLUMNS};
use crate::Server;

/// Most placeholders in one MySQL statement.
pub const MAX_PLACEHOLDERS: usize = 65_535;

/// Ferry's session settings (strict mode for every table).
pub const SESSION_SETTINGS: &str =
    "SET SESSION sql_mode = CONCAT_WS(',', @@SESSION.sql_mode, 'STRICT_ALL_TABLES')";

/// The ledger claim every chunk's transaction starts with.
pub const LEDGER_SQL: &str = "INSERT INTO ferry.ledger (job_id, chunk_no, attempt, fencing_token, \
    worker) VALUES (?, ?, 1, 1, 'bench')";

/// Opens a session as Ferry's MySQL connector opens one (plaintext TCP).
pub async fn connect(server: &Server) -> Result<MySqlConnection> {
    let opts = MySqlConnectOptions::new()
        .host("127.0.0.1")
        .port(server.port)
        .username(&server.user)
        .password(&server.password)
        .database(&server.database)
        .ssl_mode(MySqlSslMode::Disabled)
        .pipes_as_concat(false)
        .timezone(Some("+00:00".to_string()));
    let mut conn = MySqlConnection::connect_with(&opts)
        .await
        .context("sqlx connect")?;
    conn.execute(SESSION_SETTINGS).await?;
    Ok(conn)
}

/// Binds one value as Ferry's `bind_value` does.
pub fn bind_value<'q>(
    q: Query<'q, MySql, MySqlArguments>,
    v: &Value,
) -> Query<'q, MySql, MySqlArguments> {
    match v {
        Value::Null => q.bind(Option::<String>::None),
        Value::Int(i) => q.bind(*i),
        Value::Decimal(t) | Value::Text(t) => q.bind(t.clone()),
        Value::Timestamp(t) => q.bind(*t),
    }
}

fn value_size(v: &Value) -> usize {
    match v {
        Value::Text(t) | Value::Decimal(t) => t.len() + 8,
        _ => 16,
    }
}

/// Inserts `rows` in statements of at most `batch` rows (and at most 65,535
/// placeholders and half of `max_allowed_packet` bytes of values).
pub async fn insert(
    conn: &mut MySqlConnection,
    rows: &[Row],
    batch: usize,
    max_allowed_packet: usize,
) -> Result<u64> {
    let head = format!("INSERT INTO items ({}) VALUES ", COLUMNS.join(", "));
    let one = format!("({})", vec!["?"; COLUMNS.len()].join(", "));
    let per_statement = batch.min(MAX_PLACEHOLDERS / COLUMNS.len()).max(1);
    let max_bytes = (max_allowed_packet / 2).max(64 * 1024);
    let mut done = 0u64;
    let mut start = 0;
    while start < rows.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < rows.len() && end - start < per_statement {
            let size: usize = rows[end].iter().map(value_size).sum();
            if end > start && bytes + size > max_bytes {
                break;
            }
            bytes += size;
            end += 1;
        }
        let mut sql = String::with_capacity(head.len() + (end - start) * (one.len() + 2));
        sql.push_str(&head);
        for i in start..end {
            if i > start {
                sql.push_str(", ");
            }
            sql.push_str(&one);
        }
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for row in &rows[start..end] {
            for v in row {
                q = bind_value(q, v);
            }
        }
        let got = q.execute(&mut *conn).await?.rows_affected();
        if got != (end - start) as u64 {
            bail!("insert affected {got} rows, expected {}", end - start);
        }
        done += got;
        start = end;
    }
    Ok(done)
}

/// Writes every chunk in its own transaction: claim the ledger row, insert
/// the chunk's rows, commit.
pub async fn run(
    conn: &mut MySqlConnection,
    job: &str,
    rows: &[Row],
    chunk: usize,
    batch: usize,
    max_allowed_packet: usize,
) -> Result<u64> {
    let mut total = 0;
    for (n, part) in rows.chunks(chunk).enumerate() {
        conn.execute("START TRANSACTION").await?;
        sqlx::query(LEDGER_SQL)
            .bind(job)
            .bind(n as i32)
            .execute(&mut *conn)
            .await?;
        total += insert(conn, part, batch, max_allowed_packet).await?;
        conn.execute("COMMIT").await?;
    }
    Ok(total)
}

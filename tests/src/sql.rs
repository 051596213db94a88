//! Small SQL helpers for tests: run statements, read one number, look up a
//! table, wait for Ferry's sessions to leave their transactions.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

/// Runs `sql` (one or more statements) and panics with it on error.
pub async fn exec(client: &Client, sql: &str) {
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// One `i64` from a query returning one row and one column.
pub async fn query_i64(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// True when table `schema.name` exists in `client`'s database.
pub async fn table_exists(client: &Client, schema: &str, name: &str) -> bool {
    client
        .query_one(
            "SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL",
            &[&schema, &name],
        )
        .await
        .unwrap_or_else(|e| panic!("looking up {schema}.{name}: {e}"))
        .get(0)
}

/// Ferry sessions (`application_name` `ferry:…`) on database `db` that are
/// inside a transaction now.
pub async fn open_ferry_transactions(client: &Client, db: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name LIKE 'ferry:%' AND xact_start IS NOT NULL",
            &[&db],
        )
        .await
        .unwrap_or_else(|e| panic!("reading pg_stat_activity: {e}"))
        .get(0)
}

/// Waits up to `timeout` until no Ferry session on `db` is inside a
/// transaction; returns how many still are (0 when they all left).
pub async fn wait_no_open_ferry_transactions(client: &Client, db: &str, timeout: Duration) -> i64 {
    let deadline = Instant::now() + timeout;
    loop {
        let open = open_ferry_transactions(client, db).await;
        if open == 0 || Instant::now() >= deadline {
            return open;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

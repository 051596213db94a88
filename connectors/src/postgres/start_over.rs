//! Starting a job over in a PostgreSQL target: its table emptied and its
//! ledger and rejects rows forgotten in one transaction, so every chunk is
//! copied again (a job split on `ctid` block ranges whose source snapshot
//! was lost: rows read under two snapshots could land twice or not at all).

use ferry_common::errors::{classify_pg, DbFailure};
use ferry_common::proto::TableRef;
use tokio_postgres::Client;

use super::session::exec;
use super::sql::{quote_ident, quote_table};

/// Empties `table` and removes job `job_id`'s ledger and rejects rows, in
/// one transaction. `TRUNCATE` waits for chunk transactions still writing
/// the table; the ledger rows they committed meanwhile are removed too.
pub async fn start_over(
    target: &Client,
    table: &TableRef,
    ledger_schema: &str,
    job_id: &str,
) -> Result<(), DbFailure> {
    let s = quote_ident(ledger_schema);
    exec(target, &format!("BEGIN; TRUNCATE {}", quote_table(table)))
        .await
        .map_err(|f| f.context("cannot empty the target table to start over"))?;
    for sql in [
        format!("DELETE FROM {s}.ledger WHERE job_id = $1"),
        format!("DELETE FROM {s}.rejects WHERE job_id = $1"),
    ] {
        if let Err(e) = target.execute(&sql, &[&job_id]).await {
            let _ = exec(target, "ROLLBACK").await;
            return Err(
                classify_pg(&e).context("cannot forget the job's ledger rows to start over")
            );
        }
    }
    exec(target, "COMMIT").await
}

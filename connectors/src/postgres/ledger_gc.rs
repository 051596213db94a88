//! Removing the ledger rows of jobs long finished (`ferry gc`, and the
//! leader on a schedule): a job's rows leave once its newest row is older
//! than the retention, unless the caller still holds the job. A ledger row
//! only matters while its chunk may run again (a worker that died between
//! commit and report, a resume, a repair): that is, while the coordinator
//! holds the job.

use std::collections::HashSet;
use std::time::Duration;

use ferry_common::errors::DbFailure;
use tokio_postgres::Client;

use super::session::failed;
use super::sql::quote_ident;
pub use crate::db::ledger_gc::Collected;

/// Removes the ledger rows of every job whose newest row committed more than
/// `older_than` ago and that `keep` does not name, one job per statement;
/// None when the database has no ledger table in `schema` (nothing is
/// created). A job whose chunk commits while it is collected keeps its rows.
pub async fn collect(
    client: &Client,
    schema: &str,
    older_than: Duration,
    keep: &HashSet<String>,
) -> Result<Option<Collected>, DbFailure> {
    let ledger = format!("{}.ledger", quote_ident(schema));
    let present: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&ledger])
        .await
        .map_err(|e| failed("cannot look up the ledger table", &e))?
        .get(0);
    if !present {
        return Ok(None);
    }
    let secs = older_than.as_secs_f64();
    let old = client
        .query(
            &format!(
                "SELECT job_id FROM {ledger} GROUP BY job_id
                 HAVING max(committed_at) < now() - make_interval(secs => $1)
                 ORDER BY job_id"
            ),
            &[&secs],
        )
        .await
        .map_err(|e| failed("cannot list the ledger's old jobs", &e))?;
    let delete = format!(
        "DELETE FROM {ledger} WHERE job_id = $1 AND NOT EXISTS (
             SELECT 1 FROM {ledger} WHERE job_id = $1
             AND committed_at >= now() - make_interval(secs => $2))"
    );
    let mut out = Collected::default();
    for row in old {
        let job: String = row.get(0);
        if keep.contains(&job) {
            continue;
        }
        let removed = client
            .execute(&delete, &[&job, &secs])
            .await
            .map_err(|e| failed(&format!("cannot remove job {job}'s ledger rows"), &e))?;
        out.add(job, removed);
    }
    Ok(Some(out))
}

//! Removing the ledger rows of jobs long finished from a SQLite target file
//! (`ferry gc`, and the leader on a schedule): a job's `<schema>_ledger`
//! rows leave once its newest row is older than the retention, unless the
//! caller still holds the job; its `<schema>_rejects` rows stay. Ages
//! compare the ledger's UTC text timestamps with SQLite's own clock, in the
//! same `strftime` form.

use std::collections::HashSet;
use std::time::Duration;

use ferry_common::errors::DbFailure;
use sqlx::sqlite::SqliteConnection;
use sqlx::AssertSqlSafe;

use super::errors::classify;
use super::ledger::table;
use super::session::{exec, has_table};
use crate::db::ledger_gc::Collected;

/// Removes the ledger rows of every job whose newest row committed more than
/// `older_than` ago and that `keep` does not name, one write transaction per
/// job; None when the file has no ledger table for `schema` (nothing is
/// created). A job whose chunk commits while it is collected keeps its rows.
pub async fn collect(
    conn: &mut SqliteConnection,
    schema: &str,
    older_than: Duration,
    keep: &HashSet<String>,
) -> Result<Option<Collected>, DbFailure> {
    if !has_table(conn, &format!("{schema}_ledger"), "the ledger table").await? {
        return Ok(None);
    }
    let ledger = table(schema, "ledger");
    let ago = modifier(older_than);
    let old: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT job_id FROM {ledger} GROUP BY job_id
          HAVING max(committed_at) < strftime('%Y-%m-%d %H:%M:%f', 'now', ?1) ORDER BY job_id"
    )))
    .bind(&ago)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| classify(&e).context("cannot list the ledger's old jobs"))?;
    let delete = format!(
        "DELETE FROM {ledger} WHERE job_id = ?1 AND NOT EXISTS (
             SELECT 1 FROM {ledger} WHERE job_id = ?1
             AND committed_at >= strftime('%Y-%m-%d %H:%M:%f', 'now', ?2))"
    );
    let mut out = Collected::default();
    for job in old {
        if keep.contains(&job) {
            continue;
        }
        let removed = remove_job(conn, &delete, &job, &ago)
            .await
            .map_err(|f| f.context(format!("cannot remove job {job}'s ledger rows")))?;
        out.add(job, removed);
    }
    Ok(Some(out))
}

/// The `strftime` modifier going `older_than` back (`-2592000.000000 seconds`).
fn modifier(older_than: Duration) -> String {
    format!("-{:.6} seconds", older_than.as_secs_f64())
}

/// Runs `delete` for one job under the file's write lock (`BEGIN IMMEDIATE`);
/// the rows removed.
async fn remove_job(
    conn: &mut SqliteConnection,
    delete: &str,
    job: &str,
    ago: &str,
) -> Result<u64, DbFailure> {
    exec(conn, "BEGIN IMMEDIATE").await?;
    let done = sqlx::query(AssertSqlSafe(delete.to_string()))
        .bind(job)
        .bind(ago)
        .execute(&mut *conn)
        .await;
    let committed = match done {
        Ok(d) => exec(conn, "COMMIT").await.map(|()| d.rows_affected()),
        Err(e) => Err(classify(&e)),
    };
    if committed.is_err() {
        let _ = exec(conn, "ROLLBACK").await;
    }
    committed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modifier_counts_back_in_seconds() {
        assert_eq!(
            modifier(Duration::from_secs(30 * 86_400)),
            "-2592000.000000 seconds"
        );
        assert_eq!(modifier(Duration::from_millis(1_500)), "-1.500000 seconds");
    }
}

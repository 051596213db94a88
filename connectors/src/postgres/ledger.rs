//! The target-side ledger: one row per committed chunk, the truth about what
//! landed. A chunk's transaction claims its row first, so a chunk commits at
//! most once whatever the workers do; Ferry's tables are created race-free.

use ferry_common::errors::{classify_pg, DbFailure, ErrorClass};
use ferry_common::ledger::application_name;
use ferry_common::timing::LEDGER_CLAIM_LOCK_TIMEOUT;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Client;

use super::session::{exec, failed};
use super::sql::quote_ident;

/// How many times a blocked claim terminates older attempts and tries again.
const CLAIM_TRIES: usize = 4;

/// SQLSTATEs of a DDL statement that lost a race with an identical one
/// (duplicate schema, table or object, or the catalog's unique index):
/// the object exists now, so the step is retried, never a permanent failure.
const DDL_RACE: &[&str] = &["42P06", "42P07", "42710", "23505"];

/// A stable 64-bit key for an advisory lock on `what` (FNV-1a).
fn advisory_key(what: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in what.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// Runs `ddl` (idempotent `IF NOT EXISTS` statements) once per database at a
/// time: under a transaction-scoped advisory lock on `lock`, so concurrent
/// jobs do not race on PostgreSQL's catalog, and again once when another
/// process raced it anyway.
pub async fn create_once(target: &Client, lock: &str, ddl: &str) -> Result<(), DbFailure> {
    let key = advisory_key(lock);
    let mut last = None;
    for _ in 0..2 {
        exec(target, "BEGIN").await?;
        let run = async {
            target
                .execute("SELECT pg_advisory_xact_lock($1)", &[&key])
                .await
                .map_err(|e| classify_pg(&e))?;
            exec(target, ddl).await?;
            exec(target, "COMMIT").await
        }
        .await;
        match run {
            Ok(()) => return Ok(()),
            Err(f) => {
                let _ = exec(target, "ROLLBACK").await;
                if !DDL_RACE.iter().any(|c| f.is_sqlstate(c)) {
                    return Err(f);
                }
                last = Some(f);
            }
        }
    }
    let f = last.unwrap_or_else(|| DbFailure::transient("DDL raced"));
    Err(DbFailure {
        class: ErrorClass::Transient,
        ..f
    })
}

/// Creates the ledger and rejects tables in `schema` when missing.
pub async fn ensure(target: &Client, schema: &str) -> Result<(), DbFailure> {
    let s = quote_ident(schema);
    let present: bool = target
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL",
            &[&format!("{s}.ledger"), &format!("{s}.rejects")],
        )
        .await
        .map_err(|e| failed("cannot look up the ledger table", &e))?
        .get(0);
    if present {
        return Ok(());
    }
    let ddl = format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.ledger (
             job_id text NOT NULL,
             chunk_no integer NOT NULL,
             attempt integer NOT NULL,
             fencing_token bigint NOT NULL,
             worker text NOT NULL,
             rows_written bigint NOT NULL DEFAULT 0,
             rows_rejected bigint NOT NULL DEFAULT 0,
             committed_at timestamptz NOT NULL DEFAULT now(),
             PRIMARY KEY (job_id, chunk_no)
         );
         CREATE TABLE IF NOT EXISTS {s}.rejects (
             id bigserial PRIMARY KEY,
             job_id text NOT NULL,
             chunk_no integer NOT NULL,
             key text,
             row_text text NOT NULL,
             sqlstate text NOT NULL,
             message text NOT NULL,
             rejected_at timestamptz NOT NULL DEFAULT now()
         );
         CREATE INDEX IF NOT EXISTS rejects_job_idx ON {s}.rejects (job_id, chunk_no);"
    );
    create_once(target, &format!("ferry:ledger:{schema}"), &ddl)
        .await
        .map_err(|f| f.context(format!("cannot create the ledger table {s}.ledger")))
}

/// One attempt of one chunk, as the ledger records it.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    /// Schema of the ledger table, exact spelling.
    pub ledger_schema: &'a str,
    /// Job id.
    pub job_id: &'a str,
    /// Chunk number.
    pub chunk_no: u32,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Fencing token of the attempt's lease.
    pub token: u64,
    /// Worker id.
    pub worker: &'a str,
    /// A repair: the attempt replaces the chunk's earlier ledger row.
    pub repair: bool,
}

/// The result of claiming a chunk's ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The row is ours, inside an open transaction: copy, then commit.
    Claimed,
    /// An earlier attempt committed the chunk; the transaction is rolled back.
    AlreadyCommitted {
        /// Rows it landed.
        rows_written: u64,
        /// Rows it rejected.
        rows_rejected: u64,
    },
}

impl Attempt<'_> {
    fn ledger(&self) -> String {
        format!("{}.ledger", quote_ident(self.ledger_schema))
    }

    /// Opens the chunk's transaction and claims its ledger row. When another
    /// attempt holds the claim (a frozen zombie), terminates the sessions of
    /// *older* attempts of this chunk and claims again.
    ///
    /// One round trip: naming the session, opening the transaction, the
    /// claim and lifting the claim's lock timeout are pipelined (statements
    /// with bound values go as unnamed statements of known types, no prepare
    /// round trip); a failed step fails the ones after it, which are then
    /// rolled back together.
    pub async fn claim(&self, target: &Client) -> Result<Claim, DbFailure> {
        let app = application_name(self.job_id, self.chunk_no, self.attempt);
        let begin = format!(
            "BEGIN; SET LOCAL lock_timeout = '{}ms'",
            LEDGER_CLAIM_LOCK_TIMEOUT.as_millis()
        );
        // A repair replaces the chunk's earlier ledger row; a newer attempt's row wins.
        let on_conflict = if self.repair {
            format!(
                "DO UPDATE SET attempt = EXCLUDED.attempt, fencing_token = EXCLUDED.fencing_token, worker = EXCLUDED.worker
                 WHERE {}.fencing_token < EXCLUDED.fencing_token",
                self.ledger()
            )
        } else {
            "DO NOTHING".to_string()
        };
        let insert = format!(
            "INSERT INTO {} (job_id, chunk_no, attempt, fencing_token, worker) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (job_id, chunk_no) {on_conflict} RETURNING 1",
            self.ledger()
        );
        let chunk_no = self.chunk_no as i32;
        let attempt = self.attempt as i32;
        let token = self.token as i64;
        let claim_params: [(&(dyn ToSql + Sync), Type); 5] = [
            (&self.job_id, Type::TEXT),
            (&chunk_no, Type::INT4),
            (&attempt, Type::INT4),
            (&token, Type::INT8),
            (&self.worker, Type::TEXT),
        ];
        let name_params: [(&(dyn ToSql + Sync), Type); 1] = [(&app, Type::TEXT)];
        for _ in 0..CLAIM_TRIES {
            let (named, begun, claimed, unlocked) = futures::join!(
                target.query_typed(
                    "SELECT set_config('application_name', $1, false)",
                    &name_params
                ),
                exec(target, &begin),
                target.query_typed(&insert, &claim_params),
                exec(target, "SET LOCAL lock_timeout = 0"),
            );
            if let Err(f) = named.map_err(|e| classify_pg(&e)).and(begun) {
                let _ = exec(target, "ROLLBACK").await;
                return Err(f);
            }
            match claimed {
                Ok(rows) if !rows.is_empty() => {
                    if let Err(f) = unlocked {
                        let _ = exec(target, "ROLLBACK").await;
                        return Err(f);
                    }
                    return Ok(Claim::Claimed);
                }
                Ok(_) => {
                    let row = target
                        .query_one(
                            &format!(
                                "SELECT rows_written, rows_rejected FROM {} WHERE job_id = $1 AND chunk_no = $2",
                                self.ledger()
                            ),
                            &[&self.job_id, &chunk_no],
                        )
                        .await
                        .map_err(|e| classify_pg(&e))?;
                    let _ = exec(target, "ROLLBACK").await;
                    return Ok(Claim::AlreadyCommitted {
                        rows_written: row.get::<_, i64>(0).max(0) as u64,
                        rows_rejected: row.get::<_, i64>(1).max(0) as u64,
                    });
                }
                Err(e) => {
                    let f = classify_pg(&e);
                    let _ = exec(target, "ROLLBACK").await;
                    if !f.is_sqlstate("55P03") {
                        return Err(f);
                    }
                    let killed = self.terminate_older(target).await?;
                    tracing::warn!(job = %self.job_id, chunk = self.chunk_no, attempt = self.attempt, killed, "ledger claim blocked by another attempt; terminated older attempts");
                }
            }
        }
        Err(DbFailure {
            class: ErrorClass::Transient,
            sqlstate: Some("55P03".into()),
            message: format!(
                "ledger claim of chunk {} stayed blocked by another attempt",
                self.chunk_no
            ),
        })
    }

    /// Terminates target sessions of older attempts of this very chunk that
    /// are inside a transaction: sessions are matched by their exact
    /// `application_name`, so no other job's, chunk's or program's session
    /// can be hit, whatever names other sessions carry.
    async fn terminate_older(&self, target: &Client) -> Result<i64, DbFailure> {
        let older: Vec<String> = (1..self.attempt)
            .map(|a| application_name(self.job_id, self.chunk_no, a))
            .collect();
        if older.is_empty() {
            return Ok(0);
        }
        let row = target
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                  WHERE application_name = ANY($1) AND datname = current_database()
                    AND pid <> pg_backend_pid() AND xact_start IS NOT NULL",
                &[&older],
            )
            .await
            .map_err(|e| classify_pg(&e))?;
        Ok(row.get(0))
    }

    /// Records the chunk's final counts in its (claimed) ledger row.
    pub async fn record_counts(
        &self,
        target: &Client,
        rows_written: u64,
        rows_rejected: u64,
    ) -> Result<(), DbFailure> {
        // an unnamed statement of known types: one round trip, no prepare
        target
            .query_typed(
                &format!(
                    "UPDATE {} SET rows_written = $3, rows_rejected = $4, committed_at = now() WHERE job_id = $1 AND chunk_no = $2",
                    self.ledger()
                ),
                &[
                    (&self.job_id, Type::TEXT),
                    (&(self.chunk_no as i32), Type::INT4),
                    (&(rows_written as i64), Type::INT8),
                    (&(rows_rejected as i64), Type::INT8),
                ],
            )
            .await
            .map_err(|e| classify_pg(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::advisory_key;

    #[test]
    fn advisory_keys_are_stable_and_distinct() {
        assert_eq!(
            advisory_key("ferry:ledger:ferry"),
            advisory_key("ferry:ledger:ferry")
        );
        assert_ne!(
            advisory_key("ferry:ledger:ferry"),
            advisory_key("ferry:ledger:other")
        );
    }
}

//! Helpers for the issue 5 end-to-end tests: rejected rows, verify/repair,
//! resume, write modes and type differences.
//!
//! Parsers here read the CLI's and the coordinator's output the way an
//! operator would: `Chunk N completed: R rows, S successful, F failed`,
//! `ferry verify` lines, `ferry rejects` lines.

use std::time::Duration;

use tokio_postgres::Client;

use crate::ferry::{run_cli, start_coordinator, start_worker, CliOutput, FerryProcess};
use crate::job::{job_id, submit_args, CLI_TIMEOUT};
use crate::scenario::Databases;

/// Timeout for `verify`, `repair`, `resume` and `submit --watch` in these tests.
pub const LONG_CLI_TIMEOUT: Duration = Duration::from_secs(120);

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

/// A coordinator and workers as real processes over the databases of `dbs`.
pub struct Ferry {
    /// The coordinator process.
    pub coordinator: FerryProcess,
    /// Its URL.
    pub url: String,
    /// The workers.
    pub workers: Vec<FerryProcess>,
    /// The connection environment (`FERRY_CONN_SRC`, `FERRY_CONN_DST`).
    pub env: Vec<(String, String)>,
}

impl Ferry {
    /// Starts a coordinator (with `coordinator_args`) and `workers` workers of
    /// `concurrency` each.
    pub fn start(
        dbs: &Databases,
        coordinator_args: &[&str],
        workers: usize,
        concurrency: usize,
    ) -> Self {
        let env = dbs.conn_env();
        let (coordinator, url) = start_coordinator(coordinator_args, &env);
        let workers = (0..workers)
            .map(|_| start_worker(&url, concurrency, &env))
            .collect();
        Ferry {
            coordinator,
            url,
            workers,
            env,
        }
    }

    /// `ferry submit` from `src` to `dst` without `--watch`; returns the job id.
    pub fn submit(&self, query: &str, table: &str, extra: &[&str]) -> String {
        job_id(&run_cli(
            &submit_args(&self.url, query, table, extra),
            &self.env,
            CLI_TIMEOUT,
        ))
    }

    /// `ferry submit … --watch`; the caller checks how it exited.
    pub fn submit_watch(&self, query: &str, table: &str, extra: &[&str]) -> CliOutput {
        let mut extra = extra.to_vec();
        extra.push("--watch");
        run_cli(
            &submit_args(&self.url, query, table, &extra),
            &self.env,
            LONG_CLI_TIMEOUT,
        )
    }

    /// `ferry VERB JOB --coordinator URL EXTRA…`.
    pub fn verb(&self, verb: &str, job: &str, extra: &[&str], timeout: Duration) -> CliOutput {
        let mut args = vec![verb, job, "--coordinator", self.url.as_str()];
        args.extend_from_slice(extra);
        run_cli(&args, &self.env, timeout)
    }

    /// The coordinator's log lines that mention `job` (its `job=` field).
    pub fn job_log(&self, job: &str) -> Vec<String> {
        let tag = format!("job={job}");
        self.coordinator
            .log()
            .lines()
            .filter(|l| l.contains(&tag))
            .map(str::to_string)
            .collect()
    }
}

/// Parses a number with thousands separators (`999,920`).
pub fn parse_grouped(text: &str) -> Option<u64> {
    text.trim().replace(',', "").parse().ok()
}

/// `(chunk, rows, successful, failed)` of a coordinator line
/// `Chunk N completed: R rows, S successful, F failed`.
pub fn parse_chunk_completed(line: &str) -> Option<(u32, u64, u64, u64)> {
    let rest = line.split_once("Chunk ")?.1;
    let (chunk, rest) = rest.split_once(" completed: ")?;
    let (rows, rest) = rest.split_once(" rows, ")?;
    let (ok, rest) = rest.split_once(" successful, ")?;
    let failed = rest.split(" failed").next()?;
    Some((
        chunk.trim().parse().ok()?,
        parse_grouped(rows)?,
        parse_grouped(ok)?,
        parse_grouped(failed)?,
    ))
}

/// One `ferry verify` line
/// `chunk C differs: source a rows, target b rows, r rejected (k in [lo, hi))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyDiff {
    /// Chunk number.
    pub chunk: u32,
    /// Rows in the source's range.
    pub source_rows: u64,
    /// Rows in the target's range.
    pub target_rows: u64,
    /// Rows the chunk rejected.
    pub rejected: u64,
    /// Inclusive lower bound (None: open).
    pub lo: Option<i64>,
    /// Exclusive upper bound (None: open).
    pub hi: Option<i64>,
    /// The line as printed.
    pub line: String,
}

impl VerifyDiff {
    /// True when integer key `k` lies in the chunk's range.
    pub fn contains(&self, k: i64) -> bool {
        self.lo.is_none_or(|lo| k >= lo) && self.hi.is_none_or(|hi| k < hi)
    }
}

/// Parses the `chunk C differs: …` lines of `ferry verify` output (integer keys).
pub fn parse_verify(stdout: &str) -> Vec<VerifyDiff> {
    stdout
        .lines()
        .filter(|l| l.starts_with("chunk ") && l.contains(" differs: "))
        .map(|l| parse_verify_line(l).unwrap_or_else(|| panic!("cannot parse verify line {l:?}")))
        .collect()
}

fn parse_verify_line(line: &str) -> Option<VerifyDiff> {
    let rest = line.strip_prefix("chunk ")?;
    let (chunk, rest) = rest.split_once(" differs: source ")?;
    let (source_rows, rest) = rest.split_once(" rows, target ")?;
    let (target_rows, rest) = rest.split_once(" rows, ")?;
    let (rejected, rest) = rest.split_once(" rejected (")?;
    let bound = |s: &str| -> Option<Option<i64>> {
        match s.trim() {
            "-inf" | "+inf" => Some(None),
            v => v.parse().ok().map(Some),
        }
    };
    let (lo, hi) = match rest.split_once(" in [") {
        Some((_, range)) => {
            let range = range.trim_end_matches(')');
            let (lo, hi) = range.split_once(", ")?;
            (bound(lo)?, bound(hi)?)
        }
        None => (None, None), // "all rows"
    };
    Some(VerifyDiff {
        chunk: chunk.trim().parse().ok()?,
        source_rows: source_rows.trim().parse().ok()?,
        target_rows: target_rows.trim().parse().ok()?,
        rejected: rejected.trim().parse().ok()?,
        lo,
        hi,
        line: line.to_string(),
    })
}

/// One row of `ferry rejects` output: `chunk C\tkey K\tSQLSTATE\tmessage\trow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectLine {
    /// Chunk number.
    pub chunk: u32,
    /// The key as text.
    pub key: String,
    /// SQLSTATE.
    pub sqlstate: String,
    /// Message and row text (they may hold tabs themselves).
    pub rest: String,
}

/// `(total, rows)` of `ferry rejects` output.
pub fn parse_rejects(stdout: &str) -> (u64, Vec<RejectLine>) {
    let mut lines = stdout.lines();
    let head = lines
        .next()
        .unwrap_or_else(|| panic!("ferry rejects printed nothing"));
    let total = head
        .split_once(" rejected rows in job ")
        .and_then(|(n, _)| parse_grouped(n))
        .unwrap_or_else(|| {
            panic!("ferry rejects' first line is not `N rejected rows in job J`: {head:?}")
        });
    let rows = lines
        .filter(|l| l.starts_with("chunk "))
        .map(|l| {
            let mut f = l.splitn(4, '\t');
            let chunk = f.next().and_then(|c| c.strip_prefix("chunk "));
            let key = f.next().and_then(|k| k.strip_prefix("key "));
            let sqlstate = f.next();
            let rest = f.next().unwrap_or("");
            match (chunk.and_then(|c| c.parse().ok()), key, sqlstate) {
                (Some(chunk), Some(key), Some(sqlstate)) => RejectLine {
                    chunk,
                    key: key.to_string(),
                    sqlstate: sqlstate.to_string(),
                    rest: rest.to_string(),
                },
                _ => panic!("cannot parse ferry rejects line {l:?}"),
            }
        })
        .collect();
    (total, rows)
}

/// Makes every insert statement into `schema_table` (each chunk's COPY) take
/// `ms` longer, inside the chunk's transaction: a statement-level trigger
/// sleeps after the rows are in. Rows are not touched.
pub async fn slow_inserts(client: &Client, schema_table: &str, ms: u64) {
    let name = schema_table.replace(['.', '"'], "_");
    exec(
        client,
        &format!(
            "CREATE FUNCTION issue5_slow_{name}() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN PERFORM pg_sleep({secs}); RETURN NULL; END $$; \
             CREATE TRIGGER issue5_slow AFTER INSERT ON {schema_table} \
             FOR EACH STATEMENT EXECUTE FUNCTION issue5_slow_{name}()",
            secs = ms as f64 / 1000.0
        ),
    )
    .await;
}

/// True when a table named `name` (in any schema) exists in `client`'s database.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunk_lines() {
        let l =
            "2026 INFO ferry: Chunk 5 completed: 50,000 rows, 49,950 successful, 50 failed job=x";
        assert_eq!(parse_chunk_completed(l), Some((5, 50_000, 49_950, 50)));
        assert_eq!(
            parse_chunk_completed("Chunk 5 failed with exception: x"),
            None
        );
    }

    #[test]
    fn parses_verify_lines() {
        let out = "chunk 3 differs: source 20000 rows, target 19990 rows, 0 rejected (id in [40001, 60001))\n\
                   chunk 9 differs: source 5 rows, target 5 rows, 0 rejected (id in [180001, +inf))\n\
                   2 of 10 chunks differ: `ferry repair j` copies them again\n";
        let d = parse_verify(out);
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].chunk, d[0].source_rows, d[0].target_rows),
            (3, 20000, 19990)
        );
        assert!(d[0].contains(40001) && !d[0].contains(60001));
        assert_eq!(d[1].hi, None);
        assert!(d[1].contains(i64::MAX));
    }

    #[test]
    fn parses_rejects_output() {
        let out = "2 rejected rows in job j1\nchunk 1\tkey 17\t23514\tnew row violates\t17\tx\n\
                   chunk 2\tkey 99\t22001\tvalue too long\t99\ty\n";
        let (total, rows) = parse_rejects(out);
        assert_eq!(total, 2);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].key, "99");
        assert_eq!(rows[0].sqlstate, "23514");
    }
}

//! The client side of the CLI contract: submitting, states, log lines, the ledger.

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::ferry::{run_cli, CliOutput};
use crate::sync::blocking;

/// Job states as `ferry status` prints them.
pub const JOB_STATES: [&str; 6] = [
    "PENDING",
    "PLANNING",
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "CANCELLED",
];

/// States a job never leaves.
pub const TERMINAL_STATES: [&str; 3] = ["SUCCEEDED", "FAILED", "CANCELLED"];

/// Timeout for short client verbs (status, jobs, cancel, submit without --watch).
pub const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// Arguments of `ferry submit` from connection `src` to connection `dst`,
/// followed by `extra` (e.g. `--chunk-size 50000 --watch`).
pub fn submit_args(coordinator: &str, query: &str, table: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "submit",
        "--coordinator",
        coordinator,
        "--source",
        "src",
        "--query",
        query,
        "--target",
        "dst",
        "--table",
        table,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The job id a successful `ferry submit` printed (its last stdout line).
pub fn job_id(out: &CliOutput) -> String {
    assert!(out.success(), "submit failed: {out}");
    out.last_line()
        .unwrap_or_else(|| panic!("submit printed no job id: {out}"))
        .to_string()
}

/// Runs `ferry VERB JOB --coordinator URL` (status, watch, cancel…).
pub fn job_verb(verb: &str, coordinator: &str, job: &str, timeout: Duration) -> CliOutput {
    run_cli::<_, &str, &str>(&[verb, job, "--coordinator", coordinator], &[], timeout)
}

/// The state `ferry status JOB` prints as its first word, or the failed
/// command's output as the error.
pub fn job_state(coordinator: &str, job: &str) -> Result<String, String> {
    let out = job_verb("status", coordinator, job, CLI_TIMEOUT);
    if !out.success() {
        return Err(out.to_string());
    }
    out.stdout
        .split_whitespace()
        .next()
        .map(|w| w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_'))
        .map(str::to_string)
        .ok_or_else(|| format!("status printed nothing: {out}"))
}

/// Polls `ferry status` every 500 ms until the state is one of `wanted` or
/// `timeout` passes; returns the last state seen (or the last error).
pub fn wait_for_state(coordinator: &str, job: &str, wanted: &[&str], timeout: Duration) -> String {
    blocking(|| {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = match job_state(coordinator, job) {
                Ok(state) => state,
                Err(e) => format!("<status failed: {e}>"),
            };
            if wanted.contains(&seen.as_str()) || Instant::now() >= deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    })
}

/// Runs `ferry submit … --watch` with `env` (watch timeout `timeout`).
pub fn submit_watch<K, V>(
    coordinator: &str,
    query: &str,
    table: &str,
    extra: &[&str],
    env: &[(K, V)],
    timeout: Duration,
) -> CliOutput
where
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let mut extra = extra.to_vec();
    extra.push("--watch");
    run_cli(
        &submit_args(coordinator, query, table, &extra),
        env,
        timeout,
    )
}

/// Parses a number that may carry thousands separators (`1,000,000`).
fn parse_count(text: &str) -> Option<u64> {
    text.trim_matches(|c: char| !c.is_ascii_digit())
        .replace([',', '_'], "")
        .parse()
        .ok()
}

/// `(workers, chunks)` from the coordinator's first
/// `Starting parallel processing with N workers, M chunks` line.
pub fn parse_start_line(log: &str) -> Option<(u64, u64)> {
    let rest = log
        .lines()
        .find_map(|l| l.split_once("Starting parallel processing with "))?
        .1;
    let (workers, rest) = rest.split_once(" workers, ")?;
    let chunks = rest.split_whitespace().next()?;
    Some((parse_count(workers)?, parse_count(chunks)?))
}

/// True for a coordinator line `Chunk N completed: …`.
pub fn is_chunk_completed_line(line: &str) -> bool {
    line.split_once("Chunk ")
        .map(|(_, rest)| rest.contains(" completed"))
        .unwrap_or(false)
}

/// What the target's `ferry.ledger` says about one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerSummary {
    /// Ledger rows for the job.
    pub rows: i64,
    /// Distinct chunk numbers among them.
    pub distinct_chunks: i64,
    /// Sum of `rows_written`.
    pub rows_written: i64,
    /// Largest `rows_written` of any one chunk.
    pub max_rows_written: i64,
    /// Sum of `rows_rejected`.
    pub rows_rejected: i64,
}

/// Reads the ledger summary for `job` from the target database.
pub async fn ledger_summary(target: &Client, job: &str) -> LedgerSummary {
    let sql = "SELECT count(*), count(DISTINCT chunk_no), \
               coalesce(sum(rows_written), 0)::bigint, coalesce(max(rows_written), 0)::bigint, \
               coalesce(sum(rows_rejected), 0)::bigint \
               FROM ferry.ledger WHERE job_id = $1";
    let row = target
        .query_one(sql, &[&job])
        .await
        .unwrap_or_else(|e| panic!("reading ferry.ledger for job {job}: {e}"));
    LedgerSummary {
        rows: row.get(0),
        distinct_chunks: row.get(1),
        rows_written: row.get(2),
        max_rows_written: row.get(3),
        rows_rejected: row.get(4),
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an RFC 3339 UTC timestamp as the logs print it
/// (`2026-11-25T07:00:00.123456Z`) into seconds since the Unix epoch.
pub fn parse_rfc3339_utc(text: &str) -> Option<f64> {
    let text = text.trim().strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, mo, da) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (h, mi, s) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let frac = if frac.is_empty() {
        0.0
    } else {
        format!("0.{frac}").parse::<f64>().ok()?
    };
    let days = days_from_civil(y, mo, da);
    Some((days * 86_400 + h * 3600 + mi * 60 + s) as f64 + frac)
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_unix_secs(secs: f64) -> String {
    let whole = secs.floor() as i64;
    let millis = ((secs - whole as f64) * 1000.0).floor() as i64;
    let (days, rem) = (whole.div_euclid(86_400), whole.rem_euclid(86_400));
    // civil_from_days (Hinnant)
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The timestamp a `ferry` log line starts with, in seconds since the epoch.
pub fn line_unix_secs(line: &str) -> Option<f64> {
    parse_rfc3339_utc(line.split_whitespace().next()?)
}

/// The value of field `key=` in a log line (up to the next space), unquoted.
pub fn log_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!(" {key}=");
    let start = line.find(&needle)? + needle.len();
    let rest = &line[start..];
    let value = rest.split_whitespace().next()?;
    Some(value.trim_matches('"'))
}

/// `N` of a coordinator line `Chunk N failed with exception: …` or `Chunk N completed: …`.
pub fn chunk_no_of_line(line: &str) -> Option<u64> {
    let rest = line.split_once("Chunk ")?.1;
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_start_line_with_separators() {
        let log =
            "2024 INFO ferry: Starting parallel processing with 2 workers, 1,020 chunks job=x\n";
        assert_eq!(parse_start_line(log), Some((2, 1020)));
        assert_eq!(parse_start_line("nothing here"), None);
    }

    #[test]
    fn recognizes_chunk_completed_lines() {
        assert!(is_chunk_completed_line(
            "INFO Chunk 5 completed: 50,000 rows, 49,950 successful, 50 failed"
        ));
        assert!(!is_chunk_completed_line(
            "INFO Parallel processing complete: 1 rows"
        ));
    }
    #[test]
    fn parses_and_formats_log_timestamps() {
        let t = parse_rfc3339_utc("2026-11-25T07:00:01.250000Z").expect("parses");
        assert_eq!(format_unix_secs(t), "2026-11-25T07:00:01.250Z");
        assert_eq!(parse_rfc3339_utc("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            parse_rfc3339_utc("2000-03-01T00:00:00Z"),
            Some(951_868_800.0)
        );
        let line = "2026-11-25T07:00:01.250000Z  WARN Chunk 7 failed with exception: x";
        assert_eq!(line_unix_secs(line), Some(t));
        assert_eq!(chunk_no_of_line(line), Some(7));
        assert_eq!(line_unix_secs("garbage line"), None);
    }

    #[test]
    fn reads_log_fields() {
        let line = "2026 INFO registered with coordinator worker=w-12 coordinator=http://a";
        assert_eq!(log_field(line, "worker"), Some("w-12"));
        assert_eq!(log_field(line, "nope"), None);
    }
}

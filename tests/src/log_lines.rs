//! The lines `ferry` processes log that the tests wait for and read: the
//! operations guide's job lines, leadership changes, worker registration and
//! commits, and the `key=value` fields on them.

use crate::clock::parse_rfc3339_utc;
use crate::text::parse_grouped;

/// A coordinator won the election (and rebuilt its state from etcd).
pub const BECAME_LEADER: &str = "became the leader coordinator";
/// A coordinator lost the election and follows the leader.
pub const FOLLOWING_LEADER: &str = "following the leader coordinator";
/// A coordinator gave up leadership.
pub const STEPPING_DOWN: &str = "stepping down";
/// A new leader renewed the leases of the workers its predecessor knew.
pub const RENEWED_ADOPTED: &str = "renewed the leases of the workers the previous leader knew";
/// A worker stopped gracefully and ended its session (`worker=W`).
pub const WORKER_LEFT: &str = "worker left (stopped gracefully)";
/// A worker registered (`worker=W` names it).
pub const WORKER_REGISTERED: &str = "registered with coordinator";
/// A worker committed a chunk attempt (`job=J chunk=N attempt=A`).
pub const CHUNK_COMMITTED: &str = "chunk committed";
/// A worker found its chunk already in the ledger and did not copy it again.
pub const ALREADY_COMMITTED: &str = "chunk already committed by another attempt";
/// The coordinator started a job's chunks (guide line).
pub const JOB_STARTING: &str = "Starting parallel processing with";
/// The coordinator finished a job (guide line).
pub const JOB_COMPLETE: &str = "Parallel processing complete";
/// The coordinator failed a job (guide line).
pub const JOB_FAILED: &str = "Parallel processing failed";
/// A chunk attempt was given up and queued again (`… will retry (i/max)`).
pub const WILL_RETRY: &str = "will retry (";

/// Where a coordinator stands in the election, by its last leadership line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leadership {
    /// It leads.
    Leader,
    /// It follows another coordinator.
    Follower,
    /// It stepped down and campaigns again.
    SteppedDown,
}

impl Leadership {
    /// The leadership a line announces, if it is a leadership line.
    pub fn of_line(line: &str) -> Option<Leadership> {
        if line.contains(BECAME_LEADER) {
            Some(Leadership::Leader)
        } else if line.contains(FOLLOWING_LEADER) {
            Some(Leadership::Follower)
        } else if line.contains(STEPPING_DOWN) {
            Some(Leadership::SteppedDown)
        } else {
            None
        }
    }

    /// The leadership announced last in `log`.
    pub fn last_in(log: &str) -> Option<Leadership> {
        log.lines().rev().find_map(Leadership::of_line)
    }
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

/// The lines of `log` that carry field `job=JOB`.
pub fn job_lines(log: &str, job: &str) -> Vec<String> {
    log.lines()
        .filter(|l| log_field(l, "job") == Some(job))
        .map(str::to_string)
        .collect()
}

/// `(workers, chunks)` from the first
/// `Starting parallel processing with N workers, M chunks` line of `log`.
pub fn parse_start_line(log: &str) -> Option<(u64, u64)> {
    let rest = log.lines().find_map(|l| l.split_once(JOB_STARTING))?.1;
    let (workers, rest) = rest.split_once(" workers, ")?;
    let chunks = rest.split_whitespace().next()?;
    Some((parse_grouped(workers)?, parse_grouped(chunks)?))
}

/// True for a coordinator line `Chunk N completed: …`.
pub fn is_chunk_completed_line(line: &str) -> bool {
    line.split_once("Chunk ")
        .map(|(_, rest)| rest.contains(" completed"))
        .unwrap_or(false)
}

/// `N` of a coordinator line `Chunk N failed with exception: …` or `Chunk N completed: …`.
pub fn chunk_no_of_line(line: &str) -> Option<u64> {
    let rest = line.split_once("Chunk ")?.1;
    rest.split_whitespace().next()?.parse().ok()
}

/// A coordinator line `Chunk N completed: R rows, S successful, F failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkCompleted {
    /// Chunk number.
    pub chunk: u32,
    /// Rows read.
    pub rows: u64,
    /// Rows written.
    pub successful: u64,
    /// Rows rejected.
    pub failed: u64,
}

impl ChunkCompleted {
    /// Parses the line; `None` for any other line.
    pub fn parse(line: &str) -> Option<ChunkCompleted> {
        let rest = line.split_once("Chunk ")?.1;
        let (chunk, rest) = rest.split_once(" completed: ")?;
        let (rows, rest) = rest.split_once(" rows, ")?;
        let (ok, rest) = rest.split_once(" successful, ")?;
        let failed = rest.split(" failed").next()?;
        Some(ChunkCompleted {
            chunk: chunk.trim().parse().ok()?,
            rows: parse_grouped(rows)?,
            successful: parse_grouped(ok)?,
            failed: parse_grouped(failed)?,
        })
    }
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
    fn reads_chunk_lines() {
        let l =
            "2026 INFO ferry: Chunk 5 completed: 50,000 rows, 49,950 successful, 50 failed job=x";
        assert!(is_chunk_completed_line(l));
        assert_eq!(
            ChunkCompleted::parse(l),
            Some(ChunkCompleted {
                chunk: 5,
                rows: 50_000,
                successful: 49_950,
                failed: 50
            })
        );
        assert_eq!(
            ChunkCompleted::parse("Chunk 5 failed with exception: x"),
            None
        );
        assert!(!is_chunk_completed_line(
            "INFO Parallel processing complete: 1 rows"
        ));
        let line = "2026-11-25T07:00:01.250000Z  WARN Chunk 7 failed with exception: x";
        assert_eq!(chunk_no_of_line(line), Some(7));
        assert_eq!(
            line_unix_secs(line),
            parse_rfc3339_utc("2026-11-25T07:00:01.25Z")
        );
        assert_eq!(line_unix_secs("garbage line"), None);
    }

    #[test]
    fn reads_log_fields_and_leadership() {
        let line = "2026 INFO registered with coordinator worker=w-12 coordinator=http://a";
        assert_eq!(log_field(line, "worker"), Some("w-12"));
        assert_eq!(log_field(line, "nope"), None);
        assert_eq!(
            job_lines("a job=j1\nb job=j2\nc job=j1 x=1", "j1"),
            vec!["a job=j1".to_string(), "c job=j1 x=1".to_string()]
        );
        let log = format!("x {BECAME_LEADER}\ny lost leadership: {STEPPING_DOWN}\nz");
        assert_eq!(Leadership::last_in(&log), Some(Leadership::SteppedDown));
        assert_eq!(Leadership::last_in("nothing"), None);
    }
}

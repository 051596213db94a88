//! What the client verbs print, read back as typed values: job states,
//! `ferry status`, `ferry verify` and `ferry rejects`.

use std::fmt;
use std::str::FromStr;

use crate::cli::CliOutput;
use crate::text::parse_grouped;

/// A job's state as `ferry status` and `ferry jobs` print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Submitted, not planned yet.
    Pending,
    /// The coordinator is planning its chunks.
    Planning,
    /// Chunks are being copied.
    Running,
    /// Every chunk landed.
    Succeeded,
    /// The job gave up.
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

impl JobState {
    /// Every state.
    pub const ALL: [JobState; 6] = [
        JobState::Pending,
        JobState::Planning,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// The states a job never leaves.
    pub const TERMINAL: [JobState; 3] =
        [JobState::Succeeded, JobState::Failed, JobState::Cancelled];

    /// The state's name as the CLI prints it (`SUCCEEDED`).
    pub fn label(self) -> &'static str {
        match self {
            JobState::Pending => "PENDING",
            JobState::Planning => "PLANNING",
            JobState::Running => "RUNNING",
            JobState::Succeeded => "SUCCEEDED",
            JobState::Failed => "FAILED",
            JobState::Cancelled => "CANCELLED",
        }
    }

    /// True for a state the job never leaves.
    pub fn is_terminal(self) -> bool {
        Self::TERMINAL.contains(&self)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl FromStr for JobState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.label() == s)
            .ok_or_else(|| format!("{s:?} is not a job state"))
    }
}

/// The first line of `ferry status JOB`
/// (`STATE JOB: a/b chunks succeeded, f failed, w rows written, r rejected, n retries`)
/// and its `error:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    /// The job's state.
    pub state: JobState,
    /// The job id.
    pub job: String,
    /// Chunks that landed.
    pub chunks_succeeded: u64,
    /// Chunks planned.
    pub chunks_total: u64,
    /// Chunks that failed for good.
    pub chunks_failed: u64,
    /// Rows written into the target.
    pub rows_written: u64,
    /// Rows the target refused.
    pub rows_rejected: u64,
    /// Chunk retries so far.
    pub retries: u64,
    /// Why the job failed (`  error: …`), if it says.
    pub error: Option<String>,
}

impl JobStatus {
    /// Parses what `ferry status` printed; `None` if it is not that shape.
    pub fn parse(stdout: &str) -> Option<JobStatus> {
        let mut lines = stdout.lines();
        let head = lines.next()?;
        let (state, rest) = head.split_once(' ')?;
        let (job, rest) = rest.split_once(": ")?;
        let (succeeded, rest) = rest.split_once('/')?;
        let (total, rest) = rest.split_once(" chunks succeeded, ")?;
        let (failed, rest) = rest.split_once(" failed, ")?;
        let (written, rest) = rest.split_once(" rows written, ")?;
        let (rejected, rest) = rest.split_once(" rejected, ")?;
        let retries = rest.strip_suffix(" retries")?;
        let error = lines
            .find_map(|l| l.strip_prefix("  error: "))
            .map(str::to_string);
        Some(JobStatus {
            state: state.parse().ok()?,
            job: job.to_string(),
            chunks_succeeded: parse_grouped(succeeded)?,
            chunks_total: parse_grouped(total)?,
            chunks_failed: parse_grouped(failed)?,
            rows_written: parse_grouped(written)?,
            rows_rejected: parse_grouped(rejected)?,
            retries: parse_grouped(retries)?,
            error,
        })
    }
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
    /// Inclusive lower bound (None: open, or not an integer).
    pub lo: Option<i64>,
    /// Exclusive upper bound (None: open, or not an integer).
    pub hi: Option<i64>,
    /// The line as printed.
    pub line: String,
}

impl VerifyDiff {
    /// True when integer key `k` lies in the chunk's range.
    pub fn contains(&self, k: i64) -> bool {
        self.lo.is_none_or(|lo| k >= lo) && self.hi.is_none_or(|hi| k < hi)
    }

    fn parse(line: &str) -> Option<VerifyDiff> {
        let rest = line.strip_prefix("chunk ")?;
        let (chunk, rest) = rest.split_once(" differs: source ")?;
        let (source_rows, rest) = rest.split_once(" rows, target ")?;
        let (target_rows, rest) = rest.split_once(" rows, ")?;
        let (rejected, rest) = rest.split_once(" rejected (")?;
        // a bound that is not an integer (a text key's) reads as open
        let bound = |s: &str| -> Option<Option<i64>> { Some(s.trim().parse().ok()) };
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
}

/// What `ferry verify JOB` found (integer keys).
#[derive(Debug, Clone)]
pub struct Verify {
    /// The invocation, for messages and the exit code.
    pub output: CliOutput,
    /// The chunks that differ.
    pub diffs: Vec<VerifyDiff>,
    /// `N` of `all N chunks match`, when every chunk matched.
    pub all_match: Option<u64>,
    /// `(D, N)` of `D of N chunks differ: …`, when some did not.
    pub differ: Option<(u64, u64)>,
}

impl Verify {
    /// Reads `ferry verify`'s output; panics on a `chunk … differs` line it
    /// cannot parse.
    pub fn parse(output: CliOutput) -> Verify {
        let diffs = output
            .stdout
            .lines()
            .filter(|l| l.starts_with("chunk ") && l.contains(" differs: "))
            .map(|l| {
                VerifyDiff::parse(l).unwrap_or_else(|| panic!("cannot parse verify line {l:?}"))
            })
            .collect();
        let all_match = output
            .stdout
            .lines()
            .find_map(|l| parse_grouped(l.strip_prefix("all ")?.strip_suffix(" chunks match")?));
        let differ = output.stdout.lines().find_map(|l| {
            let (counts, _) = l.split_once(" chunks differ")?;
            let (d, n) = counts.split_once(" of ")?;
            Some((parse_grouped(d)?, parse_grouped(n)?))
        });
        Verify {
            output,
            diffs,
            all_match,
            differ,
        }
    }
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

/// What `ferry rejects JOB` listed.
#[derive(Debug, Clone)]
pub struct Rejects {
    /// The invocation, for messages.
    pub output: CliOutput,
    /// `N` of the first line `N rejected rows in job J`.
    pub total: u64,
    /// The rows listed.
    pub rows: Vec<RejectLine>,
    /// `M` of the closing `… M more (raise --limit)`, if it says.
    pub more: Option<u64>,
}

impl Rejects {
    /// Reads `ferry rejects`' output; panics when it is not that shape.
    pub fn parse(output: CliOutput) -> Rejects {
        let mut lines = output.stdout.lines();
        let head = lines
            .next()
            .unwrap_or_else(|| panic!("ferry rejects printed nothing: {output}"));
        let total = head
            .split_once(" rejected rows in job ")
            .and_then(|(n, _)| parse_grouped(n))
            .unwrap_or_else(|| {
                panic!("ferry rejects' first line is not `N rejected rows in job J`: {head:?}")
            });
        let rows = lines
            .clone()
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
        let more = lines.find_map(|l| {
            let (_, rest) = l.split_once("… ")?;
            parse_grouped(rest.strip_suffix(" more (raise --limit)")?)
        });
        Rejects {
            output,
            total,
            rows,
            more,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    use super::*;

    fn output(stdout: &str) -> CliOutput {
        CliOutput {
            command: "ferry".into(),
            status: ExitStatus::from_raw(0),
            stdout: stdout.into(),
            stderr: String::new(),
            timed_out: false,
        }
    }

    #[test]
    fn parses_job_states() {
        assert_eq!("SUCCEEDED".parse(), Ok(JobState::Succeeded));
        assert!("UNKNOWN".parse::<JobState>().is_err());
        assert!(JobState::Cancelled.is_terminal() && !JobState::Running.is_terminal());
    }

    #[test]
    fn parses_status() {
        let out = "FAILED j1: 3/10 chunks succeeded, 1 failed, 60000 rows written, 11 rejected, 2 retries\n\
                   \x20 src -> dst public.items\n  error: max_failed_rows 10 passed\n";
        let s = JobStatus::parse(out).expect("parses");
        assert_eq!(s.state, JobState::Failed);
        assert_eq!(
            (s.chunks_succeeded, s.chunks_total, s.chunks_failed),
            (3, 10, 1)
        );
        assert_eq!(
            (s.rows_written, s.rows_rejected, s.retries),
            (60_000, 11, 2)
        );
        assert_eq!(s.error.as_deref(), Some("max_failed_rows 10 passed"));
        assert_eq!(JobStatus::parse("nothing"), None);
    }

    #[test]
    fn parses_verify_lines() {
        let out = "chunk 3 differs: source 20000 rows, target 19990 rows, 0 rejected (id in [40001, 60001))\n\
                   chunk 9 differs: source 5 rows, target 5 rows, 0 rejected (id in [180001, +inf))\n\
                   2 of 10 chunks differ: `ferry repair j` copies them again\n";
        let v = Verify::parse(output(out));
        let d = &v.diffs;
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].chunk, d[0].source_rows, d[0].target_rows),
            (3, 20000, 19990)
        );
        assert!(d[0].contains(40001) && !d[0].contains(60001));
        assert_eq!(d[1].hi, None);
        assert!(d[1].contains(i64::MAX));
        assert_eq!((v.all_match, v.differ), (None, Some((2, 10))));
        let clean = Verify::parse(output("all 12 chunks match\n"));
        assert_eq!((clean.all_match, clean.differ), (Some(12), None));
    }

    #[test]
    fn parses_rejects_output() {
        let out = "2 rejected rows in job j1\nchunk 1\tkey 17\t23514\tnew row violates\t17\tx\n\
                   chunk 2\tkey 99\t22001\tvalue too long\t99\ty\n… 5 more (raise --limit)\n";
        let r = Rejects::parse(output(out));
        assert_eq!(r.total, 2);
        assert_eq!(r.rows.len(), 2);
        assert_eq!(r.rows[1].key, "99");
        assert_eq!(r.rows[0].sqlstate, "23514");
        assert_eq!(r.more, Some(5));
    }
}

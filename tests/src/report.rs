//! The chaos report: one Markdown table row per chaos case, appended to
//! `target/chaos-report.md` (or `FERRY_CHAOS_REPORT`).
//!
//! Test threads and test processes run in parallel, so each row is appended
//! under an exclusive `flock` on the file, and the header is written by
//! whichever writer finds the file empty.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::clock::format_unix_secs;

/// The header of the report table (and the README's).
pub const REPORT_HEADER: &str = "\
| case | faults injected | s to re-lease a dead worker's chunk | s to leader takeover | rows lost | rows duplicated | job | recorded (UTC) |
|---|---|---|---|---|---|---|---|
";

/// One row of the report.
#[derive(Debug, Clone, Default)]
pub struct ReportRow {
    /// Case name (for the randomized run, with its seed).
    pub case: String,
    /// The faults injected, in order, e.g. `SIGKILL worker w2 @ 4.1s`.
    pub faults: Vec<String>,
    /// Seconds from a worker's SIGKILL to the coordinator requeuing its chunk
    /// (the largest measured in the case), if measured.
    pub relet_secs: Option<f64>,
    /// Seconds from the leader's SIGKILL to the standby's `became the leader`
    /// line (the largest measured), if measured.
    pub takeover_secs: Option<f64>,
    /// Source rows that never landed in the target.
    pub rows_lost: i64,
    /// Rows that landed more than once.
    pub rows_duplicated: i64,
    /// The job's final state.
    pub job_state: String,
}

/// Where the report goes: env `FERRY_CHAOS_REPORT`, else `chaos-report.md`
/// in the cargo target directory holding the running test binary.
pub fn report_path() -> PathBuf {
    if let Some(path) = std::env::var_os("FERRY_CHAOS_REPORT") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("path of the running test binary");
    // target/<profile>/deps/<test> -> target
    exe.parent()
        .and_then(|deps| deps.parent())
        .and_then(|profile| profile.parent())
        .map(|target| target.join("chaos-report.md"))
        .expect("test binary lives in target/<profile>/deps")
}

fn secs(v: Option<f64>) -> String {
    v.map(|s| format!("{s:.1}"))
        .unwrap_or_else(|| "—".to_string())
}

impl ReportRow {
    /// The row as one Markdown table line (pipes in text escaped).
    pub fn to_markdown(&self) -> String {
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let faults = if self.faults.is_empty() {
            "none".to_string()
        } else {
            self.faults
                .iter()
                .map(|f| cell(f))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            cell(&self.case),
            faults,
            secs(self.relet_secs),
            secs(self.takeover_secs),
            self.rows_lost,
            self.rows_duplicated,
            cell(&self.job_state),
            &format_unix_secs(now)[..19],
        )
    }
}

/// Appends `row` to the report (creating it with the header if missing or
/// empty) under an exclusive lock, so parallel tests never interleave.
pub fn append_row(row: &ReportRow) -> PathBuf {
    let path = report_path();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let mut file = File::options()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open the chaos report {}: {e}", path.display()));
    // SAFETY: flock on a descriptor we own; released when `file` closes.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0;
    assert!(locked, "cannot lock the chaos report {}", path.display());
    let empty = file.metadata().map(|m| m.len() == 0).unwrap_or(true);
    let mut text = String::new();
    if empty {
        text.push_str("# Ferry chaos report\n\n");
        text.push_str(REPORT_HEADER);
    }
    text.push_str(&row.to_markdown());
    file.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("write the chaos report {}: {e}", path.display()));
    eprintln!(
        "chaos report row ({}):\n{}",
        path.display(),
        row.to_markdown()
    );
    path
}

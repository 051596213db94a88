//! Running `ferry` client verbs to completion, and the arguments of a submit.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::databases::{DST_DB, ITEMS_QUERY, ITEMS_TABLE, SRC_DB};
use crate::process::{ferry_bin, ferry_command};
use crate::sync::blocking;
use crate::text::{strip_ansi, tail};

/// Timeout for short client verbs (status, jobs, cancel, submit without --watch).
pub const CLI_TIMEOUT: Duration = Duration::from_secs(30);

/// Timeout for verbs that follow a job or scan both databases (`submit
/// --watch`, `watch`, `verify`, `repair`, `resume`, `local`): a fail-safe, a
/// healthy run takes seconds.
pub const LONG_CLI_TIMEOUT: Duration = Duration::from_secs(150);

/// What a finished CLI invocation printed, and how it exited.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// The command line, for messages.
    pub command: String,
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output, lossily decoded, without colours.
    pub stdout: String,
    /// Standard error, lossily decoded, without colours.
    pub stderr: String,
    /// True when the command was killed for running past its timeout.
    pub timed_out: bool,
}

impl CliOutput {
    /// True when the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The last non-empty line of stdout, trimmed (a submit's job id).
    pub fn last_line(&self) -> Option<&str> {
        self.stdout.lines().map(str::trim).rfind(|l| !l.is_empty())
    }

    /// The job id a `submit` (with or without `--watch`), `repair` or
    /// `resume` printed last; panics when there is none.
    pub fn job_id(&self) -> String {
        self.last_line()
            .unwrap_or_else(|| panic!("printed no job id: {self}"))
            .to_string()
    }

    /// stdout followed by stderr, for searching messages.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` {} {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            if self.timed_out {
                "timed out, killed:"
            } else {
                "exited"
            },
            self.status,
            tail(&self.stdout, 40),
            tail(&self.stderr, 40)
        )
    }
}

/// Runs `ferry ARGS` to completion with extra `env`; panics (with what it
/// printed so far) if it takes longer than `timeout`.
pub fn run_cli<S, K, V>(args: &[S], env: &[(K, V)], timeout: Duration) -> CliOutput
where
    S: AsRef<OsStr>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let out = run_cli_until(args, env, timeout);
    if out.timed_out {
        panic!("timed out after {timeout:?}: {out}");
    }
    out
}

/// Runs `ferry ARGS` with extra `env`, killing it after `timeout`; the result
/// says whether that happened (`timed_out`) instead of panicking.
pub fn run_cli_until<S, K, V>(args: &[S], env: &[(K, V)], timeout: Duration) -> CliOutput
where
    S: AsRef<OsStr>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let command = std::iter::once("ferry".to_string())
        .chain(
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned()),
        )
        .collect::<Vec<_>>()
        .join(" ");
    let child = ferry_command(args, env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills anything it started
        // that still holds the output pipes.
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command} ({}): {e}", ferry_bin().display()));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    blocking(|| {
        let (output, timed_out) = match rx.recv_timeout(timeout) {
            Ok(output) => (output, false),
            Err(_) => {
                if let Ok(pgid) = libc::pid_t::try_from(pid) {
                    // SAFETY: the child leads its own process group and is not
                    // reaped until wait_with_output returns, which has not
                    // happened, so the group id is still ours.
                    unsafe { libc::kill(-pgid, libc::SIGKILL) };
                }
                (rx.recv().expect("waiter thread reports"), true)
            }
        };
        let output = output.unwrap_or_else(|e| panic!("wait for {command}: {e}"));
        CliOutput {
            command,
            status: output.status,
            stdout: strip_ansi(&String::from_utf8_lossy(&output.stdout)),
            stderr: strip_ansi(&String::from_utf8_lossy(&output.stderr)),
            timed_out,
        }
    })
}

/// One job to submit: connections, query, table and flags. By default the
/// job copies from connection `src` to connection `dst`.
#[derive(Debug, Clone)]
pub struct Submit {
    source: String,
    target: String,
    query: String,
    table: String,
    flags: Vec<String>,
}

impl Submit {
    /// A job copying the rows of `query` into `table`, from `src` to `dst`.
    pub fn new(query: impl Into<String>, table: impl Into<String>) -> Self {
        Submit {
            source: SRC_DB.to_string(),
            target: DST_DB.to_string(),
            query: query.into(),
            table: table.into(),
            flags: Vec::new(),
        }
    }

    /// The `items` job: `SELECT * FROM items` into `public.items`.
    pub fn items() -> Self {
        Submit::new(ITEMS_QUERY, ITEMS_TABLE)
    }

    /// Reads from the connection named `name` instead of `src`.
    pub fn source(mut self, name: &str) -> Self {
        self.source = name.to_string();
        self
    }

    /// Writes into the connection named `name` instead of `dst`.
    pub fn target(mut self, name: &str) -> Self {
        self.target = name.to_string();
        self
    }

    /// `--chunk-size ROWS`.
    pub fn chunk_size(self, rows: u64) -> Self {
        self.flag("--chunk-size", rows)
    }

    /// `NAME VALUE`, e.g. `.flag("--mode", "upsert")`.
    pub fn flag(mut self, name: &str, value: impl ToString) -> Self {
        self.flags.push(name.to_string());
        self.flags.push(value.to_string());
        self
    }

    /// Extra arguments as given, e.g. `&["--max-retries", "1"]`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.flags.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// The query.
    pub fn query(&self) -> &str {
        &self.query
    }

    /// The target table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// `ferry submit --coordinator URLS …` (without `--watch`).
    pub fn submit_args(&self, coordinators: &str) -> Vec<String> {
        let mut args: Vec<String> = [
            "submit",
            "--coordinator",
            coordinators,
            "--source",
            &self.source,
            "--query",
            &self.query,
            "--target",
            &self.target,
            "--table",
            &self.table,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.flags.iter().cloned());
        args
    }

    /// `ferry local --source URL --target URL …` with the job's query,
    /// table and flags (the connection names are replaced by URLs).
    pub fn local_args(&self, source_url: &str, target_url: &str, workers: usize) -> Vec<String> {
        let mut args: Vec<String> = [
            "local",
            "--source",
            source_url,
            "--target",
            target_url,
            "--query",
            &self.query,
            "--table",
            &self.table,
            "--workers",
            &workers.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.flags.iter().cloned());
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_submit_arguments() {
        let args = Submit::items()
            .source("nosuch")
            .chunk_size(50_000)
            .args(&["--watch"])
            .submit_args("http://a,http://b");
        assert_eq!(
            args.join(" "),
            "submit --coordinator http://a,http://b --source nosuch --query SELECT * FROM items \
             --target dst --table public.items --chunk-size 50000 --watch"
        );
    }
}

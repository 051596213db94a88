//! The client verbs against a test cluster: `ferry submit`, `status`,
//! `watch`, `jobs`, `cancel`, `resume`, `verify`, `repair`, `rejects`, and
//! `ferry local` over the cluster's databases, with their output read back
//! as typed values. Every verb runs as the cluster's caller (its TLS and
//! token flags); `cli_as` runs one call as another.

use std::time::{Duration, Instant};

use crate::caller::Caller;
use crate::cli::{run_cli, run_cli_until, CliOutput, Submit, CLI_TIMEOUT, LONG_CLI_TIMEOUT};
use crate::cli_output::{JobState, JobStatus, Rejects, Verify};
use crate::cluster::Cluster;
use crate::sync::blocking;

/// How often `wait_for_state` asks `ferry status`.
const STATE_POLL: Duration = Duration::from_millis(500);

/// `ARGS` followed by `caller`'s arguments, and the cluster's environment
/// followed by `caller`'s.
fn as_caller<S: AsRef<str>>(
    cluster: &Cluster,
    caller: &Caller,
    args: &[S],
) -> (Vec<String>, Vec<(String, String)>) {
    let args = args
        .iter()
        .map(|a| a.as_ref().to_string())
        .chain(caller.extra_args().iter().cloned())
        .collect();
    let mut env = cluster.env().to_vec();
    env.extend(caller.extra_env().iter().cloned());
    (args, env)
}

impl Cluster {
    /// Runs `ferry ARGS` with the cluster's environment as the cluster's
    /// caller; panics if it takes longer than `timeout`.
    pub fn cli<S: AsRef<str>>(&self, args: &[S], timeout: Duration) -> CliOutput {
        self.cli_as(self.caller(), args, timeout)
    }

    /// Runs `ferry ARGS` with the cluster's environment as `caller` (another
    /// token, CA or client certificate); panics if it takes longer than `timeout`.
    pub fn cli_as<S: AsRef<str>>(
        &self,
        caller: &Caller,
        args: &[S],
        timeout: Duration,
    ) -> CliOutput {
        let (args, env) = as_caller(self, caller, args);
        run_cli(&args, &env, timeout)
    }

    /// Runs `ferry ARGS` with the cluster's environment as the cluster's
    /// caller, killing it after `timeout` (the result says so) instead of panicking.
    pub fn cli_until(&self, args: &[String], timeout: Duration) -> CliOutput {
        let (args, env) = as_caller(self, self.caller(), args);
        run_cli_until(&args, &env, timeout)
    }

    /// `ferry VERB JOB --coordinator URLS EXTRA…`.
    pub fn job_verb(&self, verb: &str, job: &str, extra: &[&str], timeout: Duration) -> CliOutput {
        let mut args = vec![verb, job, "--coordinator", self.urls()];
        args.extend_from_slice(extra);
        self.cli(&args, timeout)
    }

    /// `ferry submit` without `--watch`; panics unless it succeeds; returns the job id.
    pub fn submit(&self, job: &Submit) -> String {
        let out = self.cli_as(self.caller(), &job.submit_args(self.urls()), CLI_TIMEOUT);
        assert!(out.success(), "submit failed: {out}");
        out.job_id()
    }

    /// `ferry submit … --watch`; the caller checks how it exited.
    pub fn submit_watch(&self, job: &Submit) -> CliOutput {
        let mut args = job.submit_args(self.urls());
        args.push("--watch".to_string());
        self.cli_as(self.caller(), &args, LONG_CLI_TIMEOUT)
    }

    /// The state `ferry status JOB` prints first, or the failed command's
    /// output (or what it printed instead) as the error.
    pub fn state(&self, job: &str) -> Result<JobState, String> {
        let out = self.job_verb("status", job, &[], CLI_TIMEOUT);
        if !out.success() {
            return Err(out.to_string());
        }
        out.stdout
            .split_whitespace()
            .next()
            .ok_or_else(|| format!("status printed nothing: {out}"))?
            .parse()
            .map_err(|e| format!("{e}: {out}"))
    }

    /// `ferry status JOB`, parsed, or the failed command's output (or what
    /// it printed instead) as the error.
    pub fn try_status(&self, job: &str) -> Result<JobStatus, String> {
        let out = self.job_verb("status", job, &[], CLI_TIMEOUT);
        if !out.success() {
            return Err(format!("ferry status failed: {out}"));
        }
        JobStatus::parse(&out.stdout)
            .ok_or_else(|| format!("cannot read ferry status output: {out}"))
    }

    /// `ferry status JOB`, parsed; panics when it fails or prints something else.
    pub fn status(&self, job: &str) -> JobStatus {
        self.try_status(job).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Polls `ferry status` until the state is one of `wanted` or `timeout`
    /// passes; returns the last state seen (or the last error).
    pub fn wait_for_state(
        &self,
        job: &str,
        wanted: &[JobState],
        timeout: Duration,
    ) -> Result<JobState, String> {
        blocking(|| {
            let deadline = Instant::now() + timeout;
            loop {
                let seen = self.state(job);
                let done = seen.as_ref().is_ok_and(|s| wanted.contains(s));
                if done || Instant::now() >= deadline {
                    return seen;
                }
                std::thread::sleep(STATE_POLL);
            }
        })
    }

    /// Waits up to `timeout` for the job to end; returns its final state.
    pub fn wait_terminal(&self, job: &str, timeout: Duration) -> Result<JobState, String> {
        self.wait_for_state(job, &JobState::TERMINAL, timeout)
    }

    /// `ferry watch JOB`: follows the job to its end.
    pub fn watch(&self, job: &str) -> CliOutput {
        self.job_verb("watch", job, &[], LONG_CLI_TIMEOUT)
    }

    /// `ferry jobs`.
    pub fn jobs(&self) -> CliOutput {
        self.cli(&["jobs", "--coordinator", self.urls()], CLI_TIMEOUT)
    }

    /// `ferry cancel JOB`.
    pub fn cancel(&self, job: &str) -> CliOutput {
        self.job_verb("cancel", job, &[], CLI_TIMEOUT)
    }

    /// `ferry resume JOB`: reruns its unfinished chunks and follows it.
    pub fn resume(&self, job: &str) -> CliOutput {
        self.job_verb("resume", job, &[], LONG_CLI_TIMEOUT)
    }

    /// `ferry verify JOB`, parsed.
    pub fn verify(&self, job: &str) -> Verify {
        Verify::parse(self.job_verb("verify", job, &[], LONG_CLI_TIMEOUT))
    }

    /// `ferry repair JOB`: copies differing chunks again and follows the job.
    pub fn repair(&self, job: &str) -> CliOutput {
        self.job_verb("repair", job, &[], LONG_CLI_TIMEOUT)
    }

    /// `ferry rejects JOB --limit N`, parsed; panics unless it succeeds.
    pub fn rejects(&self, job: &str, limit: u32) -> Rejects {
        let limit = limit.to_string();
        let out = self.job_verb("rejects", job, &["--limit", &limit], CLI_TIMEOUT);
        assert!(out.success(), "ferry rejects failed: {out}");
        Rejects::parse(out)
    }

    /// `ferry local` with `workers` workers copying `job` between the
    /// cluster's databases (by URL, without the cluster's processes).
    pub fn local(&self, job: &Submit, workers: usize) -> CliOutput {
        self.dbs().local(job, workers)
    }
}

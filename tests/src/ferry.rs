//! The real `ferry` binary as separate processes: coordinator, workers, CLI.

use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::net::{free_port, port_open};
use crate::postgres::tail;
use crate::sync::blocking;

/// How long a coordinator may take to accept TCP connections.
const COORDINATOR_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Log level passed to spawned processes as `RUST_LOG` unless the caller sets
/// one: env `FERRY_TEST_RUST_LOG`, else `info` (the ops-guide lines are INFO).
fn default_rust_log() -> String {
    std::env::var("FERRY_TEST_RUST_LOG").unwrap_or_else(|_| "info".to_string())
}

/// The `ferry` binary: env `FERRY_BIN`, else `target/debug/ferry` next to the
/// running test binary (`target/debug/deps/…`). Panics when it is missing.
pub fn ferry_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("FERRY_BIN") {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "FERRY_BIN={} does not exist", bin.display());
        return bin;
    }
    let exe = std::env::current_exe().expect("path of the running test binary");
    // target/debug/deps/<test> -> target/debug/ferry
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("ferry"))
        .expect("test binary lives in target/<profile>/deps");
    assert!(
        bin.is_file(),
        "{} is missing: build it first: cargo build -p ferry",
        bin.display()
    );
    bin
}

/// Removes ANSI escape sequences (colours) from log text.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // CSI: parameters and intermediates, then one final byte in @..~
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// `ferry ARGS` with `env` on top of this process's environment, minus any
/// `FERRY_*` / `MAPPER_*` settings inherited from the developer's shell (they
/// would silently change what is under test), plain-text logs at `RUST_LOG`.
fn ferry_command<S, K, V>(args: &[S], env: &[(K, V)]) -> Command
where
    S: AsRef<OsStr>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let mut cmd = Command::new(ferry_bin());
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("FERRY_") || name.starts_with("MAPPER_") {
            cmd.env_remove(&key);
        }
    }
    cmd.args(args)
        .env("RUST_LOG", default_rust_log())
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

static PROCESS_SEQ: AtomicUsize = AtomicUsize::new(0);

/// A running `ferry` process with stdout and stderr in a log file of its own.
/// Dropping it kills the process (SIGKILL); when a test is failing, the tail
/// of the log is printed so the failure explains itself.
pub struct FerryProcess {
    name: String,
    child: Mutex<Child>,
    pid: u32,
    log_path: PathBuf,
    _dir: TempDir,
}

impl FerryProcess {
    /// Spawns `ferry ARGS` with extra environment `env`; `name` labels the log.
    pub fn spawn<S, K, V>(name: &str, args: &[S], env: &[(K, V)]) -> Self
    where
        S: AsRef<OsStr>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let seq = PROCESS_SEQ.fetch_add(1, Ordering::SeqCst);
        let name = format!("{name}-{seq}");
        let dir = tempfile::Builder::new()
            .prefix("ferry-proc-")
            .tempdir()
            .expect("create a temp dir for a process log");
        let log_path = dir.path().join(format!("{name}.log"));
        let log = File::create(&log_path).expect("create process log file");
        let mut cmd = ferry_command(args, env);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file handle"))
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", ferry_bin()));
        let pid = child.id();
        FerryProcess {
            name,
            child: Mutex::new(child),
            pid,
            log_path,
            _dir: dir,
        }
    }

    /// The label given at spawn, with a sequence number.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Everything the process printed so far (stdout and stderr), without colours.
    pub fn log(&self) -> String {
        strip_ansi(&String::from_utf8_lossy(
            &std::fs::read(&self.log_path).unwrap_or_default(),
        ))
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log(), n)
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_exit(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        child.try_wait().ok().flatten()
    }

    /// Kills the process with SIGKILL and reaps it. Idempotent.
    pub fn kill(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.kill();
            let _ = blocking(|| child.wait());
        }
    }

    /// Sends `sig` unless the process has exited; false if that failed.
    fn signal(&self, sig: libc::c_int) -> bool {
        // Holding the lock keeps the child from being reaped meanwhile, so
        // the pid cannot have been reused.
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if child.try_wait().ok().flatten().is_some() {
            return true;
        }
        let Ok(pid) = libc::pid_t::try_from(self.pid) else {
            return false;
        };
        // SAFETY: plain kill(2) on our own unreaped child.
        unsafe { libc::kill(pid, sig) == 0 }
    }

    /// Freezes the process (SIGSTOP), like a VM pause or a long GC stall.
    pub fn stop_signal(&self) {
        assert!(
            self.signal(libc::SIGSTOP),
            "SIGSTOP to {} failed",
            self.name
        );
    }

    /// Resumes a process frozen by `stop_signal` (SIGCONT).
    pub fn cont(&self) {
        assert!(
            self.signal(libc::SIGCONT),
            "SIGCONT to {} failed",
            self.name
        );
    }

    /// Asks the process to stop (SIGTERM), as Kubernetes and `podman stop` do.
    pub fn terminate(&self) {
        assert!(
            self.signal(libc::SIGTERM),
            "SIGTERM to {} failed",
            self.name
        );
    }

    /// Waits up to `timeout` for the process to exit; `None` if it still runs.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        blocking(|| {
            let deadline = Instant::now() + timeout;
            loop {
                if let Some(status) = self.try_exit() {
                    return Some(status);
                }
                if Instant::now() >= deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    }

    /// Waits up to `timeout` for a log line satisfying `pred` and returns it.
    /// Gives up early (returning `None`) once the process has exited and the
    /// line is still not there.
    pub fn wait_for_line(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        blocking(|| {
            let deadline = Instant::now() + timeout;
            loop {
                let exited = self.try_exit().is_some();
                if let Some(line) = self.log().lines().find(|l| pred(l)) {
                    return Some(line.to_string());
                }
                if exited || Instant::now() >= deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    }

    /// Waits up to `timeout` for `needle` to appear in the log; false if it does not.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_for_line(|l| l.contains(needle), timeout)
            .is_some()
    }
}

impl Drop for FerryProcess {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        self.kill();
        // FERRY_TEST_KEEP_LOGS=DIR keeps every process log (as NAME-PID.log).
        if let Some(dir) = std::env::var_os("FERRY_TEST_KEEP_LOGS") {
            let dir = PathBuf::from(dir);
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::copy(
                &self.log_path,
                dir.join(format!("{}-{}.log", self.name, self.pid)),
            );
        }
        if std::thread::panicking() || std::env::var_os("FERRY_TEST_SHOW_LOGS").is_some() {
            eprintln!(
                "--- {} (pid {}) log, last lines ---\n{}",
                self.name,
                self.pid,
                self.log_tail(60)
            );
        }
    }
}

/// Starts `ferry coordinator --listen 127.0.0.1:PORT EXTRA_ARGS` on a free
/// port, waits until it accepts TCP, and returns it with its URL
/// (`http://127.0.0.1:PORT`). Panics with its log if it exits or never listens.
pub fn start_coordinator<K, V>(extra_args: &[&str], env: &[(K, V)]) -> (FerryProcess, String)
where
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    start_coordinator_on(free_port(), extra_args, env)
}

/// Like `start_coordinator`, on a given port: restarts a killed coordinator
/// at the address its workers and clients already know.
pub fn start_coordinator_on<K, V>(
    port: u16,
    extra_args: &[&str],
    env: &[(K, V)],
) -> (FerryProcess, String)
where
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["coordinator", "--listen", listen.as_str()];
    args.extend_from_slice(extra_args);
    let process = FerryProcess::spawn("coordinator", &args, env);
    blocking(|| {
        let deadline = Instant::now() + COORDINATOR_START_TIMEOUT;
        while !port_open(port) {
            if let Some(status) = process.try_exit() {
                panic!(
                    "coordinator exited ({status}) before listening on {listen}; log:\n{}",
                    process.log_tail(40)
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "coordinator not listening on {listen} within {COORDINATOR_START_TIMEOUT:?}; log:\n{}",
                    process.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    (process, format!("http://{listen}"))
}

/// Starts `ferry worker --coordinator URL --concurrency N` with extra `env`.
pub fn start_worker<K, V>(coordinator_url: &str, concurrency: usize, env: &[(K, V)]) -> FerryProcess
where
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let concurrency = concurrency.to_string();
    FerryProcess::spawn(
        "worker",
        &[
            "worker",
            "--coordinator",
            coordinator_url,
            "--concurrency",
            concurrency.as_str(),
        ],
        env,
    )
}

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
        .unwrap_or_else(|e| panic!("spawn {command}: {e}"));
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

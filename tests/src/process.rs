//! The real `ferry` binary as a separate process with a log file of its own.

use std::ffi::OsStr;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::sync::blocking;
use crate::text::{strip_ansi, tail};

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

/// `ferry ARGS` with `env` on top of this process's environment, minus any
/// `FERRY_*` / `MAPPER_*` settings inherited from the developer's shell (they
/// would silently change what is under test), plain-text logs at `RUST_LOG`.
/// A `FERRY_BIN` in `env` runs that binary for this process alone (another
/// version's worker or coordinator).
pub(crate) fn ferry_command<S, K, V>(args: &[S], env: &[(K, V)]) -> Command
where
    S: AsRef<OsStr>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let own = env
        .iter()
        .rev()
        .find(|(k, _)| k.as_ref() == "FERRY_BIN")
        .map(|(_, v)| PathBuf::from(v.as_ref()));
    let mut cmd = Command::new(own.unwrap_or_else(ferry_bin));
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

    /// True while the process has not exited (a frozen process runs).
    pub fn is_running(&self) -> bool {
        self.try_exit().is_none()
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

    /// Asks the process to stop (SIGTERM), as Kubernetes does; does not wait.
    pub fn terminate(&self) {
        assert!(
            self.signal(libc::SIGTERM),
            "SIGTERM to {} failed",
            self.name
        );
    }

    /// Freezes the process (SIGSTOP), like a VM pause or a long GC stall.
    pub fn freeze(&self) {
        assert!(
            self.signal(libc::SIGSTOP),
            "SIGSTOP to {} failed",
            self.name
        );
    }

    /// Resumes a process frozen by `freeze` (SIGCONT).
    pub fn thaw(&self) {
        assert!(
            self.signal(libc::SIGCONT),
            "SIGCONT to {} failed",
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

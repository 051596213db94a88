//! One `ferry` role in a test cluster (a coordinator or a worker) across its
//! lives: killed, frozen or stopped, then started again with the same
//! arguments and environment, every earlier life's log kept.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::net::port_open;
use crate::process::FerryProcess;
use crate::sync::blocking;

/// How long a coordinator may take to accept TCP connections.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// What a fresh process must do before `start` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// Nothing: return once spawned.
    Spawned,
    /// Accept TCP connections on `127.0.0.1:PORT`.
    Listening(u16),
}

/// How to start one role: its label, `ferry` arguments and environment.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Short label: `c0`, `w2`.
    pub label: String,
    /// The process name prefix for its log (`coordinator`, `worker`).
    pub role: &'static str,
    /// `ferry` arguments.
    pub args: Vec<String>,
    /// Environment on top of the harness's.
    pub env: Vec<(String, String)>,
    /// When a start counts as done.
    pub ready: Ready,
}

/// A role's current process and the processes of its earlier lives.
pub struct Node {
    spec: NodeSpec,
    current: FerryProcess,
    past: Vec<FerryProcess>,
}

impl Node {
    /// Starts the first life of `spec` and waits until it is ready.
    pub fn start(spec: NodeSpec) -> Node {
        let current = spawn(&spec);
        Node {
            spec,
            current,
            past: Vec::new(),
        }
    }

    /// The label (`c0`, `w2`).
    pub fn label(&self) -> &str {
        &self.spec.label
    }

    /// How this role is started.
    pub fn spec(&self) -> &NodeSpec {
        &self.spec
    }

    /// The current life's process.
    pub fn process(&self) -> &FerryProcess {
        &self.current
    }

    /// The current life's process id.
    pub fn pid(&self) -> u32 {
        self.current.pid()
    }

    /// How many times the role was started (1 before any restart).
    pub fn lives(&self) -> usize {
        self.past.len() + 1
    }

    /// True while the current life has not exited (a frozen one runs).
    pub fn is_running(&self) -> bool {
        self.current.is_running()
    }

    /// The current life's exit status, if it has exited.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.current.try_exit()
    }

    /// Waits up to `timeout` for the current life to exit.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        self.current.wait_exit(timeout)
    }

    /// SIGKILL: the current life dies at once, holding whatever it held.
    pub fn kill(&self) {
        self.current.kill();
    }

    /// SIGTERM: asks the current life to stop; does not wait.
    pub fn terminate(&self) {
        self.current.terminate();
    }

    /// SIGSTOP: freezes the current life (a VM pause, a long GC stall).
    pub fn freeze(&self) {
        self.current.freeze();
    }

    /// SIGCONT: resumes a frozen life.
    pub fn thaw(&self) {
        self.current.thaw();
    }

    /// Starts a new life with the same arguments and environment (killing
    /// the current one first if it still runs) and waits until it is ready.
    pub fn restart(&mut self) {
        self.current.kill();
        let fresh = spawn(&self.spec);
        self.past.push(std::mem::replace(&mut self.current, fresh));
    }

    /// The current life's log.
    pub fn log(&self) -> String {
        self.current.log()
    }

    /// The last `n` lines of the current life's log.
    pub fn log_tail(&self, n: usize) -> String {
        self.current.log_tail(n)
    }

    /// Every life's log, oldest first.
    pub fn logs(&self) -> Vec<String> {
        self.past
            .iter()
            .chain(std::iter::once(&self.current))
            .map(FerryProcess::log)
            .collect()
    }

    /// Every line of every life, oldest first.
    pub fn all_lines(&self) -> Vec<String> {
        self.logs()
            .iter()
            .flat_map(|l| l.lines().map(str::to_string).collect::<Vec<_>>())
            .collect()
    }

    /// Waits up to `timeout` for a line of the current life satisfying
    /// `pred`; `None` if it does not come (or the process exits first).
    pub fn wait_for_line(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        self.current.wait_for_line(pred, timeout)
    }

    /// Waits up to `timeout` for `needle` in the current life's log.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.current.wait_for_log(needle, timeout)
    }

    /// Like `wait_for_line`, but panics with the log's tail when the line
    /// does not come; `what` says what was awaited.
    pub fn expect_line(
        &self,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
        what: &str,
    ) -> String {
        self.wait_for_line(pred, timeout).unwrap_or_else(|| {
            panic!(
                "{} ({}) did not log {what} within {timeout:?}; log:\n{}",
                self.label(),
                self.current.name(),
                self.log_tail(40)
            )
        })
    }

    /// Like `wait_for_log`, but panics with the log's tail when `needle` does not come.
    pub fn expect_log(&self, needle: &str, timeout: Duration) -> String {
        self.expect_line(|l| l.contains(needle), timeout, &format!("`{needle}`"))
    }
}

/// Spawns one life of `spec` and waits until it is ready; panics with its
/// log if it exits first or never gets ready.
fn spawn(spec: &NodeSpec) -> FerryProcess {
    let process = FerryProcess::spawn(
        &format!("{}-{}", spec.role, spec.label),
        &spec.args,
        &spec.env,
    );
    if let Ready::Listening(port) = spec.ready {
        blocking(|| {
            let deadline = Instant::now() + LISTEN_TIMEOUT;
            while !port_open(port) {
                if let Some(status) = process.try_exit() {
                    panic!(
                        "{} {} exited ({status}) before listening on 127.0.0.1:{port}; log:\n{}",
                        spec.role,
                        spec.label,
                        process.log_tail(40)
                    );
                }
                if Instant::now() >= deadline {
                    panic!(
                        "{} {} not listening on 127.0.0.1:{port} within {LISTEN_TIMEOUT:?}; log:\n{}",
                        spec.role,
                        spec.label,
                        process.log_tail(40)
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
    }
    process
}

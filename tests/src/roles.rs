//! Typed handles on a test cluster's `ferry` processes: coordinators and
//! workers. Both dereference to `Node` (kill, terminate, freeze, thaw,
//! restart, logs).

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use crate::log_lines::{job_lines, log_field, Leadership, WORKER_REGISTERED};
use crate::node::Node;

/// A `ferry coordinator` on a fixed loopback port: a restart comes back at
/// the address workers and clients already know.
pub struct Coordinator {
    node: Node,
    port: u16,
    scheme: &'static str,
}

impl Coordinator {
    pub(crate) fn new(node: Node, port: u16, scheme: &'static str) -> Self {
        Coordinator { node, port, scheme }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its URL, `http://127.0.0.1:PORT` (`https://` when it serves TLS).
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    /// Where the current life stands in the election (its last leadership
    /// line); `None` when it has exited or said nothing yet.
    pub fn leadership(&self) -> Option<Leadership> {
        if !self.is_running() {
            return None;
        }
        Leadership::last_in(&self.log())
    }

    /// True when the current life runs and its last leadership line says it leads.
    pub fn is_leader(&self) -> bool {
        self.leadership() == Some(Leadership::Leader)
    }

    /// The current life's lines carrying `job=JOB`.
    pub fn job_log(&self, job: &str) -> Vec<String> {
        job_lines(&self.log(), job)
    }
}

impl Deref for Coordinator {
    type Target = Node;

    fn deref(&self) -> &Node {
        &self.node
    }
}

impl DerefMut for Coordinator {
    fn deref_mut(&mut self) -> &mut Node {
        &mut self.node
    }
}

/// A `ferry worker` following the cluster's coordinators.
pub struct Worker {
    node: Node,
}

impl Worker {
    pub(crate) fn new(node: Node) -> Self {
        Worker { node }
    }

    /// The worker ids the current life registered under (its
    /// `registered with coordinator worker=W` lines), in order.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for line in self.log().lines() {
            if !line.contains(WORKER_REGISTERED) {
                continue;
            }
            if let Some(id) = log_field(line, "worker") {
                if !ids.iter().any(|i| i == id) {
                    ids.push(id.to_string());
                }
            }
        }
        ids
    }

    /// Waits until the current life has registered; panics with its log otherwise.
    pub fn wait_registered(&self, timeout: Duration) {
        self.expect_log(WORKER_REGISTERED, timeout);
    }
}

impl Deref for Worker {
    type Target = Node;

    fn deref(&self) -> &Node {
        &self.node
    }
}

impl DerefMut for Worker {
    fn deref_mut(&mut self) -> &mut Node {
        &mut self.node
    }
}

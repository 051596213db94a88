//! Fault points for tests, enabled by `FERRY_FAULT`:
//! - `die_after_commit:K` makes the worker exit right after its K-th chunk
//!   commit, before reporting it;
//! - `panic_mid_copy:K` makes the K-th chunk this worker starts copying panic
//!   in the middle of its copy (once).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use ferry_common::proto::ChunkRef;

/// Which fault is armed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Fault {
    #[default]
    None,
    DieAfterCommit(u64),
    PanicMidCopy(u64),
}

/// Fault points read once from the environment.
#[derive(Debug, Default)]
pub struct Faults {
    fault: Fault,
    commits: AtomicU64,
    /// Chunk attempts seen copying, by (job, chunk, token).
    copying: Mutex<HashSet<(String, u32, u64)>>,
    panicked: AtomicBool,
}

impl Faults {
    /// Reads `FERRY_FAULT`; unknown values are refused so a typo cannot pass silently.
    pub fn from_env() -> Result<Self, String> {
        let Ok(v) = std::env::var("FERRY_FAULT") else {
            return Ok(Self::default());
        };
        let bad = || {
            format!("invalid FERRY_FAULT={v:?}: expected die_after_commit:K or panic_mid_copy:K with K > 0")
        };
        let (name, k) = v.split_once(':').ok_or_else(bad)?;
        let k = k.parse::<u64>().ok().filter(|k| *k > 0).ok_or_else(bad)?;
        let fault = match name {
            "die_after_commit" => Fault::DieAfterCommit(k),
            "panic_mid_copy" => Fault::PanicMidCopy(k),
            _ => return Err(bad()),
        };
        Ok(Self {
            fault,
            ..Self::default()
        })
    }

    /// Called after each chunk commit; exits the process at the configured one.
    pub fn after_commit(&self) {
        let n = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fault == Fault::DieAfterCommit(n) {
            eprintln!("FERRY_FAULT: exiting after commit {n}, before reporting it");
            std::process::exit(86);
        }
    }

    /// Called while a chunk's rows stream; panics in the K-th chunk copied.
    pub fn mid_copy(&self, chunk: &ChunkRef) {
        let Fault::PanicMidCopy(k) = self.fault else {
            return;
        };
        let seen = {
            let mut copying = self.copying.lock().unwrap_or_else(|p| p.into_inner());
            copying.insert((chunk.job_id.clone(), chunk.chunk_no, chunk.fencing_token));
            copying.len() as u64
        };
        if seen == k && !self.panicked.swap(true, Ordering::SeqCst) {
            panic!(
                "FERRY_FAULT: panicking in the middle of copying chunk {} of job {}",
                chunk.chunk_no, chunk.job_id
            );
        }
    }
}

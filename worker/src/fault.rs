//! Fault points for tests, enabled by `FERRY_FAULT`: `die_after_commit:K`
//! makes the worker exit right after its K-th chunk commit, before reporting it.

use std::sync::atomic::{AtomicU64, Ordering};

/// Fault points read once from the environment.
#[derive(Debug, Default)]
pub struct Faults {
    die_after_commit: Option<u64>,
    commits: AtomicU64,
}

impl Faults {
    /// Reads `FERRY_FAULT`; unknown values are refused so a typo cannot pass silently.
    pub fn from_env() -> Result<Self, String> {
        let Ok(v) = std::env::var("FERRY_FAULT") else {
            return Ok(Self::default());
        };
        match v.split_once(':') {
            Some(("die_after_commit", k)) => match k.parse::<u64>() {
                Ok(k) if k > 0 => Ok(Self {
                    die_after_commit: Some(k),
                    ..Self::default()
                }),
                _ => Err(format!(
                    "invalid FERRY_FAULT={v:?}: expected die_after_commit:K with K > 0"
                )),
            },
            _ => Err(format!(
                "invalid FERRY_FAULT={v:?}: expected die_after_commit:K"
            )),
        }
    }

    /// Called after each chunk commit; exits the process at the configured one.
    pub fn after_commit(&self) {
        let n = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        if self.die_after_commit == Some(n) {
            eprintln!("FERRY_FAULT: exiting after commit {n}, before reporting it");
            std::process::exit(86);
        }
    }
}

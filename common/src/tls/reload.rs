//! A value built from files and built again when any of them changes (a
//! Kubernetes Secret rotated under a running pod): certificates, keys, CA
//! bundles, the tokens file. What is in use keeps working while the new value
//! is built; a file caught half-written or invalid keeps the old value (and is
//! reported once) until it is whole.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};

use crate::timing::SECURITY_FILE_POLL;

/// Builds the value from its files.
type Build<T, E> = dyn Fn() -> Result<T, E> + Send + Sync;

/// The current value built from `paths`, swapped when their contents change.
pub struct Watched<T> {
    what: &'static str,
    paths: Vec<PathBuf>,
    current: RwLock<Arc<T>>,
}

impl<T: Send + Sync + 'static> Watched<T> {
    /// Builds the value once (an error here stops start-up) and, inside a
    /// Tokio runtime, checks the files every `SECURITY_FILE_POLL` for as long
    /// as the returned handle lives.
    pub fn start<E: std::fmt::Display + 'static>(
        what: &'static str,
        paths: Vec<PathBuf>,
        build: impl Fn() -> Result<T, E> + Send + Sync + 'static,
    ) -> Result<Arc<Self>, E> {
        let first = build()?;
        let fingerprint = fingerprint(&paths);
        let me = Arc::new(Self {
            what,
            paths,
            current: RwLock::new(Arc::new(first)),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(poll(Arc::downgrade(&me), Box::new(build), fingerprint));
        }
        Ok(me)
    }

    /// A value that never changes (tests, and values without files).
    pub fn fixed(what: &'static str, value: T) -> Arc<Self> {
        Arc::new(Self {
            what,
            paths: Vec::new(),
            current: RwLock::new(Arc::new(value)),
        })
    }

    /// The value in use now.
    pub fn get(&self) -> Arc<T> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn set(&self, value: T) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(value);
    }
}

/// A digest of the files' contents; `None` stands for a file that cannot be
/// read (it counts as a change once it can be read again).
fn fingerprint(paths: &[PathBuf]) -> Vec<Option<[u8; 32]>> {
    paths
        .iter()
        .map(|p| std::fs::read(p).ok().map(|b| Sha256::digest(&b).into()))
        .collect()
}

async fn poll<T: Send + Sync + 'static, E: std::fmt::Display + 'static>(
    watched: std::sync::Weak<Watched<T>>,
    build: Box<Build<T, E>>,
    mut applied: Vec<Option<[u8; 32]>>,
) {
    let mut reported: Option<Vec<Option<[u8; 32]>>> = None;
    loop {
        tokio::time::sleep(SECURITY_FILE_POLL).await;
        let Some(w) = watched.upgrade() else { return };
        let now = fingerprint(&w.paths);
        if now == applied || reported.as_ref() == Some(&now) {
            continue;
        }
        match build() {
            Ok(value) => {
                w.set(value);
                applied = now;
                reported = None;
                tracing::info!(what = w.what, files = ?w.paths, "files changed: reloaded");
            }
            Err(e) => {
                tracing::warn!(what = w.what, error = %e, "files changed but cannot be used; keeping the previous ones until they can");
                reported = Some(now);
            }
        }
    }
}

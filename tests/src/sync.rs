//! Running blocking harness code from inside async tests.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f`, which blocks, without stalling the tokio runtime it may be
/// called from: on a multi-thread runtime the worker hands its queued tasks
/// (for example tokio-postgres connection tasks) to another thread first.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

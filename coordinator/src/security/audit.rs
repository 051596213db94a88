//! The audit log: one structured line per job change a caller asked for
//! (submit, cancel, resume, repair), saying who, with what role and
//! credential, and which job. Operators grep for `audit`.

use super::roles::Caller;

/// A job change a caller can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// SubmitJob.
    Submit,
    /// CancelJob.
    Cancel,
    /// ResumeJob.
    Resume,
    /// RepairJob.
    Repair,
    /// CollectGarbage (`job` is empty: it concerns every finished job).
    CollectGarbage,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Submit => "submit",
            Action::Cancel => "cancel",
            Action::Resume => "resume",
            Action::Repair => "repair",
            Action::CollectGarbage => "gc",
        }
    }
}

/// The caller of a request: the one the auth layer found, or anonymous when
/// authentication is off.
pub fn caller<T>(request: &tonic::Request<T>) -> Caller {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(Caller::anonymous)
}

/// Logs that `caller` did `action` on `job` (`ok`), or was refused (`error`).
pub fn record(caller: &Caller, action: Action, job: &str, outcome: Result<(), &str>) {
    match outcome {
        Ok(()) => tracing::info!(
            action = action.as_str(),
            job = %job,
            who = %caller.display_name(),
            role = %caller.role,
            credential = %caller.credential,
            "audit"
        ),
        Err(error) => tracing::warn!(
            action = action.as_str(),
            job = %job,
            who = %caller.display_name(),
            role = %caller.role,
            credential = %caller.credential,
            error = %error,
            "audit: refused"
        ),
    }
}

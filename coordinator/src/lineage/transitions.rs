//! Which lineage events a job's observed states call for: a START when it
//! runs, one of COMPLETE, FAIL or ABORT when it ends.

use std::collections::HashMap;

use ferry_common::proto::JobState;

use super::event::EventType;

/// What was last reported for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reported {
    /// Nothing yet (pending or planning).
    Nothing,
    /// START.
    Started,
    /// An end event (or the job had ended when first seen).
    Ended,
}

/// Job states seen so far, by job id, for one leader term.
#[derive(Debug, Default)]
pub struct Tracker {
    jobs: HashMap<String, Reported>,
}

fn end_event(state: JobState) -> Option<EventType> {
    match state {
        JobState::Succeeded => Some(EventType::Complete),
        JobState::Failed => Some(EventType::Fail),
        JobState::Cancelled => Some(EventType::Abort),
        _ => None,
    }
}

impl Tracker {
    /// The events due for `job_id` now in `state`. A job first seen
    /// `inherited` (at a term's first look, created by a previous leader)
    /// that already ended is taken as reported by that leader; running ones
    /// get their START again (same run id, so a collector sees the same run).
    pub fn observe(&mut self, job_id: &str, state: JobState, inherited: bool) -> Vec<EventType> {
        let before = self.jobs.get(job_id).copied();
        let (after, events) = match (before, state, end_event(state)) {
            (None, _, Some(_)) if inherited => (Reported::Ended, vec![]),
            (Some(Reported::Ended), _, Some(_)) => (Reported::Ended, vec![]),
            (Some(Reported::Started), _, Some(end)) => (Reported::Ended, vec![end]),
            (_, _, Some(end)) => (Reported::Ended, vec![EventType::Start, end]),
            (Some(Reported::Started), JobState::Running, None) => (Reported::Started, vec![]),
            (_, JobState::Running, None) => (Reported::Started, vec![EventType::Start]),
            (_, _, None) => (Reported::Nothing, vec![]),
        };
        self.jobs.insert(job_id.to_string(), after);
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventType::*;

    #[test]
    fn one_start_and_one_end_per_run() {
        let mut t = Tracker::default();
        assert!(t.observe("j", JobState::Pending, false).is_empty());
        assert!(t.observe("j", JobState::Planning, false).is_empty());
        assert_eq!(t.observe("j", JobState::Running, false), vec![Start]);
        assert!(t.observe("j", JobState::Running, false).is_empty());
        assert_eq!(t.observe("j", JobState::Succeeded, false), vec![Complete]);
        assert!(t.observe("j", JobState::Succeeded, false).is_empty());
    }

    #[test]
    fn a_job_that_ends_between_looks_still_starts() {
        let mut t = Tracker::default();
        assert_eq!(
            t.observe("j", JobState::Failed, false),
            vec![Start, Fail],
            "planning failed before a look"
        );
        let mut t = Tracker::default();
        t.observe("k", JobState::Pending, false);
        assert_eq!(
            t.observe("k", JobState::Cancelled, false),
            vec![Start, Abort]
        );
    }

    #[test]
    fn a_new_term_reports_running_jobs_but_not_ended_ones() {
        let mut t = Tracker::default();
        assert!(t.observe("old", JobState::Succeeded, true).is_empty());
        assert_eq!(t.observe("live", JobState::Running, true), vec![Start]);
        assert_eq!(
            t.observe("live", JobState::Succeeded, false),
            vec![Complete]
        );
    }

    #[test]
    fn a_resumed_job_starts_again() {
        let mut t = Tracker::default();
        t.observe("j", JobState::Running, false);
        assert_eq!(t.observe("j", JobState::Failed, false), vec![Fail]);
        assert!(t.observe("j", JobState::Pending, false).is_empty());
        assert_eq!(t.observe("j", JobState::Running, false), vec![Start]);
        assert_eq!(t.observe("j", JobState::Succeeded, false), vec![Complete]);
    }
}

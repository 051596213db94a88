//! `ferry history`: jobs as the job history table records them.

use ferry_common::client::is_failover_status;
use ferry_common::proto::{JobState, ListHistoryRequest};

use crate::client::{connect, describe_status, exit_code, CoordinatorArg};

/// Flags of `ferry history`.
#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    #[command(flatten)]
    coord: CoordinatorArg,
    /// Most jobs listed.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Only jobs in this state: running, succeeded, failed or cancelled.
    #[arg(long, value_parser = parse_state)]
    state: Option<JobState>,
}

fn parse_state(s: &str) -> Result<JobState, String> {
    match JobState::from_str_name(&format!("JOB_STATE_{}", s.trim().to_ascii_uppercase())) {
        Some(
            st @ (JobState::Running | JobState::Succeeded | JobState::Failed | JobState::Cancelled),
        ) => Ok(st),
        _ => Err(format!(
            "unknown state {s:?}: use running, succeeded, failed or cancelled"
        )),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix milliseconds (`-` for 0).
fn utc(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil_from_days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `ferry history`.
pub async fn run(a: HistoryArgs) -> i32 {
    let c = match connect(&a.coord) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let req = ListHistoryRequest {
        limit: a.limit,
        state: a.state.unwrap_or(JobState::Unspecified) as i32,
    };
    let mut tries = 0;
    let resp = loop {
        match c.jobs().list_history(req).await {
            Ok(r) => break r.into_inner(),
            Err(s) if is_failover_status(&s) && tries + 1 < c.len() => {
                tries += 1;
                c.rotate();
            }
            Err(s) => {
                eprintln!("error: {}", describe_status(&c, &s));
                return exit_code(&s);
            }
        }
    };
    for w in &resp.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "{:<13} {:<10} {:>4} {:>12} {:>8}  {:<20} {:<20}  TABLE",
        "JOB", "STATE", "RUNS", "ROWS", "REJECTED", "STARTED", "ENDED"
    );
    for e in resp.entries {
        let state = JobState::try_from(e.state).unwrap_or(JobState::Unspecified);
        println!(
            "{:<13} {:<10} {:>4} {:>12} {:>8}  {:<20} {:<20}  {}",
            e.job_id,
            state.label(),
            e.runs,
            e.rows_written,
            e.rows_rejected,
            utc(if e.started_at_ms > 0 {
                e.started_at_ms
            } else {
                e.submitted_at_ms
            }),
            utc(e.ended_at_ms),
            e.target_table
        );
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_and_parses_states() {
        assert_eq!(utc(0), "-");
        assert_eq!(utc(951_868_800_000), "2000-03-01T00:00:00Z");
        assert_eq!(parse_state("failed").unwrap(), JobState::Failed);
        assert!(parse_state("planning").is_err());
    }
}

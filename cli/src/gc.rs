//! `ferry gc`: removes the ledger rows of jobs long finished from every
//! database the coordinator's connections name (the leader also does this
//! hourly past FERRY_LEDGER_RETENTION).

use ferry_common::config::parse_duration;
use ferry_common::proto::CollectGarbageRequest;

use crate::client::{call, connect_long, CoordinatorArg};
use crate::output::{print_json, OutputArg};

/// Flags of `ferry gc`.
#[derive(clap::Args, Debug)]
pub struct GcArgs {
    #[command(flatten)]
    coord: CoordinatorArg,
    /// Remove the ledger rows of jobs whose last chunk committed longer ago
    /// than this (e.g. 30d, 12h); default: the coordinator's
    /// FERRY_LEDGER_RETENTION. Jobs the coordinator still holds keep theirs.
    #[arg(long, value_parser = parse_older_than)]
    older_than: Option<std::time::Duration>,
    #[command(flatten)]
    out: OutputArg,
}

fn parse_older_than(value: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration("--older-than", value).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("--older-than 0 would remove the ledger rows of every finished job at once: give a retention such as 30d".into());
    }
    Ok(d)
}

/// `ferry gc`.
pub async fn run(a: GcArgs) -> i32 {
    let c = match connect_long(&a.coord) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let req = CollectGarbageRequest {
        older_than_ms: a.older_than.map_or(0, |d| d.as_millis() as u64),
    };
    let resp = match call(&c, |mut j| async move { j.collect_garbage(req).await }).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    if a.out.json() {
        print_json(&resp);
        return 0;
    }
    for w in &resp.warnings {
        eprintln!("warning: {w}");
    }
    let days = resp.older_than_ms as f64 / 86_400_000.0;
    println!(
        "ledger rows of jobs finished over {days:.1} days ago removed; {} jobs the coordinator holds kept theirs",
        resp.jobs_kept
    );
    for d in &resp.databases {
        println!(
            "{}: removed {} ledger rows of {} jobs",
            d.connection, d.rows, d.jobs
        );
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_no_retention() {
        assert!(parse_older_than("0").is_err());
        assert!(parse_older_than("soon").is_err());
        assert_eq!(
            parse_older_than("30d").unwrap(),
            std::time::Duration::from_secs(30 * 86_400)
        );
    }
}

//! `ferry plan`: a dry run. Plans a job with the flags of `ferry submit` and
//! prints the plan; the coordinator stores no job and writes to no database.

use ferry_common::proto::{PlanJobRequest, PlanJobResponse, PlanSpread};

use crate::client::{call, connect_long, SubmitArgs};
use crate::output::{print_json, OutputArg};

/// Flags of `ferry plan`: those of `ferry submit`, plus `--output`.
#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    submit: SubmitArgs,
    #[command(flatten)]
    out: OutputArg,
}

/// `ferry plan`.
pub async fn run(a: PlanArgs) -> i32 {
    let c = match connect_long(a.submit.coordinator()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let req = PlanJobRequest {
        spec: Some(a.submit.spec()),
    };
    let plan = match call(&c, |mut j| {
        let req = req.clone();
        async move { j.plan_job(req).await }
    })
    .await
    {
        Ok(p) => p,
        Err(code) => return code,
    };
    if a.out.json() {
        print_json(&plan);
    } else {
        for line in lines(&plan) {
            println!("{line}");
        }
    }
    0
}

/// `min N / median N / max N`, each value shown by `show`.
fn spread(s: Option<&PlanSpread>, show: impl Fn(u64) -> String) -> String {
    let s = s.cloned().unwrap_or_default();
    format!(
        "min {} / median {} / max {}",
        show(s.min),
        show(s.median),
        show(s.max)
    )
}

/// Bytes for people (B, KiB, MiB, GiB).
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The plan as lines for people, one fact a line, `name: value`.
fn lines(p: &PlanJobResponse) -> Vec<String> {
    let mut out = vec![
        format!("plan for {} (dry run: nothing was written)", p.target_table),
        format!("strategy: {}", p.strategy),
        format!(
            "key: {}",
            if p.key.is_empty() {
                "none".to_string()
            } else {
                p.key.join(", ")
            }
        ),
        format!("chunks: {}", p.chunks),
        format!("rows estimated: {}", p.rows_estimated),
        format!(
            "rows per chunk: {} ({} of {} chunks explained)",
            spread(p.rows_per_chunk.as_ref(), |n| n.to_string()),
            p.chunks_explained,
            p.chunks
        ),
        format!(
            "bytes per chunk: {}",
            spread(p.bytes_per_chunk.as_ref(), bytes)
        ),
    ];
    if p.casts.is_empty() {
        out.push("casts: none".into());
    } else {
        let casts: Vec<String> = p
            .casts
            .iter()
            .map(|c| format!("{} -> {} as {}", c.source, c.target, c.cast))
            .collect();
        out.push(format!("casts: {}", casts.join(", ")));
    }
    out.push(format!(
        "connections: {} = {} workers × 2 + {} metadata + {} buffer (the guide's formula)",
        p.connections_needed, p.workers, p.connections_metadata, p.connections_buffer
    ));
    out.push(format!(
        "memory (guide): {} = chunk_size × {} avg row × {} workers",
        bytes(p.memory_guide_bytes),
        bytes(p.avg_row_bytes),
        p.workers
    ));
    out.push(format!(
        "memory (Ferry's bound): {} = {}",
        bytes(p.memory_bound_bytes),
        p.memory_bound_why
    ));
    out.push(format!("consistency: {}", p.consistency));
    if !p.would_create_table.is_empty() {
        out.push(format!(
            "would create table: {} (--create-table)",
            p.would_create_table
        ));
    }
    out.extend(p.warnings.iter().map(|w| format!("warning: {w}")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_shown_in_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(2048), "2.0 KiB");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }
}

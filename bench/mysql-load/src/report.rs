//! The runs and their summary: `runs.tsv` (every run) and `table.md`
//! (medians per method and the ratios the issue asks for).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

/// One timed run.
#[derive(Debug, Clone)]
pub struct Run {
    /// Round number (1-based).
    pub round: usize,
    /// Method label.
    pub method: String,
    /// Rows written.
    pub rows: u64,
    /// Wall seconds of the timed part.
    pub seconds: f64,
    /// CPU seconds of the bench process and its children (the CLI) during the run.
    pub client_cpu: f64,
    /// CPU seconds of mariadbd during the run.
    pub server_cpu: f64,
    /// InnoDB dirty pages left when the run started.
    pub dirty_before: u64,
    /// `ok`, or what went wrong.
    pub verdict: String,
}

impl Run {
    /// Rows per second.
    pub fn rate(&self) -> f64 {
        self.rows as f64 / self.seconds
    }

    /// One tab-separated line.
    pub fn line(&self) -> String {
        format!(
            "{}\t{}\t{}\t{:.3}\t{:.0}\t{:.2}\t{:.2}\t{}\t{}",
            self.round,
            self.method,
            self.rows,
            self.seconds,
            self.rate(),
            self.client_cpu,
            self.server_cpu,
            self.dirty_before,
            self.verdict
        )
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median rows/s of each method, in first-run order.
fn medians(runs: &[Run]) -> Vec<(String, f64, Vec<&Run>)> {
    let mut out: Vec<(String, f64, Vec<&Run>)> = Vec::new();
    for r in runs {
        if !out.iter().any(|(m, _, _)| *m == r.method) {
            let mine: Vec<&Run> = runs.iter().filter(|x| x.method == r.method).collect();
            let ok: Vec<f64> = mine
                .iter()
                .filter(|x| x.verdict == "ok")
                .map(|x| x.rate())
                .collect();
            out.push((r.method.clone(), median(ok), mine));
        }
    }
    out
}

/// Writes `runs.tsv` and `table.md` into `out`.
pub fn write(out: &Path, runs: &[Run], rows: usize, chunk: usize) -> Result<()> {
    let mut tsv =
        String::from("round\tmethod\trows\tseconds\trows_per_s\tclient_cpu_s\tserver_cpu_s\tdirty_pages_before\tverdict\n");
    for r in runs {
        tsv.push_str(&r.line());
        tsv.push('\n');
    }
    std::fs::write(out.join("runs.tsv"), tsv)?;

    let meds = medians(runs);
    let mut md = format!(
        "{rows} rows, chunks of {chunk} rows (one transaction each), {} rounds, interleaved.\n\n\
         | method | median rows/s | runs (rows/s) | median s | median client CPU s | median server CPU s | checked |\n\
         |---|---:|---|---:|---:|---:|---|\n",
        runs.iter().map(|r| r.round).max().unwrap_or(0)
    );
    for (m, med, mine) in &meds {
        let each: Vec<String> = mine.iter().map(|r| format!("{:.0}", r.rate())).collect();
        let ok = mine.iter().filter(|r| r.verdict == "ok").count();
        let _ = writeln!(
            md,
            "| {m} | {med:.0} | {} | {:.2} | {:.2} | {:.2} | {ok}/{} ok |",
            each.join(", "),
            median(mine.iter().map(|r| r.seconds).collect()),
            median(mine.iter().map(|r| r.client_cpu).collect()),
            median(mine.iter().map(|r| r.server_cpu).collect()),
            mine.len()
        );
    }
    let best = |prefix: &str| {
        meds.iter()
            .filter(|(m, med, _)| m.starts_with(prefix) && med.is_finite())
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(m, med, _)| (m.clone(), *med))
    };
    let get = |name: &str| {
        meds.iter()
            .find(|(m, _, _)| m == name)
            .map(|(m, med, _)| (m.clone(), *med))
    };
    let pairs = [
        ("b", get("b-async-load"), "a", best("a-")),
        ("c", best("c-"), "a", best("a-")),
        ("a", best("a-"), "d", get("d-cli-chunks")),
        ("b", get("b-async-load"), "d", get("d-cli-chunks")),
        ("a", best("a-"), "d", get("d-cli-one")),
        ("b", get("b-async-load"), "d", get("d-cli-one")),
    ];
    let _ = writeln!(md, "\n| ratio of medians | value |\n|---|---:|");
    for (x, xv, y, yv) in pairs {
        if let (Some((xm, xr)), Some((ym, yr))) = (xv, yv) {
            let _ = writeln!(md, "| ({x}) {xm} / ({y}) {ym} | {:.2} |", xr / yr);
        }
    }
    std::fs::write(out.join("table.md"), &md)?;
    println!("{md}");
    Ok(())
}

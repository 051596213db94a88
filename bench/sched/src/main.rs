//! Ferry's scheduler benchmark (issue 4, part 2; issue 16, part 1 with
//! `--scale`): a real coordinator gRPC server in this process, `--jobs`
//! synthetic jobs of `--chunks` chunks in all, and `--workers` simulated
//! workers in a child process (`--role workers`) that lease and complete
//! chunks over gRPC as fast as the coordinator lets them (or, with `--rate`,
//! at a steady rate). No database. Run with MemoryStore, with EtcdStore (a
//! throwaway etcd), or both; prints leases/s, coordinator CPU and memory per
//! chunk, etcd writes, database size and a new leader's rebuild time.

mod coord;
mod etcd;
mod report;
mod scale;
mod sys;
mod workers;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, ValueEnum};

use coord::{RunOpts, StoreKind};

// the allocator the `ferry` binary runs the coordinator with
ferry_common::use_mimalloc!();

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    /// Run the benchmark (coordinator in this process, workers in a child).
    Coordinator,
    /// Internal: the simulated workers.
    Workers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Store {
    Memory,
    Etcd,
    Both,
}

#[derive(Parser, Debug)]
#[command(about = "Scheduler benchmark: chunk leases over real gRPC, no database")]
struct Args {
    /// Issue 16's fleet: 1,000,000 chunks in 100 jobs, 10,000 workers as
    /// 1,250 worker processes of 8 slots (one connection, one registration and
    /// one heartbeat each), both stores, then a steady 1,000 chunks/s on etcd;
    /// results go to their own section.
    #[arg(long)]
    scale: bool,
    /// Chunks over all jobs [default: 100,000; --scale: 1,000,000].
    #[arg(long)]
    chunks: Option<u32>,
    /// Jobs the chunks are split into, evenly [default: 1; --scale: 100].
    #[arg(long)]
    jobs: Option<u32>,
    /// Simulated workers, each leasing one chunk at a time
    /// [default: 1,000; --scale: 10,000].
    #[arg(long)]
    workers: Option<u32>,
    /// Workers per simulated worker process, which registers once with this
    /// concurrency and heartbeats once for all of them, as `ferry worker
    /// --concurrency N` does [default: 1; --scale: 8].
    #[arg(long)]
    slots: Option<u32>,
    /// gRPC connections the processes share; 0 = one per process (as separate
    /// worker processes have) [default: 0].
    #[arg(long)]
    channels: Option<u32>,
    /// Also run EtcdStore at a steady RATE chunks/s (each worker holds a chunk
    /// workers/RATE s) to count etcd writes per second [--scale: 1,000].
    #[arg(long)]
    rate: Option<u32>,
    /// End each full-speed lease phase after N completions: a sample of it at
    /// the full plan's size (jobs stay RUNNING; the rebuild is then a takeover
    /// mid-run) [default: every chunk].
    #[arg(long)]
    lease_chunks: Option<u32>,
    /// Chunks of the steady run [default: 60 s at RATE plus one hold].
    #[arg(long)]
    steady_chunks: Option<u32>,
    /// Skip timing a new leader's rebuild from etcd after the EtcdStore run.
    #[arg(long)]
    no_rebuild: bool,
    /// Workers never set CompleteChunk's `want_next`: two calls per chunk
    /// (AcquireChunk, CompleteChunk), as workers before it did.
    #[arg(long)]
    no_next: bool,
    /// Which state store(s) to run.
    #[arg(long, value_enum, default_value_t = Store::Both)]
    store: Store,
    /// etcd 3.4 binary for the EtcdStore run.
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd_bin: PathBuf,
    /// Write the results section into this Markdown file (between its markers).
    #[arg(long)]
    results: Option<PathBuf>,
    /// Coordinator logging off (default: on at `info` like `ferry coordinator`, into a file).
    #[arg(long)]
    no_log: bool,
    /// Keep the temporary directory (etcd data and log, coordinator log).
    #[arg(long)]
    keep: bool,
    /// Give up on a run after this many seconds.
    #[arg(long, default_value_t = 1800)]
    timeout_s: u64,
    /// Save etcd's CPU profile (Go pprof, `--enable-pprof`) over this many seconds after submit.
    #[arg(long, default_value_t = 0)]
    etcd_pprof_s: u64,
    #[arg(long, value_enum, default_value_t = Role::Coordinator, hide = true)]
    role: Role,
    /// Role workers: hold each chunk this many ms before reporting it.
    #[arg(long, default_value_t = 0, hide = true)]
    hold_ms: u64,
    /// Coordinator URL (role workers).
    #[arg(long, hide = true)]
    url: Option<String>,
}

fn init_log(path: &std::path::Path) -> Result<()> {
    // the filter and format of `ferry coordinator` (ferry_common::telemetry),
    // into a file instead of stderr so the terminal keeps the table
    let filter = std::env::var("FERRY_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,h2=warn,tower=warn,hyper=warn,tokio_postgres=warn".into());
    let file = std::fs::File::create(path)?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.role {
        Role::Workers => {
            let url = args
                .url
                .clone()
                .ok_or_else(|| anyhow::anyhow!("--role workers needs --url"))?;
            rt.block_on(workers::run(
                url,
                workers::Fleet {
                    workers: args.workers.unwrap_or(1),
                    slots: args.slots.unwrap_or(1),
                    chunks: args.chunks.unwrap_or(0) as u64,
                    channels: args.channels.unwrap_or(0),
                    want_next: u32::from(!args.no_next),
                    hold: Duration::from_millis(args.hold_ms),
                },
            ))
        }
        Role::Coordinator => rt.block_on(bench(args)),
    }
}

/// The sizes of a benchmark, from the flags and the `--scale` preset.
struct Sizes {
    chunks: u32,
    jobs: u32,
    workers: u32,
    slots: u32,
    channels: u32,
    rate: Option<u32>,
    steady_chunks: u32,
}

fn sizes(a: &Args) -> Sizes {
    let pick =
        |v: Option<u32>, normal: u32, scale: u32| v.unwrap_or(if a.scale { scale } else { normal });
    let workers = pick(a.workers, 1_000, 10_000);
    let rate = a.rate.or(a.scale.then_some(1_000)).filter(|r| *r > 0);
    // 60 s at the rate, plus the first hold (staggered starts)
    let steady_default = rate.map(|r| r * 60 + workers).unwrap_or(0);
    Sizes {
        chunks: pick(a.chunks, 100_000, 1_000_000),
        jobs: pick(a.jobs, 1, 100),
        workers,
        slots: pick(a.slots, 1, 8).max(1),
        channels: a.channels.unwrap_or(0),
        rate,
        steady_chunks: a.steady_chunks.unwrap_or(steady_default),
    }
}

async fn bench(args: Args) -> Result<()> {
    let sz = sizes(&args);
    let tmp = std::env::temp_dir().join(format!("ferry-sched-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let log_path = tmp.join("coordinator.log");
    if !args.no_log {
        init_log(&log_path)?;
    }
    let stores: &[StoreKind] = match args.store {
        Store::Memory => &[StoreKind::Memory],
        Store::Etcd => &[StoreKind::Etcd],
        Store::Both => &[StoreKind::Memory, StoreKind::Etcd],
    };
    println!(
        "scheduler benchmark: {} chunks in {} job(s), {} workers in {} process(es), {} connection(s), coordinator log {}",
        sz.chunks,
        sz.jobs,
        sz.workers,
        sz.workers.div_ceil(sz.slots),
        if sz.channels == 0 {
            "one per process".to_string()
        } else {
            sz.channels.to_string()
        },
        if args.no_log {
            "off".to_string()
        } else {
            log_path.display().to_string()
        }
    );
    let mut runs: Vec<RunOpts> = stores
        .iter()
        .map(|&store| RunOpts {
            store,
            chunks: sz.chunks,
            jobs: sz.jobs,
            workers: sz.workers,
            slots: sz.slots,
            channels: sz.channels,
            lease_chunks: args.lease_chunks,
            hold: Duration::ZERO,
            rebuild: !args.no_rebuild,
            no_next: args.no_next,
            etcd_bin: args.etcd_bin.clone(),
            tmp: tmp.clone(),
            keep: args.keep,
            timeout: Duration::from_secs(args.timeout_s),
            etcd_pprof_s: args.etcd_pprof_s,
        })
        .collect();
    if let Some(rate) = sz.rate {
        if stores.contains(&StoreKind::Etcd) {
            runs.push(RunOpts {
                store: StoreKind::Etcd,
                chunks: sz.steady_chunks,
                lease_chunks: None,
                hold: Duration::from_secs_f64(sz.workers as f64 / rate as f64),
                rebuild: false,
                etcd_pprof_s: 0,
                ..runs[runs.len() - 1].clone()
            });
        }
    }
    let mut results = Vec::new();
    for o in &runs {
        let store = o.store;
        if o.hold.is_zero() {
            println!("{}:", store.name());
        } else {
            println!(
                "{} at a steady {:.0} chunks/s (each chunk held {:.1} s):",
                store.name(),
                o.workers as f64 / o.hold.as_secs_f64(),
                o.hold.as_secs_f64()
            );
        }
        let r = coord::run(o, &log_path).await?;
        println!(
            "  {}: {:.0} leases/s, {:.0} µs coordinator CPU per chunk",
            r.store,
            r.leases_per_s(),
            r.cpu_per_chunk_us()
        );
        results.push(r);
    }

    if args.scale {
        let body = scale::report(&results);
        println!("\n{body}");
        if let Some(path) = &args.results {
            let mut machine = machine();
            machine.push_str(&format!(", {}", etcd_version(&args.etcd_bin)));
            let body = format!(
                "Measured {} on {machine}; command: `{}`; coordinator logging {}.\n\n{body}",
                today(),
                std::env::args().collect::<Vec<_>>().join(" "),
                if args.no_log {
                    "off"
                } else {
                    "on (info, to a file)"
                },
            );
            report::write_section(path, &body, scale::BEGIN, scale::END)?;
            println!("wrote {}", path.display());
        }
        if !args.keep {
            let _ = std::fs::remove_dir_all(&tmp);
        } else {
            println!("kept {}", tmp.display());
        }
        return Ok(());
    }
    let table = report::table(&results);
    let goals = report::goals(&results);
    let details = report::details(&results);
    let etcd: String = results.iter().map(report::etcd_details).collect();
    println!("\n{table}\n{goals}\n{details}");
    if !etcd.is_empty() {
        println!("{etcd}");
    }
    if let Some(path) = &args.results {
        let mut machine = machine();
        if stores.contains(&StoreKind::Etcd) {
            machine.push_str(&format!(", {}", etcd_version(&args.etcd_bin)));
        }
        let body = format!(
            "Measured {} on {machine}; command: `{}`; coordinator logging {}; workers {}.\n\n{table}\nGoals of issue 4 (reported, not asserted):\n\n{goals}\nMore figures:\n\n{details}\n{etcd}\n",
            today(),
            std::env::args().collect::<Vec<_>>().join(" "),
            if args.no_log { "off" } else { "on (info, to a file)" },
            if args.no_next {
                "call AcquireChunk then CompleteChunk for every chunk (--no-next)"
            } else {
                "get their next chunk from CompleteChunk (want_next), AcquireChunk only when none came"
            },
        );
        report::write_section(path, &body, report::BEGIN, report::END)?;
        println!("wrote {}", path.display());
    }
    if !args.keep {
        let _ = std::fs::remove_dir_all(&tmp);
    } else {
        println!("kept {}", tmp.display());
    }
    Ok(())
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    format!("{cpus} CPUs ({model})")
}

fn etcd_version(bin: &std::path::Path) -> String {
    std::process::Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "etcd ?".into())
}

fn today() -> String {
    std::process::Command::new("date")
        .arg("+%Y-%m-%d %H:%M")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

//! One benchmark run: a real coordinator gRPC server in this process (with
//! MemoryStore, or EtcdStore under leader election against a throwaway etcd),
//! the simulated workers in a child process, one synthetic job.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferry_common::config::JobDefaults;
use ferry_common::connections::ConnectionRegistry;
use ferry_common::ledger::DEFAULT_LEDGER_SCHEMA;
use ferry_common::proto::{JobSpec, JobState};
use ferry_common::timing::Timings;
use ferry_coordinator::leader::{self, EtcdOptions};
use ferry_coordinator::planner::Plan;
use ferry_coordinator::scheduler::{Scheduler, SchedulerConfig};
use ferry_coordinator::server;
use ferry_coordinator::store::MemoryStore;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::etcd::{Counters, Etcd};
use crate::sys;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    Etcd,
}

impl StoreKind {
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Memory => "MemoryStore",
            StoreKind::Etcd => "EtcdStore",
        }
    }
}

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub struct RunOpts {
    pub store: StoreKind,
    pub chunks: u32,
    pub workers: u32,
    pub channels: u32,
    /// Workers do not ask CompleteChunk for their next chunk.
    pub no_next: bool,
    pub etcd_bin: PathBuf,
    pub tmp: PathBuf,
    pub keep: bool,
    pub timeout: Duration,
    /// Capture etcd's CPU profile (Go pprof) for this many seconds after submit.
    pub etcd_pprof_s: u64,
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct RunResult {
    pub store: &'static str,
    pub chunks: u32,
    pub workers: u32,
    pub channels: u32,
    /// Leases granted (sum of every chunk's attempts).
    pub leases: u64,
    pub completes: u64,
    /// Submit to job SUCCEEDED, parent's clock.
    pub wall: Duration,
    /// submit_planned: storing the plan (job record + chunk records).
    pub plan_wall: Duration,
    /// Job RUNNING to SUCCEEDED: the scheduler's started_at..finished_at (ms resolution).
    pub lease_wall: Duration,
    /// Coordinator process CPU over the whole run (submit .. done) and the lease phase.
    pub coord_cpu: Duration,
    pub coord_cpu_lease: Duration,
    pub coord_user: Duration,
    pub coord_sys: Duration,
    pub coord_max_rss_kib: u64,
    /// Worker process figures, from its `done` line.
    pub workers_line: HashMap<String, f64>,
    /// etcd: counters over the whole run and over the plan phase, and its CPU.
    pub etcd_total: Option<Counters>,
    pub etcd_plan: Option<Counters>,
    pub etcd_register: Option<Counters>,
    pub etcd_cpu: Option<Duration>,
    pub etcd_peak_rss_kib: Option<u64>,
    /// CPU time the whole machine was busy from submit to done (all processes).
    pub machine_busy: Option<Duration>,
    /// Coordinator log lines written during the run.
    pub log_lines: u64,
    /// Times the leader stepped down (store refused a write or timed out) during the run.
    pub step_downs: u64,
}

impl RunResult {
    pub fn leases_per_s(&self) -> f64 {
        self.leases as f64 / self.lease_wall.as_secs_f64().max(1e-9)
    }
    pub fn completes_per_s(&self) -> f64 {
        self.completes as f64 / self.lease_wall.as_secs_f64().max(1e-9)
    }
    pub fn cpu_per_chunk_us(&self) -> f64 {
        self.coord_cpu.as_secs_f64() * 1e6 / self.chunks as f64
    }
    pub fn cpu_lease_per_chunk_us(&self) -> f64 {
        self.coord_cpu_lease.as_secs_f64() * 1e6 / self.chunks as f64
    }
    pub fn worker_cpu_per_chunk_us(&self) -> f64 {
        self.workers_line
            .get("cpu_after_register_us")
            .copied()
            .unwrap_or(0.0)
            / self.chunks as f64
    }
    /// CPU seconds that processes other than the coordinator, the workers and
    /// etcd used during the run (other load on a shared machine), and that as
    /// a share of the machine's capacity over the run.
    pub fn other_load(&self) -> Option<(f64, f64)> {
        let busy = self.machine_busy?.as_secs_f64();
        let ours = self.coord_cpu.as_secs_f64()
            + self.w("cpu_after_register_us") / 1e6
            + self.etcd_cpu.map(|d| d.as_secs_f64()).unwrap_or(0.0);
        let other = (busy - ours).max(0.0);
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as f64;
        Some((other, other / (self.wall.as_secs_f64() * cores)))
    }

    pub fn w(&self, k: &str) -> f64 {
        self.workers_line.get(k).copied().unwrap_or(0.0)
    }
}

/// A run that completes no chunk for this long has a stuck chunk.
const STALL: Duration = Duration::from_secs(120);

fn scheduler_config() -> SchedulerConfig {
    SchedulerConfig {
        defaults: JobDefaults::default(),
        // any URLs: the synthetic plan never connects
        connections: ConnectionRegistry::from_pairs([
            (
                "source".to_string(),
                "postgres://bench@127.0.0.1:1/src".to_string(),
            ),
            (
                "target".to_string(),
                "postgres://bench@127.0.0.1:1/dst".to_string(),
            ),
        ]),
        timings: Timings::default(),
        ledger_schema: DEFAULT_LEDGER_SCHEMA.to_string(),
        lifecycle: Default::default(),
    }
}

fn spec(workers: u32) -> JobSpec {
    JobSpec {
        source: "source".into(),
        target: "target".into(),
        query: "SELECT id FROM synthetic".into(),
        table: "public.synthetic".into(),
        // high enough that the per-job in-flight cap never binds
        max_workers: Some(workers.max(1000) * 2),
        ..Default::default()
    }
}

fn parse_kv(line: &str) -> HashMap<String, f64> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// Lines from line `skip` on that contain `needle`.
fn count_matching(path: &Path, skip: u64, needle: &str) -> u64 {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .skip(skip as usize)
                .filter(|l| l.contains(needle))
                .count() as u64
        })
        .unwrap_or(0)
}

fn count_lines(path: &Path) -> u64 {
    std::fs::read(path)
        .map(|b| b.iter().filter(|c| **c == b'\n').count() as u64)
        .unwrap_or(0)
}

/// Runs one store's benchmark.
pub async fn run(o: &RunOpts, log_path: &Path) -> Result<RunResult> {
    let (listener, addr) = server::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let (gate, health) = server::gate().await;
    let stop = CancellationToken::new();
    let config = scheduler_config();

    // the store: MemoryStore as `ferry local` builds it, or etcd as `ferry coordinator --etcd` does
    let mut etcd = None;
    let mut leader_task = None;
    let mut ticker = None;
    match o.store {
        StoreKind::Memory => {
            let scheduler = Scheduler::new(Arc::new(MemoryStore::new()), config);
            ticker = Some(scheduler.spawn_ticker());
            gate.lead(scheduler).await;
        }
        StoreKind::Etcd => {
            let e = Etcd::start(&o.etcd_bin, &o.tmp, o.keep, o.etcd_pprof_s > 0).await?;
            let opts = EtcdOptions {
                endpoints: vec![e.endpoint()],
                prefix: "/ferry".into(),
                advertise: format!("http://{addr}"),
                security: Default::default(),
            };
            leader_task = Some(tokio::spawn(leader::run(
                Arc::clone(&gate),
                config,
                opts,
                stop.clone(),
            )));
            etcd = Some(e);
        }
    }
    let server_stop = stop.clone();
    let server = tokio::spawn(server::serve(
        listener,
        Arc::clone(&gate),
        health,
        async move { server_stop.cancelled().await },
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    let scheduler = loop {
        if let Ok(s) = gate.scheduler() {
            break s;
        }
        if Instant::now() > deadline {
            bail!("the coordinator did not become leader within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let before_register = match &etcd {
        Some(e) => Some(e.counters().await?),
        None => None,
    };

    // the simulated workers, in a child process of this binary
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .args(["--role", "workers", "--url", &format!("http://{addr}")])
        .args(["--workers", &o.workers.to_string()])
        .args(["--chunks", &o.chunks.to_string()])
        .args(["--channels", &o.channels.to_string()])
        .args(o.no_next.then_some("--no-next"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("spawn the workers process")?;
    let mut lines = BufReader::new(child.stdout.take().context("child stdout")?).lines();
    let line = lines.next_line().await?.unwrap_or_default();
    if !line.starts_with("registered") {
        bail!("workers process: {line}");
    }
    println!("  {} workers {line}", o.store.name());
    let channels = parse_kv(&line)
        .get("channels")
        .map(|c| *c as u32)
        .unwrap_or(0);

    // before: submit
    let log_before = count_lines(log_path);
    let c0 = match etcd.as_ref() {
        Some(e) => Some(e.counters().await?),
        None => None,
    };
    let etcd_cpu0 = etcd.as_ref().and_then(|e| sys::proc_cpu(e.pid()));
    let u0 = sys::self_usage();
    let busy0 = sys::machine_busy();
    let t0 = Instant::now();
    let job_id = scheduler
        .submit_planned(
            format!("bench-{}", o.store.name()),
            spec(o.workers),
            Plan::synthetic(o.chunks),
        )
        .await
        .context("submit_planned")?;
    let plan_wall = t0.elapsed();
    let pprof = match (&etcd, o.etcd_pprof_s) {
        (Some(e), secs) if secs > 0 => {
            let port = e.client_port;
            let out = o.tmp.join("etcd-cpu.pprof");
            Some(tokio::spawn(async move {
                let r = crate::etcd::fetch_profile(port, secs).await;
                match r {
                    Ok(b) => {
                        let _ = std::fs::write(&out, b);
                        println!("  etcd CPU profile ({secs} s) in {}", out.display());
                    }
                    Err(e) => println!("  etcd CPU profile failed: {e:#}"),
                }
            }))
        }
        _ => None,
    };
    let u1 = sys::self_usage();
    let c1 = match etcd.as_ref() {
        Some(e) => Some(e.counters().await?),
        None => None,
    };
    println!(
        "  {} job {job_id}: {} chunks stored in {:.2} s; leasing…",
        o.store.name(),
        o.chunks,
        plan_wall.as_secs_f64()
    );

    // until the workers report every chunk completed
    let mut last_progress = -1.0;
    let mut stalled_since = Instant::now();
    let done = tokio::time::timeout(o.timeout, async {
        loop {
            let Some(line) = lines.next_line().await? else {
                bail!("the workers process exited early");
            };
            if line.starts_with("done") {
                return Ok(line);
            }
            if line.starts_with("error") {
                bail!("workers process: {line}");
            }
            if let Some(n) = line.strip_prefix("progress completes=") {
                let n: f64 = n.parse().unwrap_or(0.0);
                if n > last_progress {
                    last_progress = n;
                    stalled_since = Instant::now();
                } else if stalled_since.elapsed() >= STALL {
                    bail!(
                        "stalled: {n} of {} chunks completed and none for {} s (a chunk is stuck; see the coordinator log)",
                        o.chunks,
                        STALL.as_secs()
                    );
                }
                println!(
                    "  {} {:>7} / {} chunks, {:.1} s",
                    o.store.name(),
                    n,
                    o.chunks,
                    t0.elapsed().as_secs_f64()
                );
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("timed out after {:?}", o.timeout))??;
    let wall = t0.elapsed();
    let u2 = sys::self_usage();
    let busy2 = sys::machine_busy();
    let c2 = match etcd.as_ref() {
        Some(e) => Some(e.counters().await?),
        None => None,
    };
    let etcd_cpu2 = etcd.as_ref().and_then(|e| sys::proc_cpu(e.pid()));
    let etcd_peak = etcd.as_ref().and_then(|e| sys::proc_peak_rss_kib(e.pid()));
    if let Some(p) = pprof {
        let _ = p.await;
    }
    let status = child.wait().await?;
    if !status.success() {
        bail!("the workers process failed: {status}");
    }

    let job = scheduler.get_job(&job_id).await?;
    if JobState::try_from(job.state) != Ok(JobState::Succeeded) || job.chunks_succeeded != o.chunks
    {
        bail!(
            "job {job_id} ended {:?} with {}/{} chunks",
            JobState::try_from(job.state),
            job.chunks_succeeded,
            o.chunks
        );
    }
    let leases: u64 = job.chunks.iter().map(|c| c.attempt as u64).sum();
    let lease_wall = Duration::from_millis((job.finished_at_ms - job.started_at_ms).max(1) as u64);

    // shut down: server, leader loop (revokes its lease), etcd, ticker
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    if let Some(t) = leader_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    if let Some(t) = ticker {
        t.abort();
    }
    drop(scheduler);
    drop(etcd);

    let workers_line = parse_kv(&done);
    Ok(RunResult {
        store: o.store.name(),
        chunks: o.chunks,
        workers: o.workers,
        channels,
        leases,
        completes: job.chunks_succeeded as u64,
        wall,
        plan_wall,
        lease_wall,
        coord_cpu: u2.cpu.saturating_sub(u0.cpu),
        coord_cpu_lease: u2.cpu.saturating_sub(u1.cpu),
        coord_user: u2.user.saturating_sub(u0.user),
        coord_sys: u2.sys.saturating_sub(u0.sys),
        coord_max_rss_kib: u2.max_rss_kib,
        workers_line,
        etcd_total: c2.as_ref().zip(c0.as_ref()).map(|(a, b)| a.since(b)),
        etcd_plan: c1.as_ref().zip(c0.as_ref()).map(|(a, b)| a.since(b)),
        etcd_register: c0
            .as_ref()
            .zip(before_register.as_ref())
            .map(|(a, b)| a.since(b)),
        etcd_cpu: etcd_cpu2.zip(etcd_cpu0).map(|(a, b)| a.saturating_sub(b)),
        etcd_peak_rss_kib: etcd_peak,
        machine_busy: busy2.zip(busy0).map(|(a, b)| a.saturating_sub(b)),
        log_lines: count_lines(log_path).saturating_sub(log_before),
        step_downs: count_matching(log_path, log_before, "stepping down"),
    })
}

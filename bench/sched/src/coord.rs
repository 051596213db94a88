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
use ferry_common::limits::MAX_MAX_WORKERS;
use ferry_common::proto::{Consistency, JobSpec, JobState};
use ferry_common::timing::Timings;
use ferry_coordinator::leader::{self, connect_etcd, EtcdOptions};
use ferry_coordinator::planner::Plan;
use ferry_coordinator::scheduler::{Scheduler, SchedulerConfig};
use ferry_coordinator::server;
use ferry_coordinator::store::{EtcdStore, MemoryStore, StateStore};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
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
    /// Chunks over all jobs.
    pub chunks: u32,
    /// Jobs the chunks are split into (evenly).
    pub jobs: u32,
    pub workers: u32,
    /// Workers per simulated worker process (one registration each).
    pub slots: u32,
    pub channels: u32,
    /// End the lease phase after this many completions (a sample of it; the
    /// jobs stay RUNNING and a new leader rebuilds them mid-run); None: all.
    pub lease_chunks: Option<u32>,
    /// Each worker holds a chunk this long before reporting it (0: at once):
    /// a steady `workers / hold` chunks per second.
    pub hold: Duration,
    /// After the run, time a new leader's rebuild from etcd (EtcdStore only).
    pub rebuild: bool,
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
    /// The lease phase was a sample of this many completions (see `RunOpts`).
    pub lease_chunks: Option<u32>,
    pub jobs: u32,
    /// Steady run: each chunk held this long (0: as fast as possible).
    pub hold: Duration,
    pub workers: u32,
    /// Workers per simulated worker process (one registration each).
    pub slots: u32,
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
    /// Coordinator RSS (KiB) after the workers registered, after every job
    /// was stored (with chunks stored so far), and when the last chunk
    /// completed; each read after `malloc_trim`.
    pub rss_before_kib: u64,
    pub rss_series: Vec<(u32, u64)>,
    pub rss_end_kib: u64,
    /// Progress samples of the lease phase: time since go, completions, etcd counters.
    pub samples: Vec<(Duration, f64, Option<Counters>)>,
    /// etcd `Status` after the run: database size and size in use (bytes), and
    /// after compacting to the current revision and defragmenting.
    pub etcd_db: Option<(i64, i64)>,
    pub etcd_db_compacted: Option<(i64, i64)>,
    /// A new leader's rebuild from etcd: load, recover, chunks, RSS growth (KiB).
    pub rebuild: Option<Rebuild>,
}

/// A timed rebuild of the scheduler from etcd, as a new leader does it.
#[derive(Debug, Clone, Default)]
pub struct Rebuild {
    pub chunks: u64,
    pub jobs: usize,
    /// `EtcdStore::load`: every job, chunk, assignment and worker read and decoded.
    pub load: Duration,
    /// `Scheduler::recover`: the in-memory state built from the snapshot.
    pub recover: Duration,
    pub rss_growth_kib: u64,
}

/// The steady window of a run with `hold`: from two holds after go (every
/// worker is on its second chunk) to the last sample before the fleet
/// drains (fewer chunks left than workers).
#[derive(Debug, Clone, Copy, Default)]
pub struct Steady {
    pub seconds: f64,
    pub completes: f64,
    pub write_requests: f64,
    pub keys_written: f64,
}

impl RunResult {
    /// The workers as the tables show them: `10000`, or `10000 (1250 × 8)`
    /// when they are slots of worker processes.
    pub fn workers_label(&self) -> String {
        if self.slots > 1 {
            format!(
                "{} ({} × {})",
                self.workers,
                self.workers.div_ceil(self.slots),
                self.slots
            )
        } else {
            self.workers.to_string()
        }
    }

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
        self.coord_cpu_lease.as_secs_f64() * 1e6 / self.completes.max(1) as f64
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

    /// RSS growth per chunk (bytes) from before submit to after every job was stored.
    pub fn rss_plan_per_chunk(&self) -> f64 {
        let after = self.rss_series.last().map(|(_, r)| *r).unwrap_or(0);
        after.saturating_sub(self.rss_before_kib) as f64 * 1024.0 / self.chunks as f64
    }

    /// RSS growth per chunk (bytes) from before submit to the last completion.
    pub fn rss_end_per_chunk(&self) -> f64 {
        self.rss_end_kib.saturating_sub(self.rss_before_kib) as f64 * 1024.0 / self.chunks as f64
    }

    /// RSS growth per chunk (bytes) over each tenth of the jobs stored: equal
    /// figures mean memory linear in chunks.
    pub fn rss_steps_per_chunk(&self) -> Vec<f64> {
        let mut out = Vec::new();
        let mut prev = (0u32, self.rss_before_kib);
        for &(chunks, rss) in &self.rss_series {
            if chunks > prev.0 {
                out.push((rss as f64 - prev.1 as f64) * 1024.0 / (chunks - prev.0) as f64);
                prev = (chunks, rss);
            }
        }
        out
    }

    /// The steady window (runs with `hold`): see `Steady`.
    pub fn steady(&self) -> Option<Steady> {
        if self.hold.is_zero() {
            return None;
        }
        let from = self.hold * 2;
        let last_full = self.chunks as f64 - self.workers as f64;
        let inside: Vec<_> = self
            .samples
            .iter()
            .filter(|(t, done, c)| *t >= from && *done <= last_full && c.is_some())
            .collect();
        let (first, last) = (inside.first()?, inside.last()?);
        let (a, b) = (first.2.as_ref()?, last.2.as_ref()?);
        let d = b.since(a);
        Some(Steady {
            seconds: (last.0 - first.0).as_secs_f64(),
            completes: last.1 - first.1,
            write_requests: d.write_requests(),
            keys_written: d.keys_written(),
        })
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
        // no source snapshot: a new leader would re-export it from the
        // synthetic source, which does not exist, and lease nothing
        consistency: Consistency::None as i32,
        // high enough that the per-job in-flight cap never binds (a worker
        // holds one chunk), within the limit a spec may ask for
        max_workers: Some((workers.max(1000) * 2).min(MAX_MAX_WORKERS)),
        // the lease path at its cap: synthetic chunks have no target whose
        // throughput adaptive concurrency could measure
        adaptive_concurrency: Some(false),
        ..Default::default()
    }
}

/// Chunks of job `j` (from 0) of `jobs` when `chunks` are split evenly.
fn job_chunks(chunks: u32, jobs: u32, j: u32) -> u32 {
    chunks / jobs + u32::from(j < chunks % jobs)
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
            let scheduler = Scheduler::new(Arc::new(MemoryStore::new()), config.clone());
            ticker = Some(scheduler.spawn_ticker());
            gate.lead(scheduler).await;
        }
        StoreKind::Etcd => {
            let e = Etcd::start(&o.etcd_bin, &o.tmp, o.keep, o.etcd_pprof_s > 0).await?;
            let opts = EtcdOptions {
                endpoints: vec![e.endpoint()],
                prefix: PREFIX.into(),
                advertise: format!("http://{addr}"),
                security: Default::default(),
                max_txn_ops: crate::etcd::MAX_TXN_OPS,
            };
            leader_task = Some(tokio::spawn(leader::run(
                Arc::clone(&gate),
                config.clone(),
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
        .args(["--chunks", &o.lease_chunks.unwrap_or(o.chunks).to_string()])
        .args(["--slots", &o.slots.to_string()])
        .args(["--channels", &o.channels.to_string()])
        .args(["--hold-ms", &o.hold.as_millis().to_string()])
        .args(o.no_next.then_some("--no-next"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("spawn the workers process")?;
    let mut go = child.stdin.take().context("child stdin")?;
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

    // plan phase: every job stored, workers waiting
    let log_before = count_lines(log_path);
    let c0 = match etcd.as_ref() {
        Some(e) => Some(e.counters().await?),
        None => None,
    };
    let etcd_cpu0 = etcd.as_ref().and_then(|e| sys::proc_cpu(e.pid()));
    let rss_before_kib = sys::trimmed_rss_kib();
    let u0 = sys::self_usage();
    let busy0 = sys::machine_busy();
    let t0 = Instant::now();
    let jobs = o.jobs.clamp(1, o.chunks.max(1));
    let mut job_ids = Vec::with_capacity(jobs as usize);
    let mut rss_series = Vec::new();
    let mut stored = 0u32;
    for j in 0..jobs {
        let n = job_chunks(o.chunks, jobs, j);
        let id = scheduler
            .submit_planned(
                format!("bench-{}-{j}", o.store.name()),
                spec(o.workers),
                Plan::synthetic(n),
            )
            .await
            .context("submit_planned")?;
        job_ids.push(id);
        stored += n;
        // RSS after each tenth of the jobs (malloc_trim first: freed memory is not counted)
        if (j + 1) * 10 % jobs < 10 || j + 1 == jobs {
            rss_series.push((stored, sys::trimmed_rss_kib()));
        }
    }
    let plan_wall = t0.elapsed();
    let u1 = sys::self_usage();
    let c1 = match etcd.as_ref() {
        Some(e) => Some(e.counters().await?),
        None => None,
    };
    println!(
        "  {} {} job(s), {} chunks stored in {:.2} s; RSS {} → {} MiB; leasing…",
        o.store.name(),
        jobs,
        o.chunks,
        plan_wall.as_secs_f64(),
        rss_before_kib / 1024,
        rss_series.last().map(|r| r.1).unwrap_or(0) / 1024,
    );
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

    // lease phase: until the workers report every chunk completed
    go.write_all(b"go\n")
        .await
        .context("tell the workers to go")?;
    go.flush().await?;
    let t_go = Instant::now();
    let mut samples = vec![(Duration::ZERO, 0.0, c1.clone())];
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
                let counters = match etcd.as_ref() {
                    Some(e) => e.counters().await.ok(),
                    None => None,
                };
                samples.push((t_go.elapsed(), n, counters));
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
                    "  {} {:>7} / {} chunks, {:.1} s, RSS {} MiB",
                    o.store.name(),
                    n,
                    o.chunks,
                    t_go.elapsed().as_secs_f64(),
                    sys::rss_kib() / 1024,
                );
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("timed out after {:?}", o.timeout))??;
    let lease_wall = t_go.elapsed();
    let wall = t0.elapsed();
    let u2 = sys::self_usage();
    let busy2 = sys::machine_busy();
    let c2 = match etcd.as_ref() {
        Some(e) => Some(e.counters().await?),
        None => None,
    };
    let etcd_cpu2 = etcd.as_ref().and_then(|e| sys::proc_cpu(e.pid()));
    let etcd_peak = etcd.as_ref().and_then(|e| sys::proc_peak_rss_kib(e.pid()));
    let rss_end_kib = sys::trimmed_rss_kib();
    if let Some(p) = pprof {
        let _ = p.await;
    }
    drop(go);
    let status = child.wait().await?;
    if !status.success() {
        bail!("the workers process failed: {status}");
    }

    // every job SUCCEEDED with every chunk; leases = sum of attempts (a
    // sampled lease phase: completions, since chunks leased when the fleet
    // stopped were never reported)
    let mut leases = 0u64;
    let mut completes = 0u64;
    for (j, id) in job_ids.iter().enumerate() {
        let job = scheduler.get_job(id).await?;
        let want = job_chunks(o.chunks, jobs, j as u32);
        if o.lease_chunks.is_none()
            && (JobState::try_from(job.state) != Ok(JobState::Succeeded)
                || job.chunks_succeeded != want)
        {
            bail!(
                "job {id} ended {:?} with {}/{} chunks",
                JobState::try_from(job.state),
                job.chunks_succeeded,
                want
            );
        }
        leases += job.chunks.iter().map(|c| c.attempt as u64).sum::<u64>();
        completes += job.chunks_succeeded as u64;
    }
    if let Some(n) = o.lease_chunks {
        if completes < n as u64 {
            bail!("the fleet stopped after {completes} of the {n} completions asked for");
        }
        leases = completes;
    }

    // shut down: server, leader loop (revokes its lease), ticker
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    if let Some(t) = leader_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    if let Some(t) = ticker {
        t.abort();
    }
    drop(scheduler);
    gate.follow(None).await;

    // etcd after the run: database size, a new leader's rebuild, size once compacted
    let (mut etcd_db, mut etcd_db_compacted, mut rebuild) = (None, None, None);
    if let Some(e) = &etcd {
        let client = connect_etcd(&[e.endpoint()]).await?;
        etcd_db = Some(db_size(&client).await?);
        if o.rebuild {
            rebuild = Some(time_rebuild(&client, config.clone()).await?);
        }
        etcd_db_compacted = Some(compact_and_defrag(&client).await?);
    }
    drop(etcd);

    let workers_line = parse_kv(&done);
    Ok(RunResult {
        store: o.store.name(),
        chunks: o.chunks,
        lease_chunks: o.lease_chunks,
        jobs,
        hold: o.hold,
        workers: o.workers,
        slots: o.slots,
        channels,
        leases,
        completes,
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
        rss_before_kib,
        rss_series,
        rss_end_kib,
        samples,
        etcd_db,
        etcd_db_compacted,
        rebuild,
    })
}

/// Key prefix of the benchmark's etcd state.
const PREFIX: &str = "/ferry";

/// etcd's database size and size in use, in bytes.
async fn db_size(client: &etcd_client::Client) -> Result<(i64, i64)> {
    let s = client.clone().status().await.context("etcd status")?;
    Ok((s.db_size(), s.raft_used_db_size()))
}

/// Compacts etcd's history to the current revision and defragments, as
/// auto-compaction and a maintenance defrag would: the size left is what the
/// live keys take.
async fn compact_and_defrag(client: &etcd_client::Client) -> Result<(i64, i64)> {
    let mut c = client.clone();
    let rev = c
        .get(PREFIX, None)
        .await?
        .header()
        .map(|h| h.revision())
        .unwrap_or(0);
    // not `with_physical`: at 1,000,000 chunks the physical compaction outlasts
    // the client's 3 s request deadline; the defragment below waits for it
    c.compact(rev, None).await.context("etcd compact")?;
    // the defragment may outlast the deadline too: it goes on in etcd, so
    // wait for the size to settle instead of failing the run
    if let Err(e) = c.defragment().await {
        eprintln!("  etcd defragment did not answer within the deadline ({e}); waiting for it");
        tokio::time::sleep(std::time::Duration::from_secs(20)).await;
    }
    db_size(client).await
}

/// Rebuilds a scheduler from etcd as a new leader does (`EtcdStore::load`,
/// then `Scheduler::recover`), timing each step. Reads only: every job has
/// ended, so recovery writes nothing.
async fn time_rebuild(client: &etcd_client::Client, config: SchedulerConfig) -> Result<Rebuild> {
    let rss0 = sys::trimmed_rss_kib();
    let store = EtcdStore::new(client.clone(), PREFIX, None);
    let t = Instant::now();
    let snapshot = store.load().await.context("load from etcd")?;
    let load = t.elapsed();
    let chunks: u64 = snapshot.jobs.iter().map(|(_, c)| c.len() as u64).sum();
    let jobs = snapshot.jobs.len();
    let scheduler = Scheduler::new(Arc::new(store), config);
    let t = Instant::now();
    scheduler.recover(snapshot).await;
    let recover = t.elapsed();
    let rss_growth_kib = sys::trimmed_rss_kib().saturating_sub(rss0);
    println!(
        "  rebuild from etcd: {jobs} jobs, {chunks} chunks: load {:.2} s, recover {:.2} s",
        load.as_secs_f64(),
        recover.as_secs_f64()
    );
    Ok(Rebuild {
        chunks,
        jobs,
        load,
        recover,
        rss_growth_kib,
    })
}

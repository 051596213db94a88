//! `--role workers`: N simulated workers in one process. Each registers, keeps
//! its lease alive with heartbeats at the interval RegisterWorker returns, and
//! leases and completes chunks until the job's chunks are all completed, as
//! `ferry worker` does: CompleteChunk(token, want_next=1) returns the next
//! chunk, and AcquireChunk(slots=1) is called only when none came with it
//! (`--no-next`: every chunk takes AcquireChunk then CompleteChunk, as older
//! workers do). Nothing is copied: a chunk completes as soon as it is leased.
//!
//! With `slots` > 1 the N workers are chunk slots of N/slots simulated worker
//! processes, as `ferry worker --concurrency <slots>` runs them: a process
//! registers once with that concurrency, its slots lease and report each on
//! their own, and one heartbeat lists every chunk the process holds.
//!
//! With `hold` > 0 a worker keeps each chunk that long before reporting it
//! (listing it in its heartbeats meanwhile), and worker `i` of `n` starts
//! `i/n` of a hold late, so the fleet completes a steady `n / hold` chunks
//! per second, as a fleet copying real chunks does.
//!
//! Talks to the parent on stdout, one line each:
//! `registered workers=N processes=P channels=C ms=T`, `progress completes=N`,
//! `done key=value …`; leasing starts when the parent writes `go` on stdin
//! (after it has submitted the jobs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ferry_common::proto::worker_service_client::WorkerServiceClient;
use ferry_common::proto::{
    AcquireChunkRequest, ChunkAssignment, ChunkRef, CompleteChunkRequest, HeartbeatRequest,
    HeldChunk, RegisterWorkerRequest,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::sys;

#[derive(Default)]
struct Stats {
    acquire_calls: AtomicU64,
    acquire_empty: AtomicU64,
    leased: AtomicU64,
    /// Chunks leased in a CompleteChunk response (want_next).
    leased_with_complete: AtomicU64,
    complete_calls: AtomicU64,
    completes: AtomicU64,
    aborted: AtomicU64,
    heartbeats: AtomicU64,
    heartbeat_aborts: AtomicU64,
    errors: AtomicU64,
    reregistered: AtomicU64,
}

/// Latency samples of one worker, merged at the end.
#[derive(Default)]
struct Lat {
    acquire_us: Vec<u32>,
    complete_us: Vec<u32>,
}

fn us(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

fn pct(v: &mut [u32], p: f64) -> u32 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

async fn channel(url: &str) -> Result<Channel> {
    Endpoint::from_shared(url.to_string())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        // the deadline `ferry worker` puts on every call
        .timeout(ferry_common::timing::RPC_TIMEOUT)
        .connect()
        .await
        .with_context(|| format!("connect to {url}"))
}

/// How the simulated fleet behaves.
#[derive(Debug, Clone, Copy)]
pub struct Fleet {
    /// Simulated workers: chunk slots, each leasing one chunk at a time.
    pub workers: u32,
    /// Slots per simulated worker process (its registration's concurrency).
    pub slots: u32,
    /// Completions after which the fleet stops.
    pub chunks: u64,
    /// gRPC connections they share (0: one each).
    pub channels: u32,
    /// What they put in CompleteChunk's `want_next` (0 or 1).
    pub want_next: u32,
    /// How long each chunk is held before it is reported (0: at once).
    pub hold: Duration,
}

/// Runs the fleet against `url` until `fleet.chunks` completions.
pub async fn run(url: String, fleet: Fleet) -> Result<()> {
    let Fleet {
        workers,
        slots,
        chunks,
        channels,
        want_next,
        hold,
    } = fleet;
    let started = Instant::now();
    let slots = slots.max(1);
    let processes = workers.div_ceil(slots);
    // one connection per process (channels = 0), like real worker processes,
    // or `channels` connections shared round-robin (HTTP/2 multiplexing)
    let n_channels = if channels == 0 {
        processes
    } else {
        channels.min(processes)
    };
    let mut chans = Vec::with_capacity(n_channels as usize);
    for _ in 0..n_channels {
        chans.push(channel(&url).await?);
    }
    let stats = Arc::new(Stats::default());
    let stop = CancellationToken::new();
    let registered = Arc::new(tokio::sync::Barrier::new(processes as usize + 1));
    let go = Arc::new(tokio::sync::Barrier::new(processes as usize + 1));
    let mut tasks = Vec::with_capacity(processes as usize);
    for p in 0..processes {
        let ch = chans[(p % n_channels) as usize].clone();
        let first = p * slots;
        let sim = Sim {
            i: p,
            slots: slots.min(workers - first),
            first,
            workers,
            chunks,
            want_next,
            hold,
        };
        tasks.push(tokio::spawn(process(
            sim,
            ch,
            Arc::clone(&stats),
            stop.clone(),
            Arc::clone(&registered),
            Arc::clone(&go),
        )));
    }
    registered.wait().await;
    println!(
        "registered workers={workers} processes={processes} channels={n_channels} ms={}",
        started.elapsed().as_millis()
    );
    // the parent submits its jobs, then says go
    let mut line = String::new();
    tokio::io::AsyncBufReadExt::read_line(
        &mut tokio::io::BufReader::new(tokio::io::stdin()),
        &mut line,
    )
    .await
    .context("read `go` from the parent")?;
    if line.trim() != "go" {
        anyhow::bail!("expected `go` from the parent, got {line:?}");
    }
    let cpu_registered = sys::self_usage().cpu;
    go.wait().await;

    // progress lines for the parent, until done
    let progress = {
        let stats = Arc::clone(&stats);
        let stop = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
                println!(
                    "progress completes={}",
                    stats.completes.load(Ordering::Relaxed)
                );
            }
        })
    };

    let joined = join_all(tasks, &stop).await;
    progress.abort();
    let mut lat = match joined {
        Ok(lat) => lat,
        Err(e) => {
            println!("error {e:#}");
            return Err(e);
        }
    };
    let u = sys::self_usage();
    let s = &stats;
    println!(
        "done completes={} leased={} leased_with_complete={} complete_calls={} acquire_calls={} acquire_empty={} aborted={} heartbeats={} heartbeat_aborts={} errors={} reregistered={} acquire_p50_us={} acquire_p99_us={} complete_p50_us={} complete_p99_us={} cpu_us={} cpu_after_register_us={} max_rss_kib={}",
        s.completes.load(Ordering::Relaxed),
        s.leased.load(Ordering::Relaxed),
        s.leased_with_complete.load(Ordering::Relaxed),
        s.complete_calls.load(Ordering::Relaxed),
        s.acquire_calls.load(Ordering::Relaxed),
        s.acquire_empty.load(Ordering::Relaxed),
        s.aborted.load(Ordering::Relaxed),
        s.heartbeats.load(Ordering::Relaxed),
        s.heartbeat_aborts.load(Ordering::Relaxed),
        s.errors.load(Ordering::Relaxed),
        s.reregistered.load(Ordering::Relaxed),
        pct(&mut lat.acquire_us, 0.5),
        pct(&mut lat.acquire_us, 0.99),
        pct(&mut lat.complete_us, 0.5),
        pct(&mut lat.complete_us, 0.99),
        u.cpu.as_micros(),
        (u.cpu.saturating_sub(cpu_registered)).as_micros(),
        u.max_rss_kib,
    );
    Ok(())
}

/// Registers (again, keeping the id, as `ferry worker` does) until accepted or stopped.
async fn register(
    client: &mut WorkerServiceClient<Channel>,
    i: u32,
    concurrency: u32,
    id: &Mutex<(String, String)>,
    stop: &CancellationToken,
) -> Result<Duration> {
    let mut tries = 0;
    loop {
        let (worker_id, session_secret) = id.lock().unwrap().clone();
        let req = RegisterWorkerRequest {
            worker_id,
            hostname: format!("sim-{i}"),
            concurrency,
            protocol: ferry_common::plan::WORKER_PROTOCOL,
            session_secret,
        };
        match client.register_worker(req).await {
            Ok(r) => {
                let r = r.into_inner();
                *id.lock().unwrap() = (r.worker_id, r.session_secret);
                return Ok(Duration::from_millis(r.heartbeat_interval_ms.max(100)));
            }
            Err(s) => {
                tries += 1;
                if tries >= 60 || stop.is_cancelled() {
                    return Err(anyhow::anyhow!("RegisterWorker: {s}"));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Counts an RPC error; prints the first few.
fn note(stats: &Stats, i: u32, what: &str, s: &tonic::Status) {
    let n = stats.errors.fetch_add(1, Ordering::Relaxed);
    if n < 10 {
        eprintln!("  worker {i}: {what}: {:?}: {}", s.code(), s.message());
    } else if n == 10 {
        eprintln!("  (more worker errors are counted, not printed)");
    }
}

/// One simulated worker process's settings.
#[derive(Debug, Clone, Copy)]
struct Sim {
    /// The process's number.
    i: u32,
    /// Its chunk slots (its registration's concurrency).
    slots: u32,
    /// The fleet-wide number of its first slot.
    first: u32,
    /// Slots in the whole fleet.
    workers: u32,
    chunks: u64,
    want_next: u32,
    hold: Duration,
}

/// What one slot of a process shares with its other slots.
struct Proc {
    sim: Sim,
    id: Arc<Mutex<(String, String)>>,
    /// The chunk each slot holds, listed in the process's heartbeats.
    held: Arc<Mutex<Vec<Option<ChunkRef>>>>,
    stats: Arc<Stats>,
    stop: CancellationToken,
}

/// A simulated worker process: registers once, heartbeats for all its slots,
/// and runs its slots until the fleet is done.
async fn process(
    sim: Sim,
    ch: Channel,
    stats: Arc<Stats>,
    stop: CancellationToken,
    registered: Arc<tokio::sync::Barrier>,
    go: Arc<tokio::sync::Barrier>,
) -> Result<Lat> {
    let mut client = WorkerServiceClient::new(ch);
    let id = Arc::new(Mutex::new((String::new(), String::new())));
    let every = register(&mut client, sim.i, sim.slots, &id, &stop).await?;
    let held = Arc::new(Mutex::new(vec![None; sim.slots as usize]));
    let hb = tokio::spawn(heartbeats(
        client.clone(),
        sim,
        Arc::clone(&id),
        every,
        Arc::clone(&held),
        Arc::clone(&stats),
        stop.clone(),
    ));
    registered.wait().await;
    go.wait().await;
    let proc = Arc::new(Proc {
        sim,
        id,
        held,
        stats,
        stop,
    });
    let slots: Vec<_> = (0..sim.slots)
        .map(|slot| tokio::spawn(worker(Arc::clone(&proc), slot, client.clone())))
        .collect();
    let joined = join_all(slots, &proc.stop).await;
    let _ = hb.await;
    joined
}

/// Waits for every task: their latencies merged, or the first failure (which
/// stops the fleet).
async fn join_all(
    tasks: Vec<tokio::task::JoinHandle<Result<Lat>>>,
    stop: &CancellationToken,
) -> Result<Lat> {
    let mut lat = Lat::default();
    let mut failed = None;
    for t in tasks {
        match t.await {
            Ok(Ok(l)) => {
                lat.acquire_us.extend(l.acquire_us);
                lat.complete_us.extend(l.complete_us);
            }
            Ok(Err(e)) => {
                stop.cancel();
                failed.get_or_insert(e);
            }
            Err(e) => {
                stop.cancel();
                failed.get_or_insert(anyhow::anyhow!("worker task panicked: {e}"));
            }
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(lat),
    }
}

/// One slot of a simulated process: leases and reports chunks until the
/// fleet is done.
async fn worker(
    proc: Arc<Proc>,
    slot: u32,
    mut client: WorkerServiceClient<Channel>,
) -> Result<Lat> {
    let Proc {
        sim,
        id,
        held,
        stats,
        stop,
    } = &*proc;
    let (sim, stats, stop) = (*sim, &**stats, stop);
    let i = sim.i;
    let global = sim.first + slot;
    // staggered starts spread the fleet's reports evenly over a hold
    let start_after = sim.hold.mul_f64(global as f64 / sim.workers.max(1) as f64);
    if !start_after.is_zero() {
        tokio::time::sleep(start_after).await;
    }

    let mut lat = Lat::default();
    // chunks leased with the last CompleteChunk
    let mut next: Vec<ChunkAssignment> = Vec::new();
    while !stop.is_cancelled() {
        let assignments = if next.is_empty() {
            stats.acquire_calls.fetch_add(1, Ordering::Relaxed);
            let t = Instant::now();
            let (worker_id, session_secret) = id.lock().unwrap().clone();
            let resp = tokio::select! {
                _ = stop.cancelled() => break,
                r = client.acquire_chunk(AcquireChunkRequest { worker_id, slots: 1, session_secret }) => r,
            };
            let assignments = match resp {
                Ok(r) => r.into_inner().assignments,
                Err(s) if s.code() == tonic::Code::NotFound => {
                    // the coordinator forgot this worker (a new leader term): register again
                    stats.reregistered.fetch_add(1, Ordering::Relaxed);
                    if let Err(e) = register(&mut client, i, sim.slots, id, stop).await {
                        // the fleet has done its chunks: stop, not an error
                        if stop.is_cancelled() {
                            break;
                        }
                        return Err(e);
                    }
                    continue;
                }
                Err(s) => {
                    note(stats, i, "AcquireChunk", &s);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if assignments.is_empty() {
                stats.acquire_empty.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            lat.acquire_us.push(us(t.elapsed()));
            assignments
        } else {
            std::mem::take(&mut next)
        };
        let slot_of = Slot {
            sim,
            slot,
            id,
            held,
            stats,
            stop,
        };
        complete_all(&mut client, &slot_of, assignments, &mut lat, &mut next).await;
    }
    Ok(lat)
}

/// What reporting a slot's chunks needs.
struct Slot<'a> {
    sim: Sim,
    slot: u32,
    id: &'a Mutex<(String, String)>,
    held: &'a Mutex<Vec<Option<ChunkRef>>>,
    stats: &'a Stats,
    stop: &'a CancellationToken,
}

/// "Copies" (at once) and reports each leased chunk, as `ferry worker` does:
/// until acknowledged or refused. Chunks leased with a report go to `next`.
async fn complete_all(
    client: &mut WorkerServiceClient<Channel>,
    s: &Slot<'_>,
    assignments: Vec<ChunkAssignment>,
    lat: &mut Lat,
    next: &mut Vec<ChunkAssignment>,
) {
    let Slot {
        id,
        held,
        stats,
        stop,
        slot,
        ..
    } = *s;
    let Sim {
        i,
        chunks,
        want_next,
        hold,
        ..
    } = s.sim;
    let slot = slot as usize;
    for a in assignments {
        stats.leased.fetch_add(1, Ordering::Relaxed);
        let Some(chunk) = a.chunk else { continue };
        // held while it "copies" (`hold`), then reported without it, as
        // `ferry worker` forgets a chunk before reporting it
        held.lock().unwrap()[slot] = Some(chunk.clone());
        if !hold.is_zero() {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(hold) => {}
            }
        }
        held.lock().unwrap()[slot] = None;
        let t = Instant::now();
        let mut tries = 0;
        loop {
            let (worker_id, session_secret) = id.lock().unwrap().clone();
            stats.complete_calls.fetch_add(1, Ordering::Relaxed);
            let r = client
                .complete_chunk(CompleteChunkRequest {
                    worker_id,
                    chunk: Some(chunk.clone()),
                    rows_written: 0,
                    rows_rejected: 0,
                    already_committed: false,
                    want_next,
                    session_secret,
                })
                .await;
            match r {
                Ok(r) => {
                    lat.complete_us.push(us(t.elapsed()));
                    let got = r.into_inner().next;
                    stats
                        .leased_with_complete
                        .fetch_add(got.len() as u64, Ordering::Relaxed);
                    next.extend(got);
                    let n = stats.completes.fetch_add(1, Ordering::Relaxed) + 1;
                    if n >= chunks {
                        stop.cancel();
                    }
                    break;
                }
                Err(s) if s.code() == tonic::Code::Aborted => {
                    stats.aborted.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(s) => {
                    note(stats, i, "CompleteChunk", &s);
                    tries += 1;
                    if tries >= 20 || stop.is_cancelled() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

async fn heartbeats(
    mut client: WorkerServiceClient<Channel>,
    sim: Sim,
    id: Arc<Mutex<(String, String)>>,
    every: Duration,
    held: Arc<Mutex<Vec<Option<ChunkRef>>>>,
    stats: Arc<Stats>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let chunks: Vec<HeldChunk> = held
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .map(|c| HeldChunk {
                chunk: Some(c.clone()),
                rows_so_far: 0,
            })
            .collect();
        let (worker_id, session_secret) = id.lock().unwrap().clone();
        let req = HeartbeatRequest {
            worker_id,
            session_secret,
            held: chunks,
            partial: false,
            leaving: false,
        };
        match client.heartbeat(req).await {
            Ok(r) => {
                stats.heartbeats.fetch_add(1, Ordering::Relaxed);
                let n = r.into_inner().abort.len() as u64;
                stats.heartbeat_aborts.fetch_add(n, Ordering::Relaxed);
            }
            Err(s) if s.code() == tonic::Code::NotFound => {
                stats.reregistered.fetch_add(1, Ordering::Relaxed);
                if register(&mut client, sim.i, sim.slots, &id, &stop)
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(s) => {
                note(&stats, sim.i, "Heartbeat", &s);
            }
        }
    }
}

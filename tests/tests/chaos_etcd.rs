//! The chaos suite of issue 3: real etcd, real PostgreSQL, 2 coordinators
//! (leader-elected through etcd) and 3 workers as separate processes copy
//! 2,000,000 rows while the suite breaks things mid-job: a worker SIGKILLed
//! and restarted again and again, the leader coordinator SIGKILLed, a worker
//! frozen past its lease, an etcd member killed and restarted, the target
//! database restarted, and a randomized mix of all of these (the seed is
//! printed; `FERRY_CHAOS_SEED=<seed>` replays the schedule).
//!
//! Every case asserts: the job SUCCEEDED; the target's count and
//! order-independent checksum equal the source's; no row lost, none doubled
//! (the target table has no primary key, so a chunk landing twice would show
//! as duplicate ids instead of failing on the key); exactly one ledger row
//! per chunk, their rows_written adding up to the source; no worker committed
//! a chunk attempt after the coordinator had given that attempt up (fencing);
//! every fault landed while the job ran. Each case appends a row to
//! `target/chaos-report.md` (`ferry_tests::report`): the faults, seconds to
//! re-lease a dead worker's chunk (SIGKILL or SIGSTOP to the coordinator's
//! `Chunk N failed with exception: worker W …, will retry` line), seconds to
//! leader takeover (SIGKILL to the standby's `became the leader coordinator`
//! line), rows lost and rows duplicated.
//!
//! Copying 2M rows takes Ferry ~3 s here, too short for a fault schedule, so
//! every chunk's COPY into the target stalls a moment before its commit
//! (`data::slow_down_inserts`, a statement trigger): a fault-free job takes
//! ~15 s, and faults land mid-job and inside open chunk transactions.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use ferry_tests::data::{slow_down_inserts, table_checksum};
use ferry_tests::etcd::EtcdCluster;
use ferry_tests::ferry::{run_cli, start_coordinator_on, start_worker, FerryProcess};
use ferry_tests::job::{
    chunk_no_of_line, format_unix_secs, is_chunk_completed_line, job_id, job_verb, ledger_summary,
    line_unix_secs, log_field, parse_start_line, submit_args, unix_now, wait_for_state,
    CLI_TIMEOUT, TERMINAL_STATES,
};
use ferry_tests::net::free_ports;
use ferry_tests::report::{append_row, ReportRow};
use ferry_tests::scenario::{Databases, ITEMS_QUERY, ITEMS_TABLE};

/// Rows copied by every case.
const ROWS: u64 = 2_000_000;
/// Rows per chunk: 100 chunks.
const CHUNK_SIZE: u64 = 20_000;
/// Chunks each worker runs at once.
const CONCURRENCY: usize = 2;
/// `--max-workers` (chunks of the job in flight at once): above the 6 worker
/// slots, so chunks still held by a dead worker do not starve the others.
const MAX_IN_FLIGHT: usize = 12;
/// Extra time each chunk's COPY spends in the target before its commit.
const CHUNK_STALL_MS: u64 = 800;
/// The same for the randomized run, whose fault schedule is longer.
const RANDOM_CHUNK_STALL_MS: u64 = 2_000;
/// The coordinators' worker lease TTL when `--lease-ttl-ms` is not given.
const DEFAULT_LEASE_TTL_MS: u64 = 10_000;
/// The short worker lease of the freeze and randomized cases.
const SHORT_LEASE_TTL_MS: u64 = 3_000;
/// Bound on a leader takeover (SIGKILL to the standby's `became the leader`).
const MAX_TAKEOVER_SECS: f64 = 15.0;
/// Bound on re-leasing a dead worker's chunk, on top of the lease TTL.
const RELET_MARGIN_SECS: f64 = 5.0;
/// How long after the coordinator gave an attempt up a `chunk committed` of
/// that attempt still counts as racing the give-up (the commit round trip;
/// the log line is written after COMMIT returns) rather than as a late commit.
const LATE_COMMIT_TOLERANCE_SECS: f64 = 1.0;
/// Fail-safe for a job to finish after its faults.
const JOB_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a process may take to log a line we wait for.
const LINE_TIMEOUT: Duration = Duration::from_secs(30);

async fn sleep_secs(d: f64) {
    tokio::time::sleep(Duration::from_secs_f64(d.max(0.0))).await;
}

/// The worker ids a worker process registered under (its log's
/// `registered with coordinator worker=W` lines).
fn worker_ids(worker: &FerryProcess) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for line in worker.log().lines() {
        if !line.contains("registered with coordinator") {
            continue;
        }
        if let Some(id) = log_field(line, "worker") {
            if !ids.iter().any(|i| i == id) {
                ids.push(id.to_string());
            }
        }
    }
    ids
}

/// `(attempt, max)` of a `… will retry (i/max)` line.
fn retry_of_line(line: &str) -> Option<(i32, i32)> {
    let rest = line.rsplit_once("will retry (")?.1;
    let (i, rest) = rest.split_once('/')?;
    let max = rest.split(')').next()?;
    Some((i.trim().parse().ok()?, max.trim().parse().ok()?))
}

/// A coordinator's `Chunk N failed with exception: …, will retry (A/max)`:
/// attempt A of chunk N given up and the chunk queued for another attempt.
#[derive(Debug, Clone)]
struct Requeue {
    chunk: u64,
    attempt: i32,
    at: f64,
    /// The worker named by `… exception: worker W …`, if any.
    worker: Option<String>,
    line: String,
}

impl Requeue {
    fn parse(line: &str, job: &str) -> Option<Requeue> {
        if !line.contains("failed with exception: ") || log_field(line, "job") != Some(job) {
            return None;
        }
        let (attempt, _) = retry_of_line(line)?;
        let worker = line
            .split_once("failed with exception: worker ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .map(str::to_string);
        Some(Requeue {
            chunk: chunk_no_of_line(line)?,
            attempt,
            at: line_unix_secs(line)?,
            worker,
            line: line.to_string(),
        })
    }
}

/// A worker's `chunk committed job=J chunk=N attempt=A …` line.
#[derive(Debug, Clone)]
struct Commit {
    chunk: u64,
    attempt: i32,
    at: f64,
    line: String,
}

impl Commit {
    fn parse(line: &str, job: &str) -> Option<Commit> {
        if !line.contains("chunk committed") || log_field(line, "job") != Some(job) {
            return None;
        }
        Some(Commit {
            chunk: log_field(line, "chunk")?.parse().ok()?,
            attempt: log_field(line, "attempt")?.parse().ok()?,
            at: line_unix_secs(line)?,
            line: line.to_string(),
        })
    }
}

/// A fault injected into the running job.
#[derive(Debug, Clone)]
struct Fault {
    what: String,
    /// Whether the job still ran then (no coordinator had logged
    /// `Parallel processing complete`).
    mid_job: bool,
}

/// A worker taken out by SIGKILL or SIGSTOP, whose chunks must come back.
#[derive(Debug, Clone)]
struct DeadWorker {
    label: String,
    ids: Vec<String>,
    /// SIGKILL / SIGSTOP time (Unix seconds).
    at: f64,
    /// SIGCONT time for a frozen worker; infinity for a killed one.
    until: f64,
}

impl DeadWorker {
    fn frozen(&self) -> bool {
        self.until.is_finite()
    }

    /// Requeues of its chunks while it was out (a frozen worker's own after
    /// its thaw are not its death's).
    fn requeues<'a>(&'a self, all: &'a [Requeue]) -> impl Iterator<Item = &'a Requeue> + 'a {
        all.iter().filter(move |r| {
            r.worker
                .as_ref()
                .is_some_and(|w| self.ids.iter().any(|id| id == w))
                && r.at >= self.at - 0.05
                && r.at <= self.until + 0.5
        })
    }
}

/// A leader coordinator SIGKILLed, and the standby's takeover.
#[derive(Debug, Clone)]
struct Takeover {
    killed_at: f64,
    took_over_at: f64,
}

impl Takeover {
    fn secs(&self) -> f64 {
        self.took_over_at - self.killed_at
    }
}

/// Two coordinators campaigning in etcd, three workers following the leader,
/// and what the faults did to them.
struct Fleet {
    coords: Vec<Option<FerryProcess>>,
    workers: Vec<Option<FerryProcess>>,
    retired_coords: Vec<FerryProcess>,
    retired_workers: Vec<FerryProcess>,
    coord_ports: Vec<u16>,
    coord_args: Vec<String>,
    env: Vec<(String, String)>,
    /// `http://…:P,http://…:Q`: every coordinator, for workers and the CLI.
    urls: String,
    lease_ttl_ms: u64,
    faults: Vec<Fault>,
    dead_workers: Vec<DeadWorker>,
    takeovers: Vec<Takeover>,
    submitted: Instant,
    /// Declared last: dropped after every ferry process is gone.
    etcd: EtcdCluster,
}

impl Fleet {
    /// Starts etcd (`etcd_members` members), coordinator c0 (waits until it
    /// leads), coordinator c1 (waits until it follows), and workers w0..w2
    /// (waits until each registered).
    fn start(dbs: &Databases, etcd_members: usize, lease_ttl_ms: Option<u64>) -> Fleet {
        let etcd = EtcdCluster::start(etcd_members);
        let coord_ports = free_ports(2);
        let mut coord_args = vec!["--etcd".to_string(), etcd.endpoints().join(",")];
        if let Some(ttl) = lease_ttl_ms {
            coord_args.extend(["--lease-ttl-ms".to_string(), ttl.to_string()]);
        }
        let urls = coord_ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut fleet = Fleet {
            coords: vec![None, None],
            workers: vec![None, None, None],
            retired_coords: Vec::new(),
            retired_workers: Vec::new(),
            coord_ports,
            coord_args,
            env: dbs.conn_env(),
            urls,
            lease_ttl_ms: lease_ttl_ms.unwrap_or(DEFAULT_LEASE_TTL_MS),
            faults: Vec::new(),
            dead_workers: Vec::new(),
            takeovers: Vec::new(),
            submitted: Instant::now(),
            etcd,
        };
        fleet.start_coordinator(0);
        fleet.wait_coordinator_log(0, "became the leader coordinator");
        fleet.start_coordinator(1);
        fleet.wait_coordinator_log(1, "following the leader coordinator");
        for slot in 0..3 {
            fleet.start_worker(slot);
        }
        for slot in 0..3 {
            let w = fleet.worker(slot);
            assert!(
                w.wait_for_log("registered with coordinator", LINE_TIMEOUT),
                "worker w{slot} did not register; log:\n{}",
                w.log_tail(30)
            );
        }
        fleet
    }

    fn lease_ttl_secs(&self) -> f64 {
        self.lease_ttl_ms as f64 / 1000.0
    }

    fn start_coordinator(&mut self, slot: usize) {
        let args: Vec<&str> = self.coord_args.iter().map(String::as_str).collect();
        let (process, _) = start_coordinator_on(self.coord_ports[slot], &args, &self.env);
        self.coords[slot] = Some(process);
    }

    fn wait_coordinator_log(&self, slot: usize, needle: &str) {
        let c = self.coords[slot].as_ref().expect("coordinator runs");
        assert!(
            c.wait_for_log(needle, LINE_TIMEOUT),
            "coordinator c{slot} did not log `{needle}` within {LINE_TIMEOUT:?}; log:\n{}",
            c.log_tail(30)
        );
    }

    fn start_worker(&mut self, slot: usize) {
        self.workers[slot] = Some(start_worker(&self.urls, CONCURRENCY, &self.env));
    }

    fn worker(&self, slot: usize) -> &FerryProcess {
        self.workers[slot].as_ref().expect("worker slot is running")
    }

    /// Every coordinator log, killed ones included.
    fn coordinator_logs(&self) -> Vec<String> {
        self.coords
            .iter()
            .flatten()
            .chain(&self.retired_coords)
            .map(FerryProcess::log)
            .collect()
    }

    fn coordinator_lines(&self) -> Vec<String> {
        self.coordinator_logs()
            .iter()
            .flat_map(|l| l.lines().map(str::to_string).collect::<Vec<_>>())
            .collect()
    }

    /// The last `n` lines of every coordinator log, for failure messages.
    fn coordinator_tails(&self, n: usize) -> String {
        self.coords
            .iter()
            .flatten()
            .chain(&self.retired_coords)
            .map(|c| format!("--- {} ---\n{}", c.name(), c.log_tail(n)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every worker process, killed ones included.
    fn all_workers(&self) -> impl Iterator<Item = &FerryProcess> {
        self.workers.iter().flatten().chain(&self.retired_workers)
    }

    fn job_finished(&self) -> bool {
        self.coordinator_logs()
            .iter()
            .any(|l| l.contains("Parallel processing complete"))
    }

    /// Submits the items job and returns its id.
    fn submit(&mut self, extra: &[&str]) -> String {
        let chunk_size = CHUNK_SIZE.to_string();
        let max_workers = MAX_IN_FLIGHT.to_string();
        let mut opts = vec![
            "--chunk-size",
            chunk_size.as_str(),
            "--max-workers",
            max_workers.as_str(),
        ];
        opts.extend_from_slice(extra);
        let args = submit_args(&self.urls, ITEMS_QUERY, ITEMS_TABLE, &opts);
        let job = job_id(&run_cli(&args, &self.env, CLI_TIMEOUT));
        self.submitted = Instant::now();
        eprintln!("[{}] submitted job {job}", format_unix_secs(unix_now()));
        job
    }

    /// Waits for the first `Chunk N completed` line of any coordinator.
    async fn wait_first_chunk(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self
            .coordinator_lines()
            .iter()
            .any(|l| is_chunk_completed_line(l))
        {
            assert!(
                Instant::now() < deadline,
                "no `Chunk N completed` line within 60 s; coordinators:\n{}",
                self.coordinator_tails(40)
            );
            sleep_secs(0.1).await;
        }
    }

    /// Waits until the worker in `slot` logged `n` commits (or the job ended).
    async fn wait_commits(&self, slot: usize, n: usize) {
        let deadline = Instant::now() + LINE_TIMEOUT;
        let w = self.worker(slot);
        while Instant::now() < deadline && !self.job_finished() {
            let commits = w
                .log()
                .lines()
                .filter(|l| l.contains("chunk committed"))
                .count();
            if commits >= n {
                return;
            }
            sleep_secs(0.05).await;
        }
    }

    /// Records a fault about to be injected, noting whether the job still runs.
    fn note_fault(&mut self, what: String) -> f64 {
        let at = unix_now();
        let mid_job = !self.job_finished();
        let what = format!("{what} @{:.1}s", self.submitted.elapsed().as_secs_f64());
        eprintln!(
            "[{}] fault: {what}{}",
            format_unix_secs(at),
            if mid_job {
                ""
            } else {
                " (the job had already finished!)"
            }
        );
        self.faults.push(Fault { what, mid_job });
        at
    }

    /// Appends `text` to the last fault's description.
    fn amend_fault(&mut self, text: &str) {
        if let Some(f) = self.faults.last_mut() {
            f.what.push_str(text);
        }
    }

    /// SIGKILLs the worker in `slot`; it stays down until `restart_worker`.
    fn kill_worker(&mut self, slot: usize) {
        let victim = self.workers[slot].take().expect("worker slot is running");
        let ids = worker_ids(&victim);
        let label = format!("worker w{slot} ({})", ids.join("/"));
        let at = self.note_fault(format!("SIGKILL {label}"));
        victim.kill();
        self.dead_workers.push(DeadWorker {
            label,
            ids,
            at,
            until: f64::INFINITY,
        });
        self.retired_workers.push(victim);
    }

    /// Starts a fresh worker in `slot` (after `kill_worker`).
    fn restart_worker(&mut self, slot: usize) {
        assert!(self.workers[slot].is_none(), "worker w{slot} still runs");
        eprintln!(
            "[{}] restarting worker w{slot}",
            format_unix_secs(unix_now())
        );
        self.start_worker(slot);
    }

    /// Freezes the worker in `slot` with SIGSTOP for `frozen_secs`, then
    /// resumes it with SIGCONT.
    async fn freeze_worker(&mut self, slot: usize, frozen_secs: f64) {
        let ids = worker_ids(self.worker(slot));
        let label = format!("worker w{slot} ({})", ids.join("/"));
        let at = self.note_fault(format!("SIGSTOP {label} for {frozen_secs:.1}s"));
        self.worker(slot).stop_signal();
        sleep_secs(frozen_secs).await;
        self.worker(slot).cont();
        let until = unix_now();
        eprintln!("[{}] SIGCONT worker w{slot}", format_unix_secs(until));
        self.dead_workers.push(DeadWorker {
            label,
            ids,
            at,
            until,
        });
    }

    /// The slot of the coordinator that leads now: alive, and its last
    /// leadership line is `became the leader coordinator`.
    fn leader(&self) -> Option<usize> {
        self.coords.iter().enumerate().find_map(|(slot, c)| {
            let c = c.as_ref()?;
            if c.try_exit().is_some() {
                return None;
            }
            let log = c.log();
            let last = log.lines().rfind(|l| {
                l.contains("became the leader coordinator")
                    || l.contains("following the leader coordinator")
                    || l.contains("stepping down")
            })?;
            last.contains("became the leader coordinator")
                .then_some(slot)
        })
    }

    /// SIGKILLs the leader coordinator and waits for the other one's
    /// `became the leader coordinator` line; returns the killed slot. The
    /// takeover time is measured up to that line's own timestamp.
    async fn kill_leader(&mut self) -> usize {
        let deadline = Instant::now() + LINE_TIMEOUT;
        let slot = loop {
            if let Some(slot) = self.leader() {
                break slot;
            }
            assert!(
                Instant::now() < deadline,
                "no leader coordinator within {LINE_TIMEOUT:?}; coordinators:\n{}",
                self.coordinator_tails(30)
            );
            sleep_secs(0.1).await;
        };
        let other = 1 - slot;
        assert!(self.coords[other].is_some(), "no standby coordinator");
        let victim = self.coords[slot].take().expect("leader is running");
        let killed_at = self.note_fault(format!("SIGKILL leader coordinator c{slot}"));
        victim.kill();
        self.retired_coords.push(victim);
        let standby = self.coords[other].as_ref().expect("standby runs");
        let line = standby
            .wait_for_line(
                |l| {
                    l.contains("became the leader coordinator")
                        && line_unix_secs(l).is_some_and(|t| t >= killed_at)
                },
                Duration::from_secs(60),
            )
            .unwrap_or_else(|| {
                panic!(
                    "standby c{other} did not become the leader within 60 s of the kill; log:\n{}",
                    standby.log_tail(40)
                )
            });
        let took_over_at = line_unix_secs(&line).expect("checked above");
        eprintln!(
            "[{}] c{other} took over {:.2}s after the kill: {line}",
            format_unix_secs(took_over_at),
            took_over_at - killed_at
        );
        self.takeovers.push(Takeover {
            killed_at,
            took_over_at,
        });
        slot
    }

    /// Restarts a killed coordinator on its old port; it must rejoin the
    /// election (as a follower, or as the leader if there is none then).
    fn restart_coordinator(&mut self, slot: usize) {
        assert!(
            self.coords[slot].is_none(),
            "coordinator c{slot} still runs"
        );
        eprintln!(
            "[{}] restarting coordinator c{slot}",
            format_unix_secs(unix_now())
        );
        self.start_coordinator(slot);
        let c = self.coords[slot].as_ref().expect("just started");
        let joined = c.wait_for_line(
            |l| {
                l.contains("following the leader coordinator")
                    || l.contains("became the leader coordinator")
            },
            LINE_TIMEOUT,
        );
        assert!(
            joined.is_some(),
            "restarted coordinator c{slot} neither followed nor led within {LINE_TIMEOUT:?}; log:\n{}",
            c.log_tail(30)
        );
    }

    /// Every requeue line of `job` in any coordinator log.
    fn requeues(&self, job: &str) -> Vec<Requeue> {
        self.coordinator_lines()
            .iter()
            .filter_map(|l| Requeue::parse(l, job))
            .collect()
    }

    /// Every `chunk committed` line of `job` in any worker log.
    fn commits(&self, job: &str) -> Vec<Commit> {
        self.all_workers()
            .flat_map(|w| {
                w.log()
                    .lines()
                    .filter_map(|l| Commit::parse(l, job))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The bound on re-leasing `dead`'s chunk: lease TTL + margin after its
    /// death, or after a leader takeover that ended later and began before
    /// the requeue was due (no leader can requeue meanwhile, and a new leader
    /// gives in-flight chunks a fresh lease).
    fn relet_bound(&self, dead: &DeadWorker) -> f64 {
        let ttl = self.lease_ttl_secs();
        self.takeovers
            .iter()
            .filter(|t| {
                t.took_over_at >= dead.at && t.killed_at <= dead.at + ttl + RELET_MARGIN_SECS
            })
            .map(|t| t.took_over_at - dead.at + ttl + RELET_MARGIN_SECS)
            .fold(ttl + RELET_MARGIN_SECS, f64::max)
    }
}

/// What the end of a case measured.
struct Outcome {
    /// Per dead worker: seconds to the first requeue of its chunks.
    relets: Vec<f64>,
    /// Chunk attempts given up while a frozen worker was out.
    frozen_requeues: Vec<Requeue>,
}

/// Waits for the job to end, measures everything, appends the report row,
/// then asserts: SUCCEEDED; target == source, nothing lost or doubled;
/// exactly one ledger row per chunk; no late commit; every fault mid-job;
/// re-lease and takeover within their bounds.
async fn finish(case: &str, dbs: &Databases, fleet: &Fleet, job: &str) -> Outcome {
    let job_state = wait_for_state(&fleet.urls, job, &TERMINAL_STATES, JOB_TIMEOUT);
    let took = fleet.submitted.elapsed().as_secs_f64();
    eprintln!(
        "[{}] job {job} ended {job_state} after {took:.1}s",
        format_unix_secs(unix_now())
    );
    // A thawed zombie may still try to finish what it held.
    sleep_secs(1.0).await;
    let status = job_verb("status", &fleet.urls, job, CLI_TIMEOUT);
    let chunks_total: Option<i64> = status
        .stdout
        .lines()
        .next()
        .and_then(|l| l.split_once(" chunks succeeded"))
        .and_then(|(head, _)| head.rsplit_once('/'))
        .and_then(|(_, total)| total.trim().parse().ok());

    let source = dbs.source().await;
    let target = dbs.target().await;
    let src = table_checksum(&source, ITEMS_TABLE).await;
    let dst = table_checksum(&target, ITEMS_TABLE).await;
    let row = target
        .query_one("SELECT count(*), count(DISTINCT id) FROM items", &[])
        .await
        .expect("count target rows");
    let (landed, distinct): (i64, i64) = (row.get(0), row.get(1));
    let rows_lost = src.0 - distinct;
    let rows_duplicated = landed - distinct;
    let ledger = ledger_summary(&target, job).await;

    let requeues = fleet.requeues(job);
    let mut relets = Vec::new();
    for dead in &fleet.dead_workers {
        let first = dead
            .requeues(&requeues)
            .min_by(|a, b| a.at.total_cmp(&b.at));
        match first {
            Some(r) => {
                let s = r.at - dead.at;
                eprintln!(
                    "re-lease of {}'s chunk took {s:.2}s: {}",
                    dead.label, r.line
                );
                relets.push(s);
            }
            None => eprintln!(
                "{} held no chunk when taken out (no requeue line)",
                dead.label
            ),
        }
    }
    let commits = fleet.commits(job);
    let late: Vec<String> = requeues
        .iter()
        .flat_map(|r| {
            commits
                .iter()
                .filter(move |c| {
                    c.chunk == r.chunk
                        && c.attempt == r.attempt
                        && c.at > r.at + LATE_COMMIT_TOLERANCE_SECS
                })
                .map(move |c| format!("given up: {}\ncommitted: {}", r.line, c.line))
        })
        .collect();

    append_row(&ReportRow {
        case: case.to_string(),
        faults: fleet.faults.iter().map(|f| f.what.clone()).collect(),
        relet_secs: relets.iter().copied().reduce(f64::max),
        takeover_secs: fleet.takeovers.iter().map(Takeover::secs).reduce(f64::max),
        rows_lost,
        rows_duplicated,
        job_state: format!("{job_state} in {took:.0}s"),
    });

    assert_eq!(
        job_state,
        "SUCCEEDED",
        "job {job} did not succeed; status:\n{status}\ncoordinators:\n{}",
        fleet.coordinator_tails(40)
    );
    assert_eq!(
        rows_lost, 0,
        "rows lost: the source has {} rows, {distinct} distinct ids landed",
        src.0
    );
    assert_eq!(
        rows_duplicated, 0,
        "rows duplicated: {landed} rows landed, {distinct} distinct ids; ledger {ledger:?}"
    );
    assert_eq!(
        dst, src,
        "target (count, checksum) differs from the source's"
    );
    let chunks = chunks_total.unwrap_or_else(|| panic!("status names no chunk total: {status}"));
    if let Some((_, c)) = fleet
        .coordinator_logs()
        .iter()
        .find_map(|l| parse_start_line(l))
    {
        assert_eq!(
            c as i64, chunks,
            "start line and status disagree on the chunk count"
        );
    }
    assert_eq!(ledger.rows, chunks, "one ledger row per chunk: {ledger:?}");
    assert_eq!(ledger.distinct_chunks, chunks, "{ledger:?}");
    assert_eq!(ledger.rows_written, ROWS as i64, "{ledger:?}");
    assert_eq!(ledger.rows_rejected, 0, "{ledger:?}");
    assert!(
        late.is_empty(),
        "{} chunk attempt(s) committed more than {LATE_COMMIT_TOLERANCE_SECS}s after the \
         coordinator had given them up (the worker should have fenced itself):\n{}",
        late.len(),
        late.join("\n")
    );
    for f in &fleet.faults {
        assert!(
            f.mid_job,
            "fault `{}` came after the job had finished: the case exercised nothing",
            f.what
        );
    }
    for t in &fleet.takeovers {
        assert!(
            t.secs() < MAX_TAKEOVER_SECS,
            "leader takeover took {:.2}s (bound {MAX_TAKEOVER_SECS}s)",
            t.secs()
        );
    }
    for dead in &fleet.dead_workers {
        let bound = fleet.relet_bound(dead);
        if let Some(r) = dead
            .requeues(&requeues)
            .min_by(|a, b| a.at.total_cmp(&b.at))
        {
            assert!(
                r.at - dead.at < bound,
                "re-leasing a chunk of {} took {:.2}s (bound {bound:.1}s): {}",
                dead.label,
                r.at - dead.at,
                r.line
            );
        }
    }
    let frozen_requeues = fleet
        .dead_workers
        .iter()
        .filter(|d| d.frozen())
        .flat_map(|d| d.requeues(&requeues).cloned().collect::<Vec<_>>())
        .collect();
    Outcome {
        relets,
        frozen_requeues,
    }
}

/// Source and target with the items table (the target's without a key) and
/// `ROWS` rows in the source; each chunk's COPY into the target stalls
/// `stall_ms` before its commit.
async fn databases(two_clusters: bool, stall_ms: u64) -> Databases {
    let dbs = if two_clusters {
        Databases::two_clusters().await
    } else {
        Databases::one_cluster().await
    };
    let filled = Instant::now();
    dbs.prepare_items_keyless_target(ROWS).await;
    slow_down_inserts(&dbs.target().await, ITEMS_TABLE, stall_ms).await;
    eprintln!(
        "filled {ROWS} source rows in {:.1}s",
        filled.elapsed().as_secs_f64()
    );
    dbs
}

/// Case 1: one worker SIGKILLed and restarted four times during the job,
/// each time once its new incarnation had committed a chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_and_restarted_repeatedly() {
    let dbs = databases(false, CHUNK_STALL_MS).await;
    let mut fleet = Fleet::start(&dbs, 1, None);
    let job = fleet.submit(&[]);
    fleet.wait_first_chunk().await;
    for _ in 0..4 {
        fleet.wait_commits(0, 1).await;
        sleep_secs(0.3).await;
        if fleet.job_finished() {
            break;
        }
        fleet.kill_worker(0);
        sleep_secs(0.5).await;
        fleet.restart_worker(0);
    }
    let outcome = finish("1. worker SIGKILLed and restarted", &dbs, &fleet, &job).await;
    assert!(
        fleet.faults.len() >= 3,
        "only {} worker kills landed mid-job",
        fleet.faults.len()
    );
    assert!(
        !outcome.relets.is_empty(),
        "no killed worker held a chunk: re-leasing was never exercised"
    );
}

/// Case 2: the leader coordinator SIGKILLed mid-job; the standby takes over,
/// rebuilds the running job from etcd, and the workers follow it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_coordinator_killed_standby_takes_over() {
    let dbs = databases(false, CHUNK_STALL_MS).await;
    let mut fleet = Fleet::start(&dbs, 1, None);
    let job = fleet.submit(&[]);
    fleet.wait_first_chunk().await;
    sleep_secs(1.0).await;
    let killed = fleet.kill_leader().await;
    let standby = fleet.coords[1 - killed].as_ref().expect("standby runs");
    let log = standby.log();
    let line = log
        .lines()
        .rfind(|l| l.contains("became the leader coordinator"))
        .unwrap_or_default()
        .to_string();
    finish("2. leader coordinator SIGKILLed", &dbs, &fleet, &job).await;
    eprintln!("takeover {:.2}s: {line}", fleet.takeovers[0].secs());
    assert_eq!(
        log_field(&line, "running"),
        Some("1"),
        "the new leader should have rebuilt the running job: {line}"
    );
}

/// Case 3: a worker frozen (SIGSTOP) for twice its lease while holding
/// chunks, then resumed (SIGCONT): its chunks are leased again, and what it
/// tries after waking up is rolled back or refused, never committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_worker_is_fenced_after_its_lease() {
    let dbs = databases(false, CHUNK_STALL_MS).await;
    let mut fleet = Fleet::start(&dbs, 1, Some(SHORT_LEASE_TTL_MS));
    let job = fleet.submit(&[]);
    fleet.wait_first_chunk().await;
    fleet.wait_commits(0, 1).await;
    sleep_secs(0.3).await;
    let frozen_secs = 2.0 * fleet.lease_ttl_secs() + 2.0;
    fleet.freeze_worker(0, frozen_secs).await;
    let thawed_at = fleet.dead_workers[0].until;
    let outcome = finish("3. worker SIGSTOPped past its lease", &dbs, &fleet, &job).await;
    assert!(
        !outcome.frozen_requeues.is_empty(),
        "the frozen worker held no chunk (no requeue line for it): nothing was fenced"
    );
    let zombie_log = fleet.worker(0).log();
    let after_thaw: Vec<&str> = zombie_log
        .lines()
        .filter(|l| line_unix_secs(l).is_some_and(|t| t >= thawed_at - 0.1))
        .filter(|l| log_field(l, "job") == Some(job.as_str()))
        .collect();
    eprintln!(
        "the frozen worker after its thaw:\n{}",
        after_thaw.join("\n")
    );
    for r in &outcome.frozen_requeues {
        let chunk = r.chunk.to_string();
        let attempt = r.attempt.to_string();
        let fenced = after_thaw.iter().any(|l| {
            log_field(l, "chunk") == Some(chunk.as_str())
                && ((l.contains("rolled back")
                    && log_field(l, "attempt") == Some(attempt.as_str()))
                    || l.contains("refused"))
        });
        assert!(
            fenced,
            "chunk {} attempt {} was taken from the frozen worker, but after waking up the \
             worker neither rolled it back nor had its report refused:\n{}",
            r.chunk,
            r.attempt,
            after_thaw.join("\n")
        );
    }
}

/// Case 4: the Raft leader of a 3-member etcd cluster SIGKILLed mid-job and
/// restarted 4 s later; the coordinators know all 3 endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_member_killed_and_restarted() {
    let dbs = databases(false, CHUNK_STALL_MS).await;
    let mut fleet = Fleet::start(&dbs, 3, None);
    let job = fleet.submit(&[]);
    fleet.wait_first_chunk().await;
    sleep_secs(1.0).await;
    let (member, role) = match fleet.etcd.leader() {
        Some(m) => (m, " (Raft leader)"),
        None => (0, ""),
    };
    let killed_at = fleet.note_fault(format!("SIGKILL etcd member m{member}{role}"));
    fleet.etcd.kill(member);
    sleep_secs(4.0).await;
    let restart_mid_job = !fleet.job_finished();
    eprintln!(
        "[{}] restarting etcd member m{member}",
        format_unix_secs(unix_now())
    );
    fleet.etcd.restart(member);
    fleet.amend_fault(", restarted 4s later");
    finish("4. etcd member SIGKILLed and restarted", &dbs, &fleet, &job).await;
    // Not asserted (the suite's contract is exactly-once), but worth seeing:
    // with etcd quorum intact, did the leader coordinator keep leading?
    let step_downs: Vec<String> = fleet
        .coordinator_lines()
        .into_iter()
        .filter(|l| {
            l.contains("stepping down") && line_unix_secs(l).is_some_and(|t| t >= killed_at)
        })
        .collect();
    let requeued = fleet.requeues(&job).len();
    eprintln!(
        "while one etcd member was down: {} coordinator step-down line(s), {requeued} chunk \
         attempt(s) given up{}",
        step_downs.len(),
        if step_downs.is_empty() {
            String::new()
        } else {
            format!(":\n{}", step_downs.join("\n"))
        }
    );
    assert!(
        restart_mid_job,
        "the job finished while the etcd member was down: its restart was not mid-job"
    );
}

/// Case 5: the target PostgreSQL restarted mid-job (fast shutdown, 2 s down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_postgres_restarted() {
    let dbs = databases(true, CHUNK_STALL_MS).await;
    let mut fleet = Fleet::start(&dbs, 1, None);
    let job = fleet.submit(&[]);
    fleet.wait_first_chunk().await;
    sleep_secs(1.0).await;
    fleet.note_fault("target PostgreSQL restarted (fast stop, 2s down)".to_string());
    dbs.target_cluster().stop();
    sleep_secs(2.0).await;
    dbs.target_cluster().start_again();
    finish("5. target PostgreSQL restarted", &dbs, &fleet, &job).await;
    assert!(
        !fleet.requeues(&job).is_empty(),
        "chunks in flight when the target went down should have been retried"
    );
}

/// The faults the randomized run draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    KillWorker,
    FreezeWorker,
    KillLeader,
    KillEtcdMember,
    RestartTarget,
}

const KINDS: [Kind; 5] = [
    Kind::KillWorker,
    Kind::FreezeWorker,
    Kind::KillLeader,
    Kind::KillEtcdMember,
    Kind::RestartTarget,
];

/// The seed of the randomized run: env `FERRY_CHAOS_SEED`, else a fresh one.
fn chaos_seed() -> u64 {
    match std::env::var("FERRY_CHAOS_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("FERRY_CHAOS_SEED={s:?} is not an unsigned integer")),
        Err(_) => rand::rng().random(),
    }
}

/// Case 6: every fault kind once plus one or two more, in an order, with
/// victims and pauses drawn from a seeded RNG. Worker leases are 3 s, so a
/// leader takeover (~5 s) also outlasts them: workers fence themselves and
/// their chunks are leased again. The seed is printed and written to the
/// report; `FERRY_CHAOS_SEED=<seed>` replays the same schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_mix_of_all_faults() {
    let seed = chaos_seed();
    eprintln!("randomized chaos run: replay with FERRY_CHAOS_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut plan: Vec<Kind> = KINDS.to_vec();
    for _ in 0..rng.random_range(1..=2) {
        plan.push(KINDS[rng.random_range(0..KINDS.len())]);
    }
    plan.shuffle(&mut rng);
    eprintln!("FERRY_CHAOS_SEED={seed}: plan {plan:?}");

    let dbs = databases(true, RANDOM_CHUNK_STALL_MS).await;
    let mut fleet = Fleet::start(&dbs, 3, Some(SHORT_LEASE_TTL_MS));
    // Retries are per chunk; a chunk may be hit by several faults in a row.
    let job = fleet.submit(&["--max-retries", "10"]);
    fleet.wait_first_chunk().await;
    let mut skipped = Vec::new();
    for (step, kind) in plan.iter().enumerate() {
        sleep_secs(rng.random_range(0.2..1.2)).await;
        if fleet.job_finished() {
            skipped.extend_from_slice(&plan[step..]);
            break;
        }
        match kind {
            Kind::KillWorker => {
                let slot = rng.random_range(0..3);
                let down = rng.random_range(0.0..2.0);
                fleet.kill_worker(slot);
                sleep_secs(down).await;
                fleet.restart_worker(slot);
                fleet.amend_fault(&format!(", restarted {down:.1}s later"));
            }
            Kind::FreezeWorker => {
                let slot = rng.random_range(0..3);
                let frozen = fleet.lease_ttl_secs() + rng.random_range(1.5..3.5);
                fleet.freeze_worker(slot, frozen).await;
            }
            Kind::KillLeader => {
                let down = rng.random_range(0.5..3.0);
                let slot = fleet.kill_leader().await;
                sleep_secs(down).await;
                fleet.restart_coordinator(slot);
                fleet.amend_fault(&format!(
                    ", restarted as standby after takeover + {down:.1}s"
                ));
            }
            Kind::KillEtcdMember => {
                let member = rng.random_range(0..fleet.etcd.len());
                let down = rng.random_range(1.0..4.0);
                let role = if fleet.etcd.leader() == Some(member) {
                    " (Raft leader)"
                } else {
                    ""
                };
                fleet.note_fault(format!("SIGKILL etcd member m{member}{role}"));
                fleet.etcd.kill(member);
                sleep_secs(down).await;
                fleet.etcd.restart(member);
                fleet.amend_fault(&format!(", restarted {down:.1}s later"));
            }
            Kind::RestartTarget => {
                let down = rng.random_range(0.0..2.0);
                fleet.note_fault(format!("target PostgreSQL restarted ({down:.1}s down)"));
                dbs.target_cluster().stop();
                sleep_secs(down).await;
                dbs.target_cluster().start_again();
            }
        }
    }
    let case = format!("6. randomized, FERRY_CHAOS_SEED={seed}");
    finish(&case, &dbs, &fleet, &job).await;
    assert!(
        skipped.is_empty(),
        "FERRY_CHAOS_SEED={seed}: the job finished before these faults were injected: {skipped:?}"
    );
}

//! The chaos suite's fleet: real etcd, 2 coordinators (leader-elected) and 3
//! workers copying 2,000,000 rows while a test breaks them, and the record
//! of every fault it injected. `chaos_verdict::finish` then measures and
//! asserts; the tests are `tests/chaos_*.rs`.
//!
//! Copying 2M rows takes Ferry ~3 s here, too short for a fault schedule, so
//! every chunk's COPY into the target stalls a moment before its commit
//! (`data::slow_down_inserts`, a statement trigger): a fault-free job takes
//! ~15 s, and faults land mid-job and inside open chunk transactions.

use std::time::{Duration, Instant};

use crate::chaos_events::{Commit, DeadWorker, Fault, Requeue, Takeover};
use crate::cli::Submit;
use crate::clock::{format_unix_secs, unix_now};
use crate::cluster::Cluster;
use crate::data::slow_down_inserts;
use crate::databases::{Databases, Pg, ITEMS_TABLE};
use crate::log_lines::{line_unix_secs, Leadership, BECAME_LEADER, CHUNK_COMMITTED};

/// Rows copied by every case.
pub const ROWS: u64 = 2_000_000;
/// Rows per chunk: 100 chunks.
pub const CHUNK_SIZE: u64 = 20_000;
/// Chunks each worker runs at once.
pub const CONCURRENCY: usize = 2;
/// Workers in the fleet.
pub const WORKERS: usize = 3;
/// `--max-workers` (chunks of the job in flight at once): above the 6 worker
/// slots, so chunks still held by a dead worker do not starve the others.
pub const MAX_IN_FLIGHT: usize = 12;
/// Extra time each chunk's COPY spends in the target before its commit.
pub const CHUNK_STALL_MS: u64 = 800;
/// The same for the randomized run, whose fault schedule is longer.
pub const RANDOM_CHUNK_STALL_MS: u64 = 2_000;
/// The short worker lease of the freeze and randomized cases.
pub const SHORT_LEASE_TTL: Duration = Duration::from_secs(3);
/// Bound on a leader takeover (SIGKILL to the standby's `became the leader`).
pub const MAX_TAKEOVER_SECS: f64 = 15.0;
/// Bound on re-leasing a dead worker's chunk, on top of the lease TTL.
pub const RELET_MARGIN_SECS: f64 = 5.0;
/// How long the job may take to complete its first chunk.
pub const FIRST_CHUNK_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a process may take to log a line we wait for.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(30);

/// Sleeps `secs` seconds (nothing when negative).
pub async fn sleep_secs(secs: f64) {
    tokio::time::sleep(Duration::from_secs_f64(secs.max(0.0))).await;
}

/// How a case sets up its fleet.
#[derive(Debug, Clone, Copy)]
pub struct ChaosSetup {
    /// Where `src` and `dst` live (two clusters to restart the target alone).
    pub pg: Pg,
    /// etcd members (3 to kill one and keep quorum).
    pub etcd_members: usize,
    /// The worker lease, when not the coordinator's default.
    pub lease_ttl: Option<Duration>,
    /// How long each chunk's COPY stalls in the target before its commit.
    pub stall_ms: u64,
}

/// The fleet of one chaos case and what the faults did to it.
pub struct ChaosRun {
    /// The processes and databases.
    pub cluster: Cluster,
    faults: Vec<Fault>,
    dead_workers: Vec<DeadWorker>,
    takeovers: Vec<Takeover>,
    submitted: Instant,
}

impl ChaosRun {
    /// Fills the source with `ROWS` items (the target's table without a key,
    /// so a chunk landing twice shows as duplicates), stalls the target's
    /// inserts, then starts etcd, coordinator c0 (until it leads), c1 (until
    /// it follows) and workers w0..w2 (until each registered).
    pub async fn start(setup: ChaosSetup) -> ChaosRun {
        let dbs = Databases::start(setup.pg).await;
        let filled = Instant::now();
        dbs.prepare_items_keyless_target(ROWS).await;
        slow_down_inserts(&dbs.target().await, ITEMS_TABLE, setup.stall_ms).await;
        eprintln!(
            "filled {ROWS} source rows in {:.1}s",
            filled.elapsed().as_secs_f64()
        );
        let mut builder = Cluster::builder()
            .databases(dbs)
            .etcd(setup.etcd_members)
            .coordinators(2)
            .workers(WORKERS)
            .worker_concurrency(CONCURRENCY);
        if let Some(ttl) = setup.lease_ttl {
            builder = builder.lease_ttl(ttl);
        }
        ChaosRun {
            cluster: builder.start().await,
            faults: Vec::new(),
            dead_workers: Vec::new(),
            takeovers: Vec::new(),
            submitted: Instant::now(),
        }
    }

    /// The faults injected so far.
    pub fn faults(&self) -> &[Fault] {
        &self.faults
    }

    /// The workers killed or frozen so far.
    pub fn dead_workers(&self) -> &[DeadWorker] {
        &self.dead_workers
    }

    /// The leader takeovers so far.
    pub fn takeovers(&self) -> &[Takeover] {
        &self.takeovers
    }

    /// Seconds since the job was submitted.
    pub fn since_submit(&self) -> f64 {
        self.submitted.elapsed().as_secs_f64()
    }

    /// The worker lease TTL in seconds.
    pub fn lease_ttl_secs(&self) -> f64 {
        self.cluster.lease_ttl().as_secs_f64()
    }

    /// Submits the items job (chunks of `CHUNK_SIZE`, `MAX_IN_FLIGHT` in
    /// flight, then `extra`) and returns its id.
    pub fn submit(&mut self, extra: &[&str]) -> String {
        let job = Submit::items()
            .chunk_size(CHUNK_SIZE)
            .flag("--max-workers", MAX_IN_FLIGHT)
            .args(extra);
        let id = self.cluster.submit(&job);
        self.submitted = Instant::now();
        eprintln!("[{}] submitted job {id}", format_unix_secs(unix_now()));
        id
    }

    /// Waits for the first `Chunk N completed` line of any coordinator.
    pub fn wait_first_chunk(&self) {
        self.cluster.wait_first_chunk(FIRST_CHUNK_TIMEOUT);
    }

    /// Waits until the current life of worker `slot` logged `n` commits (or
    /// the job ended).
    pub async fn wait_commits(&self, slot: usize, n: usize) {
        let deadline = Instant::now() + LINE_TIMEOUT;
        let w = self.cluster.worker(slot);
        while Instant::now() < deadline && !self.cluster.job_finished() {
            let commits = w
                .log()
                .lines()
                .filter(|l| l.contains(CHUNK_COMMITTED))
                .count();
            if commits >= n {
                return;
            }
            sleep_secs(0.05).await;
        }
    }

    /// Records a fault about to be injected, noting whether the job still
    /// runs; returns the time (Unix seconds).
    pub fn note_fault(&mut self, what: String) -> f64 {
        let at = unix_now();
        let mid_job = !self.cluster.job_finished();
        let what = format!("{what} @{:.1}s", self.since_submit());
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
    pub fn amend_fault(&mut self, text: &str) {
        if let Some(f) = self.faults.last_mut() {
            f.what.push_str(text);
        }
    }

    fn worker_label(&self, slot: usize) -> (String, Vec<String>) {
        let ids = self.cluster.worker(slot).ids();
        (format!("worker w{slot} ({})", ids.join("/")), ids)
    }

    /// SIGKILLs worker `slot`; it stays down until `restart_worker`.
    pub fn kill_worker(&mut self, slot: usize) {
        let (label, ids) = self.worker_label(slot);
        let at = self.note_fault(format!("SIGKILL {label}"));
        self.cluster.worker(slot).kill();
        self.dead_workers.push(DeadWorker {
            label,
            ids,
            at,
            until: f64::INFINITY,
        });
    }

    /// Starts a fresh life of worker `slot` (after `kill_worker`).
    pub fn restart_worker(&mut self, slot: usize) {
        assert!(
            !self.cluster.worker(slot).is_running(),
            "worker w{slot} still runs"
        );
        eprintln!(
            "[{}] restarting worker w{slot}",
            format_unix_secs(unix_now())
        );
        self.cluster.worker_mut(slot).restart();
    }

    /// Freezes worker `slot` with SIGSTOP for `frozen_secs`, then resumes
    /// it with SIGCONT.
    pub async fn freeze_worker(&mut self, slot: usize, frozen_secs: f64) {
        let (label, ids) = self.worker_label(slot);
        let at = self.note_fault(format!("SIGSTOP {label} for {frozen_secs:.1}s"));
        self.cluster.worker(slot).freeze();
        sleep_secs(frozen_secs).await;
        self.cluster.worker(slot).thaw();
        let until = unix_now();
        eprintln!("[{}] SIGCONT worker w{slot}", format_unix_secs(until));
        self.dead_workers.push(DeadWorker {
            label,
            ids,
            at,
            until,
        });
    }

    /// SIGKILLs the leader coordinator and waits for the other one's
    /// `became the leader coordinator` line; returns the killed slot. The
    /// takeover time is measured up to that line's own timestamp.
    pub fn kill_leader(&mut self) -> usize {
        self.take_out_leader(false)
    }

    /// Freezes the leader coordinator (SIGSTOP): it keeps its ports and
    /// connections and answers nothing, as a leader on a vanished host does
    /// (no reset reaches the workers). Waits for the standby's takeover like
    /// `kill_leader`; `thaw_coordinator` wakes the frozen one as a zombie.
    pub fn freeze_leader(&mut self) -> usize {
        self.take_out_leader(true)
    }

    /// SIGCONT to a frozen coordinator.
    pub fn thaw_coordinator(&mut self, slot: usize) {
        self.note_fault(format!("SIGCONT coordinator c{slot} (a zombie leader)"));
        self.cluster.coordinator(slot).thaw();
    }

    /// Takes the leader out (SIGSTOP when `freeze`, else SIGKILL) and waits
    /// for the standby's takeover; returns the leader's slot.
    fn take_out_leader(&mut self, freeze: bool) -> usize {
        let slot = self.cluster.wait_leader(LINE_TIMEOUT);
        let other = 1 - slot;
        assert!(
            self.cluster.coordinator(other).is_running(),
            "no standby coordinator"
        );
        let how = if freeze { "SIGSTOP" } else { "SIGKILL" };
        let killed_at = self.note_fault(format!("{how} leader coordinator c{slot}"));
        if freeze {
            self.cluster.coordinator(slot).freeze();
        } else {
            self.cluster.coordinator(slot).kill();
        }
        let standby = self.cluster.coordinator(other);
        let line = standby
            .wait_for_line(
                |l| l.contains(BECAME_LEADER) && line_unix_secs(l).is_some_and(|t| t >= killed_at),
                Duration::from_secs(60),
            )
            .unwrap_or_else(|| {
                panic!(
                    "standby c{other} did not become the leader within 60 s of the {how}; log:\n{}",
                    standby.log_tail(40)
                )
            });
        let took_over_at = line_unix_secs(&line).expect("checked above");
        eprintln!(
            "[{}] c{other} took over {:.2}s after the {how}: {line}",
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
    pub fn restart_coordinator(&mut self, slot: usize) {
        assert!(
            !self.cluster.coordinator(slot).is_running(),
            "coordinator c{slot} still runs"
        );
        eprintln!(
            "[{}] restarting coordinator c{slot}",
            format_unix_secs(unix_now())
        );
        self.cluster.coordinator_mut(slot).restart();
        self.cluster.coordinator(slot).expect_line(
            |l| {
                matches!(
                    Leadership::of_line(l),
                    Some(Leadership::Follower | Leadership::Leader)
                )
            },
            LINE_TIMEOUT,
            "that it follows or leads",
        );
    }

    /// SIGKILLs etcd member `member`, waits `down_secs`, restarts it and
    /// waits until it is healthy; returns whether the job still ran at the
    /// restart.
    pub async fn kill_etcd_member(&mut self, member: usize, down_secs: f64) -> bool {
        let role = if self.cluster.etcd().leader() == Some(member) {
            " (Raft leader)"
        } else {
            ""
        };
        self.note_fault(format!("SIGKILL etcd member m{member}{role}"));
        self.cluster.etcd().member(member).kill();
        sleep_secs(down_secs).await;
        let mid_job = !self.cluster.job_finished();
        eprintln!(
            "[{}] restarting etcd member m{member}",
            format_unix_secs(unix_now())
        );
        self.cluster.etcd().member(member).restart();
        self.amend_fault(&format!(", restarted {down_secs:.1}s later"));
        mid_job
    }

    /// Stops the target PostgreSQL (fast shutdown) for `down_secs`, then
    /// starts it again.
    pub async fn restart_target(&mut self, down_secs: f64) {
        self.note_fault(format!(
            "target PostgreSQL restarted (fast stop, {down_secs:.1}s down)"
        ));
        let target = self.cluster.dbs().target_cluster();
        target.stop();
        sleep_secs(down_secs).await;
        target.start_again();
    }

    /// Every requeue line of `job` in any coordinator's log, every life included.
    pub fn requeues(&self, job: &str) -> Vec<Requeue> {
        self.cluster
            .coordinator_lines()
            .iter()
            .filter_map(|l| Requeue::parse(l, job))
            .collect()
    }

    /// Every `chunk committed` line of `job` in any worker's log, every life included.
    pub fn commits(&self, job: &str) -> Vec<Commit> {
        self.cluster
            .workers()
            .iter()
            .flat_map(|w| w.all_lines())
            .filter_map(|l| Commit::parse(&l, job))
            .collect()
    }

    /// The bound on re-leasing `dead`'s chunk: lease TTL + margin after its
    /// death, or after a leader takeover that ended later and began before
    /// the requeue was due (no leader can requeue meanwhile, and a new leader
    /// gives in-flight chunks a fresh lease).
    pub fn relet_bound(&self, dead: &DeadWorker) -> f64 {
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

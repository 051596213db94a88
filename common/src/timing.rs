//! Every lease time, heartbeat interval and timeout of Ferry, with its derivation.
//!
//! Everything derives from the worker lease TTL:
//! - heartbeat = TTL / 3, as etcd's own client renews, so two heartbeats may be
//!   lost before the lease runs out;
//! - a worker fences itself (stops writing, rolls back) when no heartbeat it
//!   *sent* within the last TTL was acknowledged: it measures from the send time,
//!   which precedes the coordinator's receipt, so it stops before the coordinator
//!   can consider it dead and lease its chunks again;
//! - the coordinator requeues a worker's chunks at last heartbeat received + TTL.
//!
//! Correctness never depends on prompt expiry: the fencing token and the
//! target-side ledger keep a late writer from doubling rows.

use std::time::Duration;

/// Default worker lease TTL.
pub const DEFAULT_WORKER_LEASE_TTL: Duration = Duration::from_secs(10);
/// Smallest lease TTL accepted; below it heartbeats would be too frequent.
pub const MIN_WORKER_LEASE_TTL: Duration = Duration::from_millis(900);
/// How long AcquireChunk waits for a chunk before answering empty.
pub const ACQUIRE_LONG_POLL: Duration = Duration::from_millis(1000);
/// Deadline of one worker-to-coordinator call (shorter than a heartbeat would be pointless).
pub const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a chunk's ledger claim waits on another attempt's claim before
/// terminating older attempts' sessions (a frozen zombie keeps its lock forever).
pub const LEDGER_CLAIM_LOCK_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the coordinator logs a progress line while a job runs.
pub const PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(2);
/// How often the scheduler scans for expired leases and finished backoffs.
pub const SCHEDULER_TICK: Duration = Duration::from_millis(200);
/// Least time between two WatchJob events of one job (throttles the stream).
pub const WATCH_INTERVAL: Duration = Duration::from_millis(100);
/// Longest WatchJob waits for a change before looking again anyway.
pub const WATCH_IDLE: Duration = Duration::from_secs(1);
/// Lease TTL of the coordinator's election key. It must be well under the
/// worker lease TTL so a takeover after a leader dies (TTL + poll + reload,
/// about 6 s) completes before workers, which cannot reach a leader meanwhile,
/// fence themselves (10 s): their chunks then survive the switch.
pub const ELECTION_TTL: Duration = Duration::from_secs(5);
/// Election lease renewal: TTL / 3, as etcd's own client renews.
pub const ELECTION_KEEPALIVE: Duration = Duration::from_millis(5000 / 3);
/// A leader whose last successful renewal is older than this steps down
/// before its key can expire under it (TTL minus one renewal of margin).
pub const ELECTION_STEP_DOWN: Duration = Duration::from_millis(5000 - 5000 / 3);
/// How often a follower checks whether the leader key is gone.
pub const ELECTION_POLL: Duration = Duration::from_millis(250);
/// Deadline of one etcd request; past it the outcome is unknown and state is reloaded.
pub const ETCD_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the coordinator touches the source session holding a job's
/// exported snapshot: keeps an `idle_in_transaction_session_timeout` of the
/// source from ending it, and finds a lost session before the workers'
/// retries run out (a chunk's backoff starts at 1 s and grows).
pub const SNAPSHOT_PING: Duration = Duration::from_secs(5);
/// Wait before exporting a job's snapshot again after the source refused.
pub const SNAPSHOT_RETRY: Duration = Duration::from_secs(2);
/// Connect timeout for source and target databases.
pub const DB_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline of one OpenLineage POST. Lineage is best effort and runs beside
/// the jobs, so a slow collector only delays the next event: 5 s matches the
/// OpenLineage Python client's default HTTP timeout.
pub const LINEAGE_POST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the lineage follower looks at job states when nothing signals a
/// change (a new leader's scheduler, a missed notification): as WATCH_IDLE.
pub const LINEAGE_POLL: Duration = Duration::from_secs(1);
/// Least time between two looks at job states: progress notifications arrive
/// per chunk, but only state changes make events; 5 × WATCH_INTERVAL.
pub const LINEAGE_MIN_INTERVAL: Duration = Duration::from_millis(500);
/// Deadline for finding the tables a job's query reads (connect + EXPLAIN);
/// past it the START event goes out with the source connection alone.
pub const LINEAGE_EXPLAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a worker told to stop gives chunks in flight whose attempts were
/// stopped (released) to roll back and report before it reports them released
/// itself and exits: a COPY sees the stop at its next 256 KB buffer, but a
/// statement already running in the target ends only when it returns (the
/// server rolls it back when the connection closes at exit).
pub const RELEASE_WAIT: Duration = Duration::from_secs(3);
/// Time a worker needs after its drain timeout to release what it still holds
/// and exit: the release wait plus one report round trip (`RPC_TIMEOUT`),
/// rounded up. The Helm chart sets `--drain-timeout` to
/// `terminationGracePeriodSeconds` minus this, so the worker exits before the
/// kubelet's SIGKILL.
pub const DRAIN_MARGIN: Duration = Duration::from_secs(10);
/// Longest a stopped worker waits for the coordinator to acknowledge that it
/// leaves (the session ends at once then; otherwise its lease runs out).
pub const LEAVE_WAIT: Duration = Duration::from_secs(1);
/// Default drain timeout: how long a worker told to stop (SIGTERM) lets the
/// chunks it holds finish before it rolls them back and hands them back:
/// Kubernetes' default `terminationGracePeriodSeconds` (30 s) minus
/// `DRAIN_MARGIN`.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30 - 10);
/// How long a client skips a coordinator address it could not reach (and
/// hints naming it): a follower names a dead leader until the leader's
/// election key expires, which takes at most `ELECTION_TTL`.
pub const REPLICA_DOWN_FOR: Duration = ELECTION_TTL;
/// How long a coordinator stopping (SIGTERM) waits for etcd to revoke its
/// election lease, so the standby may lead at once: one etcd request.
pub const RESIGN_TIMEOUT: Duration = ETCD_REQUEST_TIMEOUT;

/// The pace of etcd's group committer under load: one transaction per this
/// interval once a short burst is spent (see `store::commit_pace`); writes
/// that arrive meanwhile share the next transaction, unless the batch fills
/// first. etcd's small-cluster sizing assumes at most a few hundred write
/// requests a second; one per 10 ms keeps a busy leader under 100
/// transactions a second, so a steady 1,000 chunks/s (two writes each) costs
/// about 100 write requests a second instead of one per write. While the rate
/// is low (a few workers, chunks of tens of milliseconds and more) a write
/// goes out at once: the pause between a worker's chunks is one etcd round
/// trip, not this interval.
pub const GROUP_COMMIT_LINGER: Duration = Duration::from_millis(10);
/// Etcd client keepalive ping interval: a dead connection to a member is
/// noticed within a couple of seconds, well inside a request deadline.
pub const ETCD_KEEPALIVE: Duration = Duration::from_secs(2);
/// First wait before retrying an etcd call that never reached a member
/// (doubled up to four times: 50 ms to 800 ms, about one election round).
pub const ETCD_UNSENT_RETRY: Duration = Duration::from_millis(50);
/// Wait before campaigning again after an election error (a fifth of the
/// election TTL: a quick retry that does not spin).
pub const ELECTION_RETRY: Duration = Duration::from_secs(1);
/// Wait before re-listing `assign/` keys after the watch broke (compaction,
/// a lost member): the same as an election retry.
pub const ASSIGNMENT_WATCH_RETRY: Duration = ELECTION_RETRY;
/// TCP connect timeout to a coordinator: shorter than a worker call's
/// deadline, so a dead address leaves time to try the next one.
pub const COORDINATOR_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// HTTP/2 ping interval on a connection to a coordinator, and how long a ping
/// may go unanswered before the connection is dropped: a leader whose host
/// vanished (a killed pod's address answers nothing, so no reset comes) is
/// noticed within their sum instead of after a call's deadline, and the
/// worker moves to the next address well inside its lease.
pub const COORDINATOR_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// See `COORDINATOR_KEEPALIVE_INTERVAL`.
pub const COORDINATOR_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed heartbeat a worker sends the next one this soon, not a
/// heartbeat interval later: across a leader's failover it reaches the new
/// leader as soon as that one leads, before its lease can run out.
pub const HEARTBEAT_RETRY: Duration = Duration::from_millis(500);
/// A worker whose lease request failed waits this long before asking again
/// (half the acquire long-poll: quick, without spinning on a dead leader).
pub const WORKER_LEASE_RETRY: Duration = Duration::from_millis(500);
/// First and last wait between a worker's registration attempts (doubling):
/// it finds a new leader within an election's time.
pub const REGISTER_RETRY_MIN: Duration = Duration::from_millis(200);
/// See `REGISTER_RETRY_MIN`.
pub const REGISTER_RETRY_MAX: Duration = Duration::from_secs(2);
/// First and last wait between attempts to deliver a chunk report (doubling).
pub const REPORT_RETRY_MIN: Duration = Duration::from_millis(100);
/// See `REPORT_RETRY_MIN`.
pub const REPORT_RETRY_MAX: Duration = Duration::from_secs(2);
/// A worker gives up delivering a chunk report after this long: three
/// default lease times, enough to outlast a leader takeover (~5 s); after it
/// the coordinator leases the chunk again and the ledger settles it.
pub const REPORT_GIVE_UP: Duration = Duration::from_secs(30);
/// A client following a job tries again this often while no coordinator
/// answers (an election's poll, rounded up)…
pub const CLIENT_RECONNECT: Duration = Duration::from_secs(1);
/// …and gives up after this long (many takeovers' worth).
pub const CLIENT_OUTAGE_LIMIT: Duration = Duration::from_secs(60);
/// How long start-up waits for the OTLP endpoint to accept a connection
/// before warning that it is unreachable (the check never delays the copy).
pub const OTLP_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the metrics' view of the job table may be reused between
/// observable callbacks: one scrape reads every per-job series from one
/// snapshot, and a scrape never waits on the scheduler's lock (a busy lock
/// serves the last snapshot instead).
pub const METRICS_SNAPSHOT_MAX_AGE: Duration = Duration::from_millis(500);
/// How often the leader looks for finished jobs past their retention.
pub const RETENTION_SWEEP: Duration = Duration::from_secs(5);
/// Shortest non-zero job retention: a finished job's per-job series must
/// stay for at least two scrape intervals, and 15 s is the scrape interval
/// of Prometheus's example configuration and of most ServiceMonitors.
pub const MIN_JOB_RETENTION: Duration = Duration::from_secs(30);
/// Default job retention: a day of finished jobs stays in memory and etcd.
pub const DEFAULT_JOB_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Default ledger retention (`FERRY_LEDGER_RETENTION`): a job's ledger rows
/// leave its target once its last chunk committed this long ago and the
/// leader no longer holds the job. A month is well past the default job
/// retention, so `ferry verify` and `ferry repair` of any job still held
/// find its rows, and a ledger of 1,000 chunks an hour stays under a
/// million rows.
pub const DEFAULT_LEDGER_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often the leader removes ledger rows past the ledger retention: the
/// sweep reads each target's ledger once, and rows only a month old and
/// more are concerned, so hourly keeps ledgers within an hour of their
/// retention at negligible cost.
pub const LEDGER_GC_SWEEP: Duration = Duration::from_secs(3600);
/// A new leader's first ledger sweep waits this long: past its takeover's
/// burst (workers re-registering and leasing within three default lease
/// TTLs), and soon enough that a leader replaced every hour still sweeps.
pub const LEDGER_GC_FIRST: Duration = Duration::from_secs(30);
/// First and last wait between attempts to write a job's history row
/// (doubling): a history database that is down is tried again, never given up on.
pub const HISTORY_RETRY_MIN: Duration = Duration::from_millis(500);
/// See `HISTORY_RETRY_MIN`.
pub const HISTORY_RETRY_MAX: Duration = Duration::from_secs(30);
/// `ferry local`: how long workers get to finish once the job has ended.
pub const LOCAL_WORKER_STOP: Duration = Duration::from_secs(5);
/// `ferry local`: how long the job's history row gets to be written before
/// exit (a few writes to the target, which just took the whole copy).
pub const LOCAL_HISTORY_FLUSH: Duration = Duration::from_secs(10);
/// `ferry local`: how long the server gets to stop.
pub const LOCAL_SERVER_STOP: Duration = Duration::from_secs(2);
/// After an interrupted `ferry local` cancels its job, how long it waits for
/// chunks in flight to roll back before exiting (a heartbeat or two).
pub const LOCAL_CANCEL_GRACE: Duration = Duration::from_secs(2);
/// How often certificate, key and tokens files are checked for changes. A
/// Kubernetes Secret update reaches a pod's files within about a minute
/// (kubelet sync period); checking every 2 s adds little to that and costs a
/// few small reads.
pub const SECURITY_FILE_POLL: Duration = Duration::from_secs(2);
/// Longest a TLS handshake may take before the connection is dropped (a
/// silent or very slow peer must not hold an accept slot): well above a
/// handshake's few round trips on any network Ferry runs on.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a worker keeps an idle pooled database connection before closing
/// it (`FERRY_POOL_IDLE_TIMEOUT`): a few seconds, long enough for a worker's
/// next chunk to reuse it, short enough that `pg_stat_activity` shows the
/// connections in use rather than those once used.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long the coordinator's connection budget still counts a connection a
/// worker has pooled after its chunk ended: the worker's sweep runs every
/// idle / 2, so the connection is closed by idle × 1.5, plus 1 s for the
/// server to see the session end.
pub fn pooled_linger(idle: Duration) -> Duration {
    idle + idle / 2 + Duration::from_secs(1)
}

/// How often a reservation waiting on a full connection budget looks again
/// even when nothing signals a release (pooled connections expire in time,
/// not on an event): as SCHEDULER_TICK.
pub const BUDGET_POLL: Duration = SCHEDULER_TICK;

/// The timings of one cluster, derived from its worker lease TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// Worker lease TTL.
    pub lease_ttl: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            lease_ttl: DEFAULT_WORKER_LEASE_TTL,
        }
    }
}

/// A lease TTL that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("lease TTL {got:?} is shorter than the minimum {min:?}: raise --lease-ttl-ms")]
pub struct TimingError {
    /// The TTL asked for.
    pub got: Duration,
    /// The minimum.
    pub min: Duration,
}

impl Timings {
    /// Timings for a lease TTL, rejected when too short for three heartbeats.
    pub fn new(lease_ttl: Duration) -> Result<Self, TimingError> {
        if lease_ttl < MIN_WORKER_LEASE_TTL {
            return Err(TimingError {
                got: lease_ttl,
                min: MIN_WORKER_LEASE_TTL,
            });
        }
        Ok(Self { lease_ttl })
    }

    /// Heartbeat interval: TTL / 3.
    pub fn heartbeat_interval(&self) -> Duration {
        self.lease_ttl / 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn election_outpaces_worker_fencing() {
        assert!(ELECTION_KEEPALIVE * 3 <= ELECTION_TTL);
        assert!(ELECTION_STEP_DOWN < ELECTION_TTL);
        assert!(ELECTION_TTL + ELECTION_POLL + ETCD_REQUEST_TIMEOUT < DEFAULT_WORKER_LEASE_TTL);
    }

    #[test]
    fn a_drain_fits_kubernetes_default_grace_period() {
        assert_eq!(
            DEFAULT_DRAIN_TIMEOUT + DRAIN_MARGIN,
            Duration::from_secs(30)
        );
        // released chunks roll back, then one report round trip, before SIGKILL
        assert!(RELEASE_WAIT + RPC_TIMEOUT + LEAVE_WAIT <= DRAIN_MARGIN);
    }

    #[test]
    fn retries_fit_inside_their_deadlines() {
        assert!(COORDINATOR_CONNECT_TIMEOUT < RPC_TIMEOUT);
        // a dead connection is dropped before a call on it times out, and a
        // worker following a takeover heartbeats the new leader inside its lease
        assert!(COORDINATOR_KEEPALIVE_INTERVAL + COORDINATOR_KEEPALIVE_TIMEOUT < RPC_TIMEOUT);
        assert!(
            ELECTION_TTL + ELECTION_POLL + COORDINATOR_KEEPALIVE_TIMEOUT + HEARTBEAT_RETRY
                < DEFAULT_WORKER_LEASE_TTL
        );
        assert!(REGISTER_RETRY_MAX <= ELECTION_TTL);
        assert!(REPORT_GIVE_UP >= DEFAULT_WORKER_LEASE_TTL * 3);
        assert!(ETCD_UNSENT_RETRY * 16 < ETCD_REQUEST_TIMEOUT);
        assert!(ETCD_KEEPALIVE < ETCD_REQUEST_TIMEOUT);
        assert!(WORKER_LEASE_RETRY < ACQUIRE_LONG_POLL);
        assert!(METRICS_SNAPSHOT_MAX_AGE < Duration::from_secs(15));
        assert!(RETENTION_SWEEP * 2 < MIN_JOB_RETENTION);
        assert!(MIN_JOB_RETENTION <= DEFAULT_JOB_RETENTION);
        assert!(HISTORY_RETRY_MIN < HISTORY_RETRY_MAX);
        assert!(LEDGER_GC_FIRST >= DEFAULT_WORKER_LEASE_TTL * 3);
        assert!(LEDGER_GC_FIRST < LEDGER_GC_SWEEP);
        assert!(DEFAULT_JOB_RETENTION < DEFAULT_LEDGER_RETENTION);
    }

    #[test]
    fn heartbeat_is_a_third_of_the_ttl() {
        let t = Timings::default();
        assert!(t.heartbeat_interval() * 3 <= t.lease_ttl);
        assert!(Timings::new(Duration::from_millis(100)).is_err());
    }
}

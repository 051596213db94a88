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

/// How long etcd's group committer waits after a chunk write arrives for
/// others to share its transaction, unless the batch fills first. etcd's
/// small-cluster sizing assumes at most a few hundred write requests a
/// second; a batch formed at most every 10 ms keeps a busy leader under 100
/// partial transactions a second (the batches in flight do not change that:
/// each waits from its own first write), so a steady 1,000 chunks/s (two
/// writes each) costs about 100 write requests a second instead of one per
/// write. A lease or report waits at most this much longer, against chunks
/// that take seconds.
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
/// `ferry local`: how long workers get to finish once the job has ended.
pub const LOCAL_WORKER_STOP: Duration = Duration::from_secs(5);
/// `ferry local`: how long the server gets to stop.
pub const LOCAL_SERVER_STOP: Duration = Duration::from_secs(2);
/// After an interrupted `ferry local` cancels its job, how long it waits for
/// chunks in flight to roll back before exiting (a heartbeat or two).
pub const LOCAL_CANCEL_GRACE: Duration = Duration::from_secs(2);

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
    fn retries_fit_inside_their_deadlines() {
        assert!(COORDINATOR_CONNECT_TIMEOUT < RPC_TIMEOUT);
        assert!(REGISTER_RETRY_MAX <= ELECTION_TTL);
        assert!(REPORT_GIVE_UP >= DEFAULT_WORKER_LEASE_TTL * 3);
        assert!(ETCD_UNSENT_RETRY * 16 < ETCD_REQUEST_TIMEOUT);
        assert!(ETCD_KEEPALIVE < ETCD_REQUEST_TIMEOUT);
        assert!(WORKER_LEASE_RETRY < ACQUIRE_LONG_POLL);
    }

    #[test]
    fn heartbeat_is_a_third_of_the_ttl() {
        let t = Timings::default();
        assert!(t.heartbeat_interval() * 3 <= t.lease_ttl);
        assert!(Timings::new(Duration::from_millis(100)).is_err());
    }
}

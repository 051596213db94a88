//! When the group committer may send its next etcd transaction: at once
//! while the recent rate is low, so a lone completion or lease waits for
//! nothing, and one per `GROUP_COMMIT_LINGER` under load, when writes share
//! transactions. A token bucket (the generic cell rate algorithm): a burst
//! of `COMMIT_BURST` transactions goes out at once; after it, one every
//! interval. etcd thus never sees more than `1 / interval` transactions a
//! second for long (100/s at 10 ms), whatever the chunk rate, and a worker
//! that reports a chunk every few hundred milliseconds never waits.

use std::time::Duration;

use tokio::time::Instant;

/// Transactions sent at once before the pace holds them to one per interval:
/// as many as a few workers finishing together (each a completion and its
/// next lease) need.
pub(super) const COMMIT_BURST: u32 = 8;

/// The pace of the group committer's transactions.
#[derive(Debug, Clone)]
pub(super) struct Pace {
    interval: Duration,
    burst: u32,
    /// The time at which the bucket would be full again if nothing more
    /// were sent (the algorithm's "theoretical arrival time").
    full_at: Instant,
}

impl Pace {
    /// A full bucket at `now`.
    pub(super) fn new(interval: Duration, burst: u32, now: Instant) -> Self {
        Self {
            interval,
            burst: burst.max(1),
            full_at: now,
        }
    }

    /// The earliest time the next transaction may go (`now` while the
    /// bucket holds a token).
    pub(super) fn ready_at(&self, now: Instant) -> Instant {
        let tolerance = self.interval * (self.burst - 1);
        let earliest = self.full_at.checked_sub(tolerance).unwrap_or(self.full_at);
        earliest.max(now)
    }

    /// Takes a token for a transaction sent at `at`.
    pub(super) fn sent(&mut self, at: Instant) {
        self.full_at = self.full_at.max(at) + self.interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_burst_goes_at_once_then_one_per_interval() {
        let t0 = Instant::now();
        let mut p = Pace::new(10 * MS, 3, t0);
        for _ in 0..3 {
            assert_eq!(p.ready_at(t0), t0, "within the burst: at once");
            p.sent(t0);
        }
        assert_eq!(p.ready_at(t0), t0 + 10 * MS, "the bucket is empty");
        p.sent(t0 + 10 * MS);
        assert_eq!(p.ready_at(t0 + 10 * MS), t0 + 20 * MS);
    }

    #[test]
    fn a_slow_caller_never_waits() {
        let t0 = Instant::now();
        let mut p = Pace::new(10 * MS, 2, t0);
        for i in 0..100u32 {
            let now = t0 + 25 * MS * i;
            assert_eq!(
                p.ready_at(now),
                now,
                "a write every 25 ms waits for nothing"
            );
            p.sent(now);
        }
    }

    #[test]
    fn sustained_rate_is_one_per_interval() {
        let t0 = Instant::now();
        let mut p = Pace::new(10 * MS, 8, t0);
        let mut now = t0;
        let mut sent = 0u32;
        // a caller that always has something to send, for one second
        while now < t0 + Duration::from_secs(1) {
            now = p.ready_at(now);
            p.sent(now);
            sent += 1;
        }
        assert!(sent <= 100 + 8, "{sent} transactions in a second");
        assert!(sent >= 100, "{sent} transactions in a second");
    }
}

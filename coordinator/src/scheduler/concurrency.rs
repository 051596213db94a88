//! Adaptive concurrency: how many chunks of a job run at once below its
//! `max_workers` cap, adapted to the rows/s its target takes (AIMD, as TCP
//! or Netflix's concurrency-limits: add one stream while rows/s rises, back
//! off multiplicatively when it does not).
//!
//! A job starts in slow start, as TCP does: the level doubles while each
//! doubling raises rows/s, so a job capped at hundreds of workers on a
//! cluster that can take them reaches them in a few windows instead of one
//! stream per window. The first doubling that does not help ends slow
//! start at the level it doubled from, and AIMD takes over from there.
//!
//! Throughput is measured as rows landed per second of wall time: a window
//! runs from the completion of a chunk leased at the level to a later
//! instant before which every chunk then leased has landed, and each chunk
//! of the job counts the share of its rows that its lease-to-commit time
//! spent inside the window (a chunk is taken to progress evenly). The gaps
//! between a chunk's commit and the next lease count (Little's law over
//! lease→complete times left them out, and made one stream look as fast as
//! two on a machine where it is 12 % slower), and the window's edges cut
//! chunks instead of counting whole ones (counting whole chunks, a window of
//! six was off by a sixth whenever two streams landed together). Noise is
//! smoothed three ways: a window holds at least `MIN_WINDOW` chunks (and at
//! least one per stream) and spans at least `MIN_SPAN`, each level keeps an
//! exponentially weighted rate, and a level must beat the one below by
//! `RISE` to count as rising. The chunks leased before the job's first
//! chunk lands are not measured: they pay for the workers' first
//! connections and the source's cold caches, and a first window that slow
//! would make any second level look rising. After
//! a back-off the controller holds its level for a number of windows that
//! doubles with each failed probe (up to `MAX_HOLD`), so a level that does
//! not help is tried less and less often. A level below is probed only
//! when the level above was clearly slower (past the peak; a plateau's
//! lower edge is more likely its end than a better level), and no probe is
//! made when too few chunks wait to be leased to repay it. Pure logic: no
//! clock, no I/O.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::state::JobRuntime;

/// Fewest chunks a measurement window holds.
const MIN_WINDOW: u32 = 3;
/// Shortest wall time a measurement window spans: shorter windows of short
/// chunks were noisier than the 5–12 % between levels.
const MIN_SPAN: Duration = Duration::from_millis(500);
/// Share by which a level's rows/s must beat the level below to be rising.
const RISE: f64 = 0.05;
/// Multiplicative back-off factor (the new level is at most one below).
const BETA: f64 = 0.75;
/// Weight of a new window in a level's smoothed rate.
const ALPHA: f64 = 0.5;
/// Windows held after a first back-off before probing again.
const FIRST_HOLD: u32 = 2;
/// Most windows held after back-offs.
const MAX_HOLD: u32 = 16;
/// Level a job starts at (or its cap when smaller).
pub(crate) const START: u32 = 2;
/// Windows' worth of chunks (at the level probed) that must still wait to
/// be leased for a probe to be worth its cost: a probe that ends the job
/// cannot be repaid by the better level it might find.
const PAYBACK_WINDOWS: u32 = 8;

/// A change of level, for the log line and the metric.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Change {
    /// Level before.
    pub from: u32,
    /// Level after.
    pub to: u32,
    /// Smoothed rows/s at the level below `from` (or above, on a downward
    /// step), when measured: what `rate` was compared with.
    pub before: Option<f64>,
    /// Smoothed rows/s at `from`.
    pub rate: f64,
}

/// The controller of one job.
#[derive(Debug, Clone)]
pub(crate) struct Controller {
    cap: u32,
    limit: u32,
    /// Bumped at every change: chunks leased before it are not measured.
    epoch: u32,
    /// Chunks leased in flight: their epoch (None: leased while the job
    /// was warming up) and the streams in flight then.
    leased: HashMap<u32, (Option<u32>, u32)>,
    /// No chunk of the job has landed yet.
    warming: bool,
    /// Where the window starts: when the level's first chunk landed, then
    /// where the last window ended (None: not yet).
    anchor: Option<Instant>,
    /// Chunks of the job that landed after the anchor: lease, commit, rows.
    landed: Vec<(Instant, Instant, u64)>,
    /// When the oldest chunk of the job still in flight was leased.
    oldest_in_flight: Option<Instant>,
    /// Chunks of this level landed since the anchor.
    samples: u32,
    /// Their streams in flight, summed.
    streams_sum: f64,
    /// Smoothed rows/s by level.
    rates: BTreeMap<u32, f64>,
    /// Windows to stay at this level before probing up.
    hold: u32,
    /// Back-offs since the last probe up that was rising.
    fails: u32,
    /// The level was reached by a step up.
    came_up: bool,
    /// Still in slow start (doubling).
    slow: bool,
    /// In slow start, the level the last doubling started from.
    doubled_from: Option<u32>,
    /// Chunks of the job not yet leased (u32::MAX: not told).
    waiting: u32,
}

impl Controller {
    /// A controller for a job of at most `cap` chunks in flight.
    pub fn new(cap: u32) -> Self {
        let cap = cap.max(1);
        Self {
            cap,
            limit: START.min(cap),
            epoch: 0,
            leased: HashMap::new(),
            warming: true,
            anchor: None,
            landed: Vec::new(),
            oldest_in_flight: None,
            samples: 0,
            streams_sum: 0.0,
            rates: BTreeMap::new(),
            hold: 0,
            fails: 0,
            came_up: false,
            slow: true,
            doubled_from: None,
            waiting: u32::MAX,
        }
    }

    /// Chunks the job may have in flight now (1 ..= cap).
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Lowers the cap (a plan that allows fewer writers); the limit follows.
    pub fn set_cap(&mut self, cap: u32) {
        self.cap = cap.max(1);
        self.limit = self.limit.min(self.cap);
    }

    /// Notes how many chunks of the job wait to be leased (probes stop when
    /// too few are left to repay them).
    pub fn set_waiting(&mut self, chunks: u32) {
        self.waiting = chunks;
    }

    /// Notes when the oldest chunk of the job still in flight was leased
    /// (None: none is): a window ends no later, so every chunk that overlaps
    /// it has landed and is counted.
    pub fn set_oldest_in_flight(&mut self, leased_at: Option<Instant>) {
        self.oldest_in_flight = leased_at;
    }

    /// Whether enough chunks wait for a probe to `level` to pay for itself.
    fn worth_probing(&self, level: u32) -> bool {
        self.waiting >= PAYBACK_WINDOWS.saturating_mul(MIN_WINDOW.max(level))
    }

    /// Notes that chunk `n` was leased with `in_flight` chunks of the job
    /// in flight (itself included).
    pub fn leased(&mut self, n: u32, in_flight: u32) {
        let epoch = (!self.warming).then_some(self.epoch);
        self.leased.insert(n, (epoch, in_flight));
    }

    /// Notes that chunk `n` landed `rows` rows `seconds` after its lease, at
    /// `at`, with `in_flight` chunks of the job in flight as it ended
    /// (itself included); returns the change of level it leads to, if any.
    pub fn completed(
        &mut self,
        n: u32,
        rows: u64,
        seconds: f64,
        in_flight: u32,
        at: Instant,
    ) -> Option<Change> {
        if self.anchor.is_some() {
            // a chunk never leased here (adopted after a takeover) lands at once
            let lease = at
                .checked_sub(Duration::from_secs_f64(seconds.max(0.0)))
                .unwrap_or(at);
            self.landed.push((lease, at, rows));
        }
        let (epoch, at_lease) = self.leased.remove(&n)?;
        self.warming = false;
        if epoch != Some(self.epoch) || seconds <= 0.0 {
            return None;
        }
        let Some(anchor) = self.anchor else {
            // the level's first chunk only marks where the window's time starts
            self.anchor = Some(at);
            self.landed.clear();
            return None;
        };
        // the streams it shared the target with: the mean of its two ends
        let at_end = in_flight.clamp(1, self.limit);
        self.samples += 1;
        self.streams_sum += (at_lease + at_end) as f64 / 2.0;
        // the window ends where every chunk leased before has landed
        let end = self.oldest_in_flight.map_or(at, |o| o.min(at));
        let span = end.saturating_duration_since(anchor);
        if self.samples < MIN_WINDOW.max(self.limit) || span < MIN_SPAN {
            return None;
        }
        let rows = rows_within(&self.landed, anchor, end);
        let streams = self.streams_sum / f64::from(self.samples);
        // the next window at this level starts where this one ends
        self.anchor = Some(end);
        self.landed.retain(|(_, to, _)| *to > end);
        self.samples = 0;
        self.streams_sum = 0.0;
        let rate = rows / span.as_secs_f64();
        let smoothed = match self.rates.get(&self.limit) {
            Some(old) => old * (1.0 - ALPHA) + rate * ALPHA,
            None => rate,
        };
        self.rates.insert(self.limit, smoothed);
        // the limit held the job back only when its streams reached it
        let binding = streams + 0.5 >= self.limit as f64;
        let to = self.decide(smoothed, binding)?;
        let before = if to > self.limit {
            self.rates.get(&(self.limit - 1)).copied()
        } else {
            self.rates
                .get(&(self.limit - 1))
                .or_else(|| self.rates.get(&(self.limit + 1)))
                .copied()
        };
        let change = Change {
            from: self.limit,
            to,
            before,
            rate: smoothed,
        };
        self.came_up = to > self.limit;
        self.limit = to;
        self.anchor = None;
        self.epoch = self.epoch.wrapping_add(1);
        let epoch = self.epoch;
        self.leased.retain(|_, (e, _)| *e == Some(epoch));
        Some(change)
    }

    /// The next level after a window whose smoothed rate at this level is
    /// `r` (None: stay).
    fn decide(&mut self, r: f64, binding: bool) -> Option<u32> {
        let l = self.limit;
        if self.slow {
            return self.slow_start(r, binding);
        }
        let down = l
            .checked_sub(1)
            .filter(|d| *d >= 1)
            .and_then(|d| self.rates.get(&d).copied());
        if let Some(d) = down {
            if r < d * (1.0 + RISE) {
                // more streams without more rows/s: back off
                self.fails += 1;
                self.hold = (FIRST_HOLD << (self.fails - 1).min(8)).min(MAX_HOLD);
                let to = ((l as f64 * BETA).floor() as u32).clamp(1, l - 1);
                return Some(to);
            }
            if self.came_up {
                self.fails = 0;
                self.came_up = false;
            }
        }
        if self.hold > 0 {
            self.hold -= 1;
            return None;
        }
        let up = self.rates.get(&(l + 1)).copied();
        if l > 1
            && down.is_none()
            && up.is_some_and(|u| u < r * (1.0 - RISE))
            && self.worth_probing(l - 1)
        {
            // the level above was clearly slower (past the peak, not on a
            // plateau, where a level below would leave it) and the one below
            // was never measured
            return Some(l - 1);
        }
        (l < self.cap && binding && self.worth_probing(l + 1)).then_some(l + 1)
    }
}

impl Controller {
    /// Slow start's next level: double while doubling raised rows/s by
    /// `RISE`; otherwise end slow start at the level doubled from.
    fn slow_start(&mut self, r: f64, binding: bool) -> Option<u32> {
        let l = self.limit;
        let from = self
            .doubled_from
            .and_then(|f| self.rates.get(&f).map(|rate| (f, *rate)));
        if let Some((f, rate)) = from {
            if r < rate * (1.0 + RISE) {
                self.slow = false;
                self.hold = FIRST_HOLD;
                return Some(f);
            }
        }
        if !binding {
            return None;
        }
        if l >= self.cap {
            self.slow = false;
            return None;
        }
        if !self.worth_probing(l.saturating_mul(2).min(self.cap)) {
            return None;
        }
        self.doubled_from = Some(l);
        Some(l.saturating_mul(2).min(self.cap))
    }
}

/// Rows the chunks in `landed` (lease, commit, rows) landed within
/// `from..to`, each its rows times the share of its lease-to-commit time
/// inside (a chunk that took no time counts whole when it landed inside).
fn rows_within(landed: &[(Instant, Instant, u64)], from: Instant, to: Instant) -> f64 {
    landed
        .iter()
        .map(|(lease, done, rows)| {
            let took = done.saturating_duration_since(*lease);
            if took.is_zero() {
                return if *done > from && *done <= to {
                    *rows as f64
                } else {
                    0.0
                };
            }
            let inside = (*done)
                .min(to)
                .saturating_duration_since((*lease).max(from));
            *rows as f64 * inside.as_secs_f64() / took.as_secs_f64()
        })
        .sum()
}

/// Feeds chunk `n` of `job`, leased at `leased_at`, that landed `rows`,
/// to the job's controller; a change of level is logged
/// (`concurrency <target>: 3 → 4 (rows/s 510k → 560k)`).
/// `in_flight` is the job's chunks in flight as it ended, itself included.
pub(crate) fn observe(job: &mut JobRuntime, n: u32, rows: u64, leased_at: Instant, in_flight: u32) {
    let Some(c) = job.concurrency.as_mut() else {
        return;
    };
    c.set_waiting((job.ready.len() + job.delayed.len()) as u32);
    c.set_oldest_in_flight(job.live.values().map(|l| l.leased_at).min());
    let now = Instant::now();
    let seconds = now.saturating_duration_since(leased_at).as_secs_f64();
    let Some(change) = c.completed(n, rows, seconds, in_flight, now) else {
        return;
    };
    let target = job.record.spec.as_ref().map_or("", |s| s.target.as_str());
    let before = change.before.map_or_else(|| "?".to_string(), human_rate);
    tracing::info!(
        job = %job.record.job_id,
        from = change.from,
        to = change.to,
        "concurrency {target}: {} → {} (rows/s {before} → {})",
        change.from,
        change.to,
        human_rate(change.rate)
    );
}

/// Rows per second for a log line: `510k`, `1.2M`, `830`.
pub(crate) fn human_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.1}M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.0}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

#[cfg(test)]
#[path = "concurrency_tests.rs"]
mod tests;

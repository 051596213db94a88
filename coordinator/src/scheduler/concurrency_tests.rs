use std::sync::OnceLock;
use std::time::Duration;

use super::*;

/// The instant `s` seconds into a simulated job.
fn t(s: f64) -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now) + Duration::from_secs_f64(s)
}

const ROWS: u64 = 50_000;

/// Runs `chunks` chunks through a controller of cap `cap` against a target
/// whose total rows/s at `l` streams is `curve(l)` (shared evenly by the
/// streams, times `noise(i)` for the i-th chunk), in simulated time;
/// returns the level each chunk was leased at.
fn simulate(
    cap: u32,
    chunks: u32,
    curve: impl Fn(u32) -> f64,
    noise: impl Fn(u32) -> f64,
) -> Vec<u32> {
    let mut c = Controller::new(cap);
    // (chunk, rows left, leased at)
    let mut in_flight: Vec<(u32, f64, f64)> = Vec::new();
    let mut levels = Vec::new();
    let mut now = 0.0;
    let mut next = 1;
    let mut done = 0;
    while done < chunks {
        while (in_flight.len() as u32) < c.limit() && next <= chunks {
            c.leased(next, in_flight.len() as u32 + 1);
            in_flight.push((next, ROWS as f64, now));
            levels.push(c.limit());
            next += 1;
        }
        let k = in_flight.len() as u32;
        let speed = |n: u32| curve(k) / k as f64 * noise(n);
        let Some(dt) = in_flight
            .iter()
            .map(|(n, left, _)| left / speed(*n))
            .min_by(f64::total_cmp)
        else {
            break;
        };
        now += dt;
        for (n, left, _) in in_flight.iter_mut() {
            *left -= speed(*n) * dt;
        }
        let Some(i) = in_flight.iter().position(|(_, left, _)| *left <= 1e-6) else {
            break;
        };
        let (n, _, at) = in_flight.swap_remove(i);
        c.set_waiting(chunks + 1 - next);
        c.set_oldest_in_flight(
            in_flight
                .iter()
                .map(|(_, _, leased)| *leased)
                .min_by(f64::total_cmp)
                .map(t),
        );
        let _ = c.completed(n, ROWS, now - at, in_flight.len() as u32 + 1, t(now));
        assert!(
            (1..=cap).contains(&c.limit()),
            "limit {} out of 1..={cap}",
            c.limit()
        );
        done += 1;
    }
    levels
}

fn quiet(_: u32) -> f64 {
    1.0
}

/// ±10 % of deterministic noise.
fn noisy(i: u32) -> f64 {
    let x = (i.wrapping_mul(2_654_435_761) >> 8) % 1000;
    0.9 + 0.2 * x as f64 / 1000.0
}

fn mean(levels: &[u32]) -> f64 {
    levels.iter().sum::<u32>() as f64 / levels.len() as f64
}

/// The level most chunks of the last half ran at.
fn settled(levels: &[u32]) -> u32 {
    let tail = &levels[levels.len() / 2..];
    (1..=16)
        .max_by_key(|l| tail.iter().filter(|x| *x == l).count())
        .unwrap_or(0)
}

#[test]
fn a_rising_curve_climbs_to_the_cap() {
    let levels = simulate(8, 200, |l| 100_000.0 * l as f64, quiet);
    assert_eq!(levels[0], 2);
    assert_eq!(settled(&levels), 8);
}

#[test]
fn a_flat_curve_stays_low() {
    let levels = simulate(8, 300, |_| 500_000.0, quiet);
    assert!(settled(&levels) <= 2, "{levels:?}");
    assert!(mean(&levels[100..]) < 2.5, "{levels:?}");
}

#[test]
fn a_falling_curve_backs_off_to_one() {
    let levels = simulate(8, 300, |l| 500_000.0 * (1.0 - 0.1 * (l - 1) as f64), quiet);
    assert_eq!(settled(&levels), 1, "{levels:?}");
}

#[test]
fn a_peak_is_found_and_held() {
    // rises to 3 streams (two cores and PostgreSQL's own), falls after
    let curve = |l: u32| match l {
        1 => 300_000.0,
        2 => 500_000.0,
        3 => 560_000.0,
        n => 560_000.0 * (1.0 - 0.06 * (n - 3) as f64),
    };
    let levels = simulate(8, 400, curve, quiet);
    assert_eq!(settled(&levels), 3, "{levels:?}");
    let m = mean(&levels[200..]);
    assert!((2.8..3.5).contains(&m), "mean {m}: {levels:?}");
}

#[test]
fn noise_does_not_push_it_out_of_bounds_or_far_from_the_peak() {
    let curve = |l: u32| match l {
        1 => 200_000.0,
        2 => 350_000.0,
        3 => 450_000.0,
        4 => 500_000.0,
        n => 500_000.0 * (1.0 - 0.05 * (n - 4) as f64),
    };
    let levels = simulate(8, 600, curve, noisy);
    let m = mean(&levels[300..]);
    assert!((2.5..=5.5).contains(&m), "mean {m}: {levels:?}");
}

#[test]
fn a_cap_of_one_never_changes() {
    let levels = simulate(1, 50, |l| 100_000.0 * l as f64, noisy);
    assert!(levels.iter().all(|l| *l == 1));
}

#[test]
fn slow_first_chunks_do_not_make_more_streams_look_rising() {
    // two streams saturate the machine (bench/RESULTS.md, 5,000,000 rows on
    // 2 cores); the first two chunks run at half speed (first connections,
    // cold caches)
    let curve = |l: u32| match l {
        1 => 650_000.0,
        2 => 760_000.0,
        3 => 730_000.0,
        4 => 700_000.0,
        n => 700_000.0 * (1.0 - 0.03 * (n - 4) as f64),
    };
    let warm_up = |i: u32| if i <= 2 { 0.5 } else { 1.0 };
    let levels = simulate(8, 100, curve, warm_up);
    assert_eq!(settled(&levels), 2, "{levels:?}");
    let m = mean(&levels);
    assert!(m < 2.6, "mean {m}: {levels:?}");
}

#[test]
fn chunks_leased_before_the_first_lands_are_not_measured() {
    let mut c = Controller::new(8);
    c.leased(1, 1);
    c.leased(2, 2);
    assert_eq!(c.completed(1, ROWS, 9.0, 2, t(9.0)), None);
    for n in 3..=6 {
        c.leased(n, 2);
    }
    // chunk 2 was slow (warming up) and is not part of the first window
    assert_eq!(c.completed(2, ROWS, 90.0, 2, t(90.0)), None);
    // chunk 3 starts the window; 4, 5 and 6 land 50,000 rows each 0.5 s apart
    for (n, at) in [(3, 100.0), (4, 100.5), (5, 101.0)] {
        assert_eq!(c.completed(n, ROWS, 0.5, 2, t(at)), None);
    }
    let change = c
        .completed(6, ROWS, 0.5, 2, t(101.5))
        .expect("the first window doubles");
    assert_eq!((change.from, change.to), (2, 4));
    assert!((change.rate - 100_000.0).abs() < 1.0, "{change:?}");
}

#[test]
fn gaps_between_chunks_count_against_a_level() {
    // one stream whose chunks take 0.5 s each, with 0.5 s idle between
    // them: 50,000 rows a second, not the 100,000 of its busy time
    let mut c = Controller::new(1);
    c.leased(1, 1);
    c.completed(1, ROWS, 0.5, 1, t(0.5));
    let mut now = 0.5;
    let mut change = None;
    for n in 2..=20 {
        c.leased(n, 1);
        now += 1.0;
        change = change.or(c.completed(n, ROWS, 0.5, 1, t(now)));
    }
    assert_eq!(change, None, "a cap of 1 never changes");
    let rate = c.rates.get(&1).copied().expect("level 1 measured");
    assert!((rate - 50_000.0).abs() < 1.0, "{rate}");
}

#[test]
fn rows_of_chunks_leased_before_a_change_count_after_it() {
    let mut c = Controller::new(8);
    c.leased(100, 1);
    c.completed(100, ROWS, 0.5, 1, t(0.5));
    for n in 1..=4 {
        c.leased(n, 2);
    }
    c.leased(9, 2);
    for (n, at) in [(1, 1.0), (2, 1.5), (3, 2.0), (4, 2.5)] {
        c.completed(n, ROWS, 0.5, 2, t(at));
    }
    assert_eq!(c.limit(), 4, "the first window doubles (slow start)");
    for n in 10..=14 {
        c.leased(n, 4);
    }
    // chunk 10 (of the new level) starts the window; chunk 9 ran at the old
    // level: no sample of its own, but the rows it landed in the window count
    assert_eq!(c.completed(10, ROWS, 0.5, 4, t(3.0)), None);
    assert_eq!(c.completed(42, ROWS, 1.0, 4, t(3.2)), None, "never leased");
    assert_eq!(c.completed(9, ROWS, 1.0, 4, t(3.5)), None);
    for (n, at) in [(11, 3.5), (12, 4.0), (13, 4.5)] {
        assert_eq!(c.completed(n, ROWS, 0.5, 4, t(at)), None);
    }
    let change = c
        .completed(14, ROWS, 0.5, 4, t(5.0))
        .expect("a window at 4");
    // in the 2 s from 3.0: chunks 11 to 14 whole, half of chunk 9 (leased
    // at 2.5) and a fifth of the never-leased 42 (at 2.2)
    let rows = 4.0 * 50_000.0 + 25_000.0 + 10_000.0;
    assert!((change.rate - rows / 2.0).abs() < 1.0, "{change:?}");
}

#[test]
fn a_window_counts_the_share_of_each_chunk_inside_it() {
    // two streams landing together: whole chunks counted from the first
    // of a pair to the second of a later pair would count one chunk too many
    let mut c = Controller::new(2);
    c.leased(1, 1);
    c.completed(1, ROWS, 0.5, 1, t(0.5));
    let rate = |c: &Controller, l: u32| c.rates.get(&l).copied();
    // pairs leased together every 0.501 s, landing 1 ms apart
    let mut lease = 0.5;
    for pair in 0..2u32 {
        let (a, b) = (10 + 2 * pair, 11 + 2 * pair);
        c.leased(a, 1);
        c.leased(b, 2);
        c.set_oldest_in_flight(Some(t(lease)));
        c.completed(a, ROWS, 0.5, 2, t(lease + 0.5));
        c.set_oldest_in_flight(None);
        c.completed(b, ROWS, 0.501, 1, t(lease + 0.501));
        lease += 0.501;
    }
    // the window runs from the first landing (1.0) to the last (1.502):
    // whole chunks would count three in 0.502 s (299k/s)
    let r = rate(&c, 2).expect("level 2 measured");
    let truth = 100_000.0 / 0.501;
    assert!((r / truth - 1.0).abs() < 0.01, "{r} rows/s, not {truth}");
    // a window ends where the oldest chunk in flight was leased
    let mut c = Controller::new(1);
    c.leased(1, 1);
    c.completed(1, ROWS, 0.5, 1, t(0.5));
    for n in 2..=4 {
        c.leased(n, 1);
    }
    c.set_oldest_in_flight(Some(t(0.6)));
    for (n, at) in [(2, 1.0), (3, 1.5)] {
        c.completed(n, ROWS, 0.5, 1, t(at));
    }
    assert_eq!(rate(&c, 1), None, "the window (0.5 to 0.6) is too short");
}

#[test]
fn the_limit_waits_while_streams_do_not_reach_it() {
    let mut c = Controller::new(8);
    // one stream in flight at a time though two are allowed
    for n in 1..=10 {
        c.leased(n, 1);
        assert_eq!(c.completed(n, ROWS, 0.5, 1, t(n as f64 * 0.5)), None);
    }
    assert_eq!(c.limit(), 2);
}

#[test]
fn a_lower_cap_lowers_the_limit() {
    let mut c = Controller::new(8);
    c.set_cap(1);
    assert_eq!(c.limit(), 1);
}

#[test]
fn rates_read_like_the_log() {
    assert_eq!(human_rate(510_000.0), "510k");
    assert_eq!(human_rate(1_250_000.0), "1.2M");
    assert_eq!(human_rate(830.0), "830");
}

#[test]
fn slow_start_reaches_a_large_cap_in_a_few_windows() {
    // rows/s grows with every stream up to 256 (a big cluster)
    let mut c = Controller::new(256);
    // the job's first chunk (warming up: not measured)
    c.leased(1, 1);
    c.completed(1, ROWS, 0.5, 1, t(0.5));
    let mut now = 0.5;
    let mut changes = 0;
    let mut n = 1;
    while c.limit() < 256 && n < 400 {
        let l = c.limit();
        n += 1;
        c.leased(n, l);
        // each stream takes as long as alone: l chunks land every 0.5 s
        now += 0.5 / f64::from(l);
        if c.completed(n, ROWS, 0.5, l, t(now)).is_some() {
            changes += 1;
        }
    }
    assert_eq!(c.limit(), 256, "after {n} chunks");
    assert_eq!(changes, 7, "2 → 256 by doubling takes 7 changes");
    assert!(n <= 270, "{n} chunks");
}

/// Two cores: two streams are best, three about as good, four and more
/// slower, one 12 % slower (bench/RESULTS.md's adaptive section).
fn two_cores(l: u32) -> f64 {
    match l {
        1 => 440_000.0,
        2 => 500_000.0,
        3 => 490_000.0,
        n => 490_000.0 * (1.0 - 0.05 * (n - 3) as f64),
    }
}

#[test]
fn a_plateau_is_not_left_downward() {
    let levels = simulate(8, 250, two_cores, quiet);
    assert_eq!(settled(&levels), 2, "{levels:?}");
    assert!(
        !levels.contains(&1),
        "probed one stream below a plateau: {levels:?}"
    );
}

#[test]
fn no_probe_when_too_few_chunks_are_left_to_repay_it() {
    let levels = simulate(8, 250, two_cores, quiet);
    // the last windows' worth of chunks run at the settled level
    let tail = &levels[levels.len() - 12..];
    assert!(
        tail.iter().all(|l| *l == 2),
        "probed at the end: {levels:?}"
    );
    // and a job too short to repay a doubling never leaves its start
    let short = simulate(8, 24, two_cores, quiet);
    assert!(short.iter().all(|l| *l == START), "{short:?}");
}

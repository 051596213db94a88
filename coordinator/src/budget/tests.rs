//! The budget's accounting, without databases (explicit limits only).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Budget, ChunkUse};

const LINGER: Duration = Duration::from_secs(5);

fn budget(limits: &[(&str, u32)]) -> Arc<Budget> {
    let explicit: BTreeMap<String, u32> = limits.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    Arc::new(Budget::new(None, explicit, 0.25, LINGER))
}

fn chunk<'a>(job: &'a str, n: u32, worker: &'a str) -> ChunkUse<'a> {
    ChunkUse {
        job_id: job,
        chunk_no: n,
        worker,
        source: "SRC",
        target: "dst",
    }
}

#[test]
fn leases_stop_at_the_limit_and_name_the_connection() {
    let b = budget(&[("src", 2)]);
    let now = Instant::now();
    assert!(b.try_lease(&chunk("a", 1, "w1"), now).is_ok());
    assert!(b.try_lease(&chunk("b", 1, "w2"), now).is_ok());
    assert_eq!(
        b.try_lease(&chunk("c", 1, "w1"), now),
        Err(vec!["src".to_string()])
    );
    assert_eq!(b.in_use("src"), 2);
    // dst has no limit
    assert_eq!(b.in_use("dst"), 2);
}

#[test]
fn ended_chunks_count_while_pooled_and_their_worker_reuses_them() {
    let b = budget(&[("src", 2)]);
    let now = Instant::now();
    b.try_lease(&chunk("a", 1, "w1"), now).unwrap();
    b.try_lease(&chunk("a", 2, "w2"), now).unwrap();
    // chunk a/1 ended: its sessions stay pooled on w1
    b.sync_chunks([chunk("a", 2, "w2")], now);
    assert_eq!(b.in_use("src"), 2);
    // another worker must wait; w1 reuses its pooled session
    assert!(b.try_lease(&chunk("a", 3, "w3"), now).is_err());
    assert!(b.try_lease(&chunk("a", 3, "w1"), now).is_ok());
    assert_eq!(b.in_use("src"), 2);
    // past the linger a pooled session no longer counts
    b.sync_chunks([chunk("a", 3, "w1")], now);
    let later = now + LINGER + Duration::from_millis(1);
    assert!(b.try_lease(&chunk("a", 4, "w3"), later).is_ok());
}

#[test]
fn recovered_chunks_are_counted() {
    let b = budget(&[("src", 1), ("dst", 9)]);
    let now = Instant::now();
    b.sync_chunks([chunk("a", 7, "w1")], now);
    assert_eq!(b.in_use("src"), 1);
    assert!(b.try_lease(&chunk("b", 1, "w2"), now).is_err());
}

#[test]
fn reservations_count_until_dropped() {
    let b = budget(&[("src", 2)]);
    let now = Instant::now();
    let r = b.try_reserve(&["src", "dst"], 0).expect("fits");
    assert_eq!(b.in_use("src"), 1);
    // a snapshot keeps one free for a chunk beside it
    assert!(b.try_reserve(&["src"], 1).is_none());
    assert!(b.try_lease(&chunk("a", 1, "w1"), now).is_ok());
    assert!(b.try_reserve(&["src"], 0).is_none());
    assert_eq!(b.full(&["src", "dst"]), vec!["src".to_string()]);
    drop(r);
    assert_eq!(b.in_use("src"), 1);
    // the same name twice takes two
    assert!(b.try_reserve(&["src", "src"], 0).is_none());
    let usage = b.usage();
    let src = usage.iter().find(|u| u.name == "src").expect("src listed");
    assert_eq!((src.in_use, src.limit), (1, Some(2)));
}

#[tokio::test]
async fn a_waiting_reservation_gets_the_released_session() {
    let b = budget(&[("src", 1)]);
    let held = b.try_reserve(&["src"], 0).expect("fits");
    let waiter = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.reserve(&["src"], "test").await })
    };
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    drop(held);
    let r = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("woken")
        .expect("no panic");
    assert_eq!(b.in_use("src"), 1);
    drop(r);
    assert_eq!(b.in_use("src"), 0);
}

#[test]
fn without_limits_nothing_waits() {
    let b = Arc::new(Budget::default());
    assert!(!b.is_limited());
    let now = Instant::now();
    for n in 0..100 {
        assert!(b.try_lease(&chunk("a", n, "w"), now).is_ok());
    }
    assert!(b.try_reserve(&["src"], 0).is_some());
}

#[test]
fn releases_are_counted_as_they_happen_and_the_full_count_agrees() {
    let b = budget(&[("src", 3)]);
    let now = Instant::now();
    b.try_lease(&chunk("a", 1, "w1"), now).unwrap();
    b.try_lease(&chunk("a", 2, "w2"), now).unwrap();
    b.try_lease(&chunk("a", 3, "w3"), now).unwrap();
    assert!(b.try_lease(&chunk("a", 4, "w4"), now).is_err());
    // a/1 ended: pooled on w1, which reuses it; others still wait
    b.release_chunk("a", 1, now);
    b.release_chunk("a", 1, now); // twice changes nothing
    assert_eq!(b.in_use("src"), 3);
    assert!(b.try_lease(&chunk("a", 4, "w4"), now).is_err());
    b.try_lease(&chunk("a", 4, "w1"), now).unwrap();
    assert_eq!(b.in_use("src"), 3);
    // the tick's full count finds nothing to change
    let live = [
        chunk("a", 2, "w2"),
        chunk("a", 3, "w3"),
        chunk("a", 4, "w1"),
    ];
    assert_eq!(b.sync_chunks(live, now), 0);
    // past the linger the pooled sessions end by themselves
    b.release_chunk("a", 2, now);
    let later = now + LINGER + Duration::from_millis(1);
    assert!(b.try_lease(&chunk("a", 5, "w5"), later).is_ok());
    // a chunk it missed is found and counted, and said so
    assert_eq!(
        b.sync_chunks(
            [
                chunk("a", 3, "w3"),
                chunk("a", 4, "w1"),
                chunk("a", 5, "w5"),
                chunk("b", 9, "w6")
            ],
            later
        ),
        1
    );
    assert_eq!(b.in_use("src"), 4);
}

#[test]
fn a_chunk_held_again_counts_once() {
    let b = budget(&[("src", 2)]);
    let now = Instant::now();
    b.try_lease(&chunk("a", 1, "w1"), now).unwrap();
    b.release_chunk("a", 1, now);
    b.hold_chunk(&chunk("a", 1, "w1"), now);
    // its own sessions plus the pooled pair it released
    assert_eq!(b.in_use("src"), 2);
    assert_eq!(b.sync_chunks([chunk("a", 1, "w1")], now), 0);
    let later = now + LINGER + Duration::from_millis(1);
    assert_eq!(b.sync_chunks([chunk("a", 1, "w1")], later), 0);
    assert_eq!(b.in_use("src"), 1);
}

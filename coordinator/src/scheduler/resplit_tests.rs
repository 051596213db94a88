//! The re-split rule of `--chunk-size auto`, on plans built by hand.

use super::*;

fn int(v: i64) -> Option<KeyTuple> {
    Some(KeyTuple::of(vec![KeyValue::from_int(v)]))
}

/// A plan cut at `cuts` (open at both ends); chunks before `leased` were leased.
fn plan(cuts: &[i64], leased: usize) -> Vec<ChunkRt> {
    let mut bounds = Vec::new();
    let mut lo = None;
    for c in cuts {
        bounds.push(ChunkBounds::range(lo, int(*c)));
        lo = int(*c);
    }
    bounds.push(ChunkBounds::range(lo, None));
    bounds
        .into_iter()
        .enumerate()
        .map(|(i, b)| ChunkRt {
            record: ChunkRecord {
                chunk_no: i as u32 + 1,
                bounds: Some(b),
                state: if i < leased {
                    ChunkState::Succeeded as i32
                } else {
                    ChunkState::Pending as i32
                },
                attempt: u32::from(i < leased),
                ..Default::default()
            },
            version: 0,
        })
        .collect()
}

fn evidence(rows: u64, secs: f64, chunk: u32, density: f64) -> Evidence {
    Evidence {
        rows,
        secs,
        density: Some((chunk, density)),
        ..Default::default()
    }
}

#[test]
fn completions_queue_one_resplit_pass_at_a_time() {
    use ferry_common::proto::{JobSpec, KeyColumn};
    let record = JobRecord {
        key: vec![KeyColumn {
            name: "id".into(),
            r#type: "bigint".into(),
            ..Default::default()
        }],
        spec: Some(JobSpec {
            chunk_size_auto: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut job = JobRuntime::new(record);
    job.chunks = plan(&[10_000, 20_000, 30_000], 2);
    let second = Duration::from_secs(1);
    assert!(
        observe(&mut job, 1, 10_000, second),
        "the first completion queues a pass"
    );
    assert!(
        !observe(&mut job, 2, 10_000, second),
        "one is queued already"
    );
    assert_eq!(job.adaptive.rows, 20_000, "evidence still adds up");
    // the pass clears the flag as it starts (Scheduler::resplit)
    job.adaptive.queued = false;
    assert!(observe(&mut job, 2, 10_000, second));
    // a job without auto chunks never queues one
    let mut fixed = JobRuntime::new(JobRecord::default());
    assert!(!observe(&mut fixed, 1, 10_000, second));
}

#[test]
fn slow_chunks_split_the_ranges_not_yet_leased() {
    // 5 ranges of 10,000 keys; chunks 1-2 landed 10,000 rows each in 5 s:
    // 2,000 rows/s, so a 1 s chunk holds 2,000 rows and each range 5
    let chunks = plan(&[10_000, 20_000, 30_000, 40_000], 2);
    let r = decide(&chunks, &evidence(20_000, 10.0, 2, 1.0), 1).expect("re-split");
    assert_eq!((r.from, r.replaced, r.target), (3, 3, 2_000));
    assert_eq!(r.bounds.len(), 11);
    let shown: Vec<String> = r.bounds.iter().map(|b| format!("{b:?}")).collect();
    // the pieces tile [20000, 40000); the open last range stays whole
    assert_eq!(int_range(&r.bounds[0]), Some((Some(20_000), Some(22_000))));
    assert_eq!(int_range(&r.bounds[4]), Some((Some(28_000), Some(30_000))));
    assert_eq!(int_range(&r.bounds[5]), Some((Some(30_000), Some(32_000))));
    assert_eq!(
        int_range(&r.bounds[10]),
        Some((Some(40_000), None)),
        "{shown:?}"
    );
    for w in r.bounds.windows(2) {
        let (a, b) = (int_range(&w[0]), int_range(&w[1]));
        assert_eq!(a.and_then(|a| a.1), b.and_then(|b| b.0), "{shown:?}");
    }
}

#[test]
fn ranges_near_their_target_stay() {
    // 2,500 rows in 2 s at 1 s a chunk: 1,250 rows, ranges of 2,500 keys
    // are 2 targets, not more
    let chunks = plan(&[2_500, 5_000, 7_500], 1);
    assert_eq!(decide(&chunks, &evidence(2_500, 2.0, 1, 1.0), 1), None);
}

#[test]
fn denser_evidence_re_splits_even_at_the_planned_rate() {
    // the rate says 10,000 rows a chunk, but the last landed range held 4
    // rows a key: the next ranges of 10,000 keys are 40,000 rows, 4 targets
    let chunks = plan(&[10_000, 20_000, 30_000], 2);
    let r = decide(&chunks, &evidence(20_000, 2.0, 2, 4.0), 1).expect("re-split");
    assert_eq!(r.target, 10_000);
    assert_eq!(r.bounds.len(), 5);
}

#[test]
fn only_the_never_leased_tail_is_replaced() {
    // chunk 3 is leased (attempt 1) though chunk 2 waits for a retry: the
    // tail starts after it
    let mut chunks = plan(&[10_000, 20_000, 30_000, 40_000], 1);
    chunks[2].record.state = ChunkState::Leased as i32;
    chunks[2].record.attempt = 1;
    let r = decide(&chunks, &evidence(10_000, 5.0, 1, 1.0), 1).expect("re-split");
    assert_eq!((r.from, r.replaced), (4, 2));
    assert_eq!(int_range(&r.bounds[0]), Some((Some(30_000), Some(32_000))));
}

#[test]
fn nothing_without_evidence_or_beyond_the_cap() {
    let chunks = plan(&[10_000, 20_000, 30_000], 2);
    assert_eq!(decide(&chunks, &Evidence::default(), 1), None);
    // the 1,000-row floor: the 10,000-key range in 10 pieces, the open one whole
    let r = decide(&chunks, &evidence(10, 10.0, 2, 1.0), 1).expect("re-split");
    assert_eq!(r.target, MIN_TARGET_ROWS);
    assert_eq!(r.bounds.len(), 11);
    // ranges of 100,000 keys at the floor would be 201 chunks: left alone
    let wide = plan(&[100_000, 200_000, 300_000, 400_000], 2);
    assert_eq!(decide(&wide, &evidence(10, 10.0, 2, 1.0), 1), None);
}

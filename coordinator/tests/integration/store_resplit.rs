//! `StateStore::replace_unleased` (the run-time re-split of `--chunk-size
//! auto`) on both stores: the never-leased tail of a plan is replaced in one
//! atomic write (plan pages carried over, rewritten and dropped in etcd),
//! a load sees the new plan whole, a chunk written meanwhile makes it fail
//! with nothing written, and a lease racing it: exactly one of them lands.

use crate::synthetic::leased;
use ferry_common::proto::{
    ChunkBounds, ChunkRecord, ChunkState, JobRecord, JobState, KeyTuple, KeyValue,
};
use ferry_coordinator::election::campaign;
use ferry_coordinator::leader::connect_etcd;
use ferry_coordinator::store::{EtcdStore, MemoryStore, StateStore, StoreError, StoredChunk};
use ferry_tests::etcd::EtcdCluster;
use tokio_util::sync::CancellationToken;

/// Chunks planned: two etcd plan pages (1,000 chunks a page).
const PLANNED: u32 = 1_010;

fn job(id: &str, chunks: u32) -> JobRecord {
    JobRecord {
        job_id: id.into(),
        state: JobState::Running as i32,
        chunks_total: chunks,
        ..Default::default()
    }
}

/// Chunk `n` over keys `[lo, hi)`.
fn chunk(job: &str, n: u32, lo: i64, hi: i64) -> ChunkRecord {
    let v = |x: i64| Some(KeyTuple::of(vec![KeyValue::from_int(x)]));
    ChunkRecord {
        job_id: job.into(),
        chunk_no: n,
        bounds: Some(ChunkBounds::range(v(lo), v(hi))),
        state: ChunkState::Pending as i32,
        ..Default::default()
    }
}

async fn load(store: &dyn StateStore, id: &str) -> (JobRecord, Vec<StoredChunk>) {
    store
        .load()
        .await
        .expect("load")
        .jobs
        .into_iter()
        .find(|(j, _)| j.job_id == id)
        .expect("the job loads")
}

/// `count` new chunks from `from` over keys `[base, base + count)`, one key each.
fn pieces(id: &str, from: u32, count: u32, base: i64) -> Vec<ChunkRecord> {
    (0..count)
        .map(|i| {
            let k = base + i64::from(i);
            chunk(id, from + i, k, k + 1)
        })
        .collect()
}

async fn replaces_the_tail_atomically(store: &dyn StateStore) {
    let id = "resplit";
    store.create_job(&job(id, PLANNED)).await.expect("create");
    let plan: Vec<ChunkRecord> = (1..=PLANNED)
        .map(|n| chunk(id, n, i64::from(n) * 100, i64::from(n + 1) * 100))
        .collect();
    let versions = store.put_chunks(&plan).await.expect("plan");
    store.register_worker("w1", 30_000).await.expect("register");
    store
        .lease_chunk(&leased(plan[989].clone(), "w1"), versions[989])
        .await
        .expect("lease chunk 990");

    // a tail that holds a leased chunk is refused, and nothing changes
    let tail: Vec<u64> = versions[985..].to_vec();
    let err = store
        .replace_unleased(&job(id, 990), 986, &tail, &pieces(id, 986, 5, 1))
        .await
        .expect_err("chunk 990 was leased");
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(load(store, id).await.1.len(), PLANNED as usize);

    // 995..=1010 (16 chunks, across both pages) become 4: the second page goes
    let from = 995;
    let new = pieces(id, from, 4, 99_500);
    let got = store
        .replace_unleased(&job(id, 998), from, &versions[994..], &new)
        .await
        .expect("re-split");
    assert_eq!(got.len(), 4);
    let (record, chunks) = load(store, id).await;
    assert_eq!(record.chunks_total, 998);
    assert_eq!(chunks.len(), 998);
    for (i, c) in chunks.iter().enumerate() {
        let n = i as u32 + 1;
        assert_eq!(c.record.chunk_no, n);
        let want = if n < from {
            &plan[i]
        } else {
            &new[(n - from) as usize]
        };
        assert_eq!(c.record.bounds, want.bounds, "chunk {n}");
    }
    assert_eq!(chunks[989].record.state, ChunkState::Leased as i32);
    assert_eq!(chunks[995].record.state, ChunkState::Pending as i32);
    assert_eq!(chunks[995].record.attempt, 0);

    // a lease computed against the old plan cannot land on a new chunk
    let stale = store
        .lease_chunk(&leased(plan[995].clone(), "w1"), versions[995])
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");

    // a re-split of a re-split, racing a lease of its first chunk: one lands
    let expected: Vec<u64> = chunks[996..].iter().map(|c| c.version).collect();
    let lease = leased(chunks[996].record.clone(), "w1");
    let again = pieces(id, 997, 6, 99_502);
    let grown = job(id, 1_002);
    let (leased_997, replaced) = tokio::join!(
        store.lease_chunk(&lease, expected[0]),
        store.replace_unleased(&grown, 997, &expected, &again),
    );
    let (record, chunks) = load(store, id).await;
    match (leased_997, replaced) {
        (Ok(_), Err(StoreError::Conflict(_))) => {
            assert_eq!(chunks.len(), 998);
            assert_eq!(record.chunks_total, 998);
            assert_eq!(chunks[996].record.state, ChunkState::Leased as i32);
        }
        (Err(StoreError::Conflict(_)), Ok(_)) => {
            assert_eq!(chunks.len(), 1_002);
            assert_eq!(record.chunks_total, 1_002);
            assert_eq!(chunks[996].record.state, ChunkState::Pending as i32);
            assert_eq!(chunks[1_001].record.bounds, again[5].bounds);
        }
        other => panic!("exactly one of a lease and a re-split must land: {other:?}"),
    }
}

#[tokio::test]
async fn memory_store_replaces_the_tail_atomically() {
    replaces_the_tail_atomically(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_replaces_the_tail_atomically() {
    let etcd = EtcdCluster::start(1);
    let client = connect_etcd(&etcd.endpoints()).await.expect("connect etcd");
    let stop = CancellationToken::new();
    let lead = campaign(&client, "/resplit", "test", &stop, |_| {})
        .await
        .expect("campaign")
        .expect("won");
    let store = EtcdStore::new(client, "/resplit", Some(lead.fence.clone()));
    replaces_the_tail_atomically(&store).await;
}

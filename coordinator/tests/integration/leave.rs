//! A worker that leaves (its drain is over) with a chunk still leased to it
//! never received that lease (the response was lost in a takeover or with a
//! dropped call): the chunk is leased again at once, without counting a
//! retry, not when its lease runs out. On MemoryStore and on a real etcd.

use std::sync::Arc;

use crate::synthetic;

use ferry_common::proto::{ChunkState, JobSpec};
use ferry_coordinator::planner::Plan;
use ferry_coordinator::scheduler::Scheduler;
use ferry_coordinator::store::{MemoryStore, StateStore};
use ferry_tests::etcd::EtcdCluster;

fn spec() -> JobSpec {
    JobSpec {
        max_workers: Some(2),
        adaptive_concurrency: Some(false),
        ..synthetic::spec()
    }
}

async fn register(s: &Arc<Scheduler>, id: &str) -> String {
    synthetic::register(s, id, 2).await
}

async fn a_lease_never_received_comes_back_when_its_worker_leaves(store: Arc<dyn StateStore>) {
    let s = Scheduler::new(Arc::clone(&store), synthetic::config());
    let job = s
        .submit_planned("leave".into(), spec(), Plan::synthetic(3))
        .await
        .expect("submit");
    let gone = register(&s, "w-gone").await;
    let stays = register(&s, "w-stays").await;

    // w-gone is leased two chunks whose response it never gets
    let lost = s.acquire(&gone, 2).await.expect("acquire");
    assert_eq!(lost.len(), 2);
    assert!(
        s.lease_next(&stays, 1).await.is_empty(),
        "max_workers 2: nothing more while both are leased"
    );

    s.leave(&gone).await.expect("leave");

    // both are leased again at once, to the worker that stays
    let again = s.lease_next(&stays, 2).await;
    let mut got: Vec<u32> = again
        .iter()
        .map(|a| a.chunk.as_ref().expect("chunk ref").chunk_no)
        .collect();
    let mut want: Vec<u32> = lost
        .iter()
        .map(|a| a.chunk.as_ref().expect("chunk ref").chunk_no)
        .collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "the chunks the leaving worker never received");
    for a in &again {
        let c = a.chunk.as_ref().expect("chunk ref");
        assert_eq!(a.attempt, 2, "chunk {} is a second attempt", c.chunk_no);
    }
    let summary = s.job_summary(&job).await.expect("job");
    assert_eq!(summary.retries, 0, "a lost lease is not a retry");

    let chunks = synthetic::stored_chunks(store.as_ref(), &job).await;
    for n in &want {
        let stored = &chunks[*n as usize - 1];
        assert_eq!(stored.record.state, ChunkState::Leased as i32);
        assert_eq!(stored.record.worker_id, stays, "chunk {n}");
    }
    assert!(
        s.leave(&gone).await.is_err(),
        "a second leave is refused: the session ended"
    );
}

#[tokio::test]
async fn memory_store_a_lost_lease_comes_back_when_its_worker_leaves() {
    a_lease_never_received_comes_back_when_its_worker_leaves(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_a_lost_lease_comes_back_when_its_worker_leaves() {
    let etcd = EtcdCluster::start(1);
    let (store, _lead) = synthetic::leading_store(&etcd, "/leave").await;
    a_lease_never_received_comes_back_when_its_worker_leaves(Arc::new(store)).await;
}

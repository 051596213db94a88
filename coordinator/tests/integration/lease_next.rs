//! CompleteChunk's `want_next`: the next chunk leased with a completion is a
//! lease like AcquireChunk's (a fresh, current fencing token recorded in the
//! store), on both scheduler paths: MemoryStore keeps the state lock across
//! its writes, EtcdStore (on a real etcd member) releases it meanwhile.

use std::sync::Arc;

use crate::synthetic;

use ferry_common::proto::{ChunkRef, ChunkState, HeldChunk, JobSpec, JobState};
use ferry_coordinator::error::CoordinatorError;
use ferry_coordinator::planner::Plan;
use ferry_coordinator::scheduler::Scheduler;
use ferry_coordinator::store::{MemoryStore, StateStore};
use ferry_tests::etcd::EtcdCluster;

fn spec() -> JobSpec {
    JobSpec {
        max_workers: Some(1), // the completing chunk must free its place for the next
        ..synthetic::spec()
    }
}

/// Whether the scheduler tells `worker` to abort `chunk` (its token is not current).
async fn disowned(s: &Arc<Scheduler>, worker: &str, chunk: &ChunkRef) -> bool {
    let held = vec![HeldChunk {
        chunk: Some(chunk.clone()),
        rows_so_far: 0,
    }];
    let abort = s.heartbeat(worker, held, true).await.expect("heartbeat");
    !abort.is_empty()
}

async fn next_chunk_is_a_real_lease(store: Arc<dyn StateStore>) {
    let s = Scheduler::new(Arc::clone(&store), synthetic::config());
    let job = s
        .submit_planned("lease-next".into(), spec(), Plan::synthetic(3))
        .await
        .expect("submit");
    let w = synthetic::register(&s, "w1", 1).await;

    let first = s.acquire(&w, 1).await.expect("acquire");
    assert_eq!(first.len(), 1);
    let a = first[0].chunk.clone().expect("chunk ref");

    // a stale report is refused (the API then leases nothing)
    let mut stale = a.clone();
    stale.fencing_token += 1000;
    let r = s.complete(&w, stale, 0, 0, false, 1).await;
    assert!(
        matches!(r, Err(CoordinatorError::StaleToken { .. })),
        "a report with a stale token must be refused: {r:?}"
    );

    // the completion itself leases the next chunk (want_next = 1)
    let next = s
        .complete(&w, a.clone(), 0, 0, false, 1)
        .await
        .expect("complete");
    assert_eq!(
        next.len(),
        1,
        "one ready chunk is leased with the completion"
    );
    let b = next[0].chunk.clone().expect("chunk ref");
    assert_ne!(b.chunk_no, a.chunk_no);
    assert_eq!(next[0].attempt, 1);
    assert!(
        b.fencing_token > a.fencing_token,
        "the next lease's token {} must be newer than {}",
        b.fencing_token,
        a.fencing_token
    );
    assert!(
        !disowned(&s, &w, &b).await,
        "the scheduler holds the next lease under the token it returned"
    );
    let mut wrong = b.clone();
    wrong.fencing_token += 1;
    assert!(disowned(&s, &w, &wrong).await);

    // the token is the chunk's version in the store, as for AcquireChunk
    let chunks = synthetic::stored_chunks(store.as_ref(), &job).await;
    let stored = &chunks[b.chunk_no as usize - 1];
    assert_eq!(stored.record.state, ChunkState::Leased as i32);
    assert_eq!(stored.version, b.fencing_token);
    assert_eq!(stored.record.worker_id, w);

    // or a completion without want_next, then lease_next
    let none = s.complete(&w, b, 0, 0, false, 0).await.expect("complete");
    assert!(none.is_empty(), "no next chunk unless asked for");
    let c = s.lease_next(&w, 1).await;
    assert_eq!(c.len(), 1);
    let last = s
        .complete(&w, c[0].chunk.clone().expect("chunk ref"), 0, 0, false, 1)
        .await
        .expect("complete");
    assert!(
        last.is_empty(),
        "nothing is left to lease with the last completion"
    );
    assert!(
        s.lease_next(&w, 1).await.is_empty(),
        "nothing is left to lease"
    );
    assert!(
        s.lease_next("nobody", 1).await.is_empty(),
        "an unknown worker gets nothing"
    );
    let done = s.job_summary(&job).await.expect("job");
    assert_eq!(done.state, JobState::Succeeded as i32);
    assert_eq!(done.chunks_succeeded, 3);
}

#[tokio::test]
async fn memory_store_next_chunk_is_a_real_lease() {
    next_chunk_is_a_real_lease(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_next_chunk_is_a_real_lease() {
    let etcd = EtcdCluster::start(1);
    let (store, _lead) = synthetic::leading_store(&etcd, "/lease-next").await;
    next_chunk_is_a_real_lease(Arc::new(store)).await;
}

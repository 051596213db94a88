//! A coordinator told etcd takes more operations per transaction than the
//! server does (`FERRY_ETCD_MAX_TXN_OPS` above etcd's `--max-txn-ops`):
//! the oversized group-commit transactions are refused as a whole, their
//! writes go one by one, and every lease still lands exactly once (a
//! deposed leader's writes would fail instead).

use crate::synthetic;

use std::collections::HashSet;
use std::sync::Arc;

use ferry_common::plan::WORKER_PROTOCOL;
use ferry_common::proto::ChunkState;
use ferry_coordinator::planner::Plan;
use ferry_coordinator::scheduler::Scheduler;
use ferry_coordinator::store::StateStore;
use ferry_tests::etcd::EtcdCluster;

const WORKERS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_land_when_etcd_refuses_a_transaction_too_big() {
    let etcd = EtcdCluster::start(1);
    // etcd runs with its default 128; the store is told 1,024 (508 writes a batch)
    let (store, _lead) = synthetic::leading_store_sized(&etcd, "/txnlimit", 1024).await;
    let store: Arc<dyn StateStore> = Arc::new(store);
    let s = Scheduler::new(Arc::clone(&store), synthetic::config());
    let spec = ferry_common::proto::JobSpec {
        max_workers: Some(WORKERS as u32),
        adaptive_concurrency: Some(false),
        ..synthetic::spec()
    };
    let job = s
        .submit_planned(String::new(), spec, Plan::synthetic(WORKERS as u32 * 2))
        .await
        .expect("submit");

    let mut workers = Vec::new();
    for i in 0..WORKERS {
        let w = s
            .register_worker(format!("w{i}"), "test".into(), 1, WORKER_PROTOCOL)
            .await
            .expect("register")
            .worker_id;
        workers.push(w);
    }
    // every worker asks at once: their lease writes reach the committer together
    let asks = workers.iter().map(|w| {
        let s = Arc::clone(&s);
        let w = w.clone();
        tokio::spawn(async move { s.acquire(&w, 1).await })
    });
    let mut leased = HashSet::new();
    for a in futures::future::join_all(asks).await {
        let got = a.expect("task").expect("acquire");
        assert_eq!(got.len(), 1, "each worker gets one chunk");
        assert!(leased.insert(got[0].chunk.clone().expect("chunk").chunk_no));
    }
    assert_eq!(leased.len(), WORKERS, "no chunk leased twice");

    let stored = synthetic::stored_chunks(store.as_ref(), &job).await;
    let in_etcd = stored
        .iter()
        .filter(|c| c.record.state == ChunkState::Leased as i32)
        .count();
    assert_eq!(in_etcd, WORKERS, "every lease written to etcd");
}

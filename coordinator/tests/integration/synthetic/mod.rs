//! What the scheduler tests over synthetic plans share: a configuration
//! whose connections are never opened, and the job spec such plans run.
#![allow(dead_code)] // not every helper is used by every test

use ferry_common::config::JobDefaults;
use ferry_common::connections::ConnectionRegistry;
use ferry_common::ledger::DEFAULT_LEDGER_SCHEMA;
use ferry_common::proto::JobSpec;
use ferry_common::timing::Timings;
use ferry_coordinator::scheduler::SchedulerConfig;

/// A scheduler configuration with `timings`, naming a source and a target
/// that a synthetic plan never connects to.
pub fn config_with(timings: Timings) -> SchedulerConfig {
    SchedulerConfig {
        defaults: JobDefaults::default(),
        connections: ConnectionRegistry::from_pairs([
            (
                "source".to_string(),
                "postgres://t@127.0.0.1:1/src".to_string(),
            ),
            (
                "target".to_string(),
                "postgres://t@127.0.0.1:1/dst".to_string(),
            ),
        ]),
        timings,
        ledger_schema: DEFAULT_LEDGER_SCHEMA.to_string(),
        lifecycle: Default::default(),
    }
}

/// [`config_with`] the default timings.
pub fn config() -> SchedulerConfig {
    config_with(Timings::default())
}

/// The spec of a synthetic job (its plan comes from `Plan::synthetic`).
pub fn spec() -> JobSpec {
    JobSpec {
        source: "source".into(),
        target: "target".into(),
        query: "SELECT id FROM synthetic".into(),
        table: "public.synthetic".into(),
        ..Default::default()
    }
}

/// An EtcdStore under `prefix` on `etcd`, written as the leader it just
/// elected (the leadership lives as long as the returned value).
pub async fn leading_store(
    etcd: &ferry_tests::etcd::EtcdCluster,
    prefix: &str,
) -> (
    ferry_coordinator::store::EtcdStore,
    ferry_coordinator::election::Leadership,
) {
    leading_store_sized(etcd, prefix, ferry_coordinator::store::DEFAULT_MAX_TXN_OPS).await
}

/// [`leading_store`] told that etcd takes `max_txn_ops` operations per
/// transaction.
pub async fn leading_store_sized(
    etcd: &ferry_tests::etcd::EtcdCluster,
    prefix: &str,
    max_txn_ops: usize,
) -> (
    ferry_coordinator::store::EtcdStore,
    ferry_coordinator::election::Leadership,
) {
    let client = ferry_coordinator::leader::connect_etcd(&etcd.endpoints())
        .await
        .expect("connect etcd");
    let stop = tokio_util::sync::CancellationToken::new();
    let lead = ferry_coordinator::election::campaign(&client, prefix, "test", &stop, |_| {})
        .await
        .expect("campaign")
        .expect("won");
    let store = ferry_coordinator::store::EtcdStore::with_max_txn_ops(
        client,
        prefix,
        Some(lead.fence.clone()),
        max_txn_ops,
    );
    (store, lead)
}

/// The chunks `store` holds for `job`, in chunk order.
pub async fn stored_chunks(
    store: &dyn ferry_coordinator::store::StateStore,
    job: &str,
) -> Vec<ferry_coordinator::store::StoredChunk> {
    let snap = store.load().await.expect("load");
    snap.jobs
        .into_iter()
        .find(|(j, _)| j.job_id == job)
        .map(|(_, chunks)| chunks)
        .expect("job stored")
}

/// Registers worker `id` with `concurrency` slots (an empty id: the scheduler
/// names it); the id it was registered under.
pub async fn register(
    s: &ferry_coordinator::scheduler::Scheduler,
    id: &str,
    concurrency: u32,
) -> String {
    s.register_worker(
        id.into(),
        "test".into(),
        concurrency,
        ferry_common::plan::WORKER_PROTOCOL,
    )
    .await
    .expect("register")
    .worker_id
}

/// `c` as the store holds it once `worker` leased it.
pub fn leased(
    mut c: ferry_common::proto::ChunkRecord,
    worker: &str,
) -> ferry_common::proto::ChunkRecord {
    c.state = ferry_common::proto::ChunkState::Leased as i32;
    c.attempt += 1;
    c.worker_id = worker.into();
    c
}

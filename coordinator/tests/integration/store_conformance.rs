//! One conformance suite, the same test functions, run against `MemoryStore`
//! and against `EtcdStore` on a real etcd member.

use crate::synthetic::leased;
use std::time::Duration;

use ferry_common::proto::{
    ChunkBounds, ChunkRecord, ChunkState, JobRecord, JobState, KeyTuple, KeyValue,
};
use ferry_coordinator::election::campaign;
use ferry_coordinator::leader::connect_etcd;
use ferry_coordinator::store::{
    EtcdStore, LeaderFence, MemoryStore, Snapshot, StateStore, StoreError, StoredChunk,
};
use ferry_tests::etcd::EtcdCluster;
use tokio_util::sync::CancellationToken;

fn job(id: &str, request: &str) -> JobRecord {
    JobRecord {
        job_id: id.into(),
        request_id: request.into(),
        state: JobState::Running as i32,
        chunks_total: 3,
        ..Default::default()
    }
}

fn chunk(job: &str, n: u32) -> ChunkRecord {
    ChunkRecord {
        job_id: job.into(),
        chunk_no: n,
        bounds: Some(ferry_common::proto::ChunkBounds::all()),
        state: ChunkState::Pending as i32,
        ..Default::default()
    }
}

/// The same request id gives the same job; another gives a new one.
async fn idempotent_submit(store: &dyn StateStore) {
    let (a, created) = store.create_job(&job("j1", "req-1")).await.expect("create");
    assert!(created);
    let (b, created) = store
        .create_job(&job("j2", "req-1"))
        .await
        .expect("create again");
    assert!(!created, "the same request id must not create a second job");
    assert_eq!(a.job_id, b.job_id);
    let (c, created) = store
        .create_job(&job("j3", ""))
        .await
        .expect("create without request id");
    assert!(created);
    assert_eq!(c.job_id, "j3");
}

/// Leases compare versions; the lease's version is the fencing token; stale writes fail.
async fn leases_are_fenced(store: &dyn StateStore) {
    store.create_job(&job("jl", "")).await.expect("job");
    let versions = store
        .put_chunks(&[chunk("jl", 1), chunk("jl", 2)])
        .await
        .expect("chunks");
    assert_eq!(versions.len(), 2);
    let v0 = versions[0];
    store.register_worker("w1", 10_000).await.expect("register");

    let token = store
        .lease_chunk(&leased(chunk("jl", 1), "w1"), v0)
        .await
        .expect("lease");
    assert!(
        token > v0,
        "the fencing token {token} must exceed the version {v0} it replaced"
    );

    let again = store.lease_chunk(&leased(chunk("jl", 1), "w1"), v0).await;
    assert!(
        matches!(again, Err(StoreError::Conflict(_))),
        "a second lease on a stale version must conflict: {again:?}"
    );

    let mut done = leased(chunk("jl", 1), "w1");
    done.state = ChunkState::Succeeded as i32;
    let stale = store.update_chunk(&done, v0).await;
    assert!(
        matches!(stale, Err(StoreError::Conflict(_))),
        "an update with a stale token must conflict: {stale:?}"
    );
    let v2 = store
        .update_chunk(&done, token)
        .await
        .expect("update with the current token");
    assert!(v2 > token);

    let nobody = store
        .lease_chunk(&leased(chunk("jl", 2), "ghost"), versions[1])
        .await;
    assert!(
        matches!(nobody, Err(StoreError::Conflict(_))),
        "a worker without a lease cannot lease: {nobody:?}"
    );
}

/// A snapshot holds jobs, chunks with their versions, live assignments and
/// workers; a removed worker is unknown at once, and its assignments are gone
/// once its chunks are written again (as the scheduler does before removing it).
async fn snapshot_round_trip(store: &dyn StateStore) {
    store.create_job(&job("js", "")).await.expect("job");
    let versions = store
        .put_chunks(&[chunk("js", 1), chunk("js", 2), chunk("js", 3)])
        .await
        .expect("chunks");
    store.register_worker("w2", 10_000).await.expect("register");
    let token = store
        .lease_chunk(&leased(chunk("js", 2), "w2"), versions[1])
        .await
        .expect("lease");
    assert!(store.keepalive_worker("w2").await.expect("keepalive"));

    let snap = store.load().await.expect("load");
    let (j, chunks) = snap
        .jobs
        .iter()
        .find(|(j, _)| j.job_id == "js")
        .expect("job in snapshot");
    assert_eq!(j.chunks_total, 3);
    assert_eq!(
        chunks.iter().map(|c| c.record.chunk_no).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let c2 = &chunks[1];
    assert_eq!(c2.record.state, ChunkState::Leased as i32);
    assert_eq!(
        c2.version, token,
        "a leased chunk's version is its fencing token"
    );
    assert!(snap.live_assignments.contains(&("js".to_string(), 2)));
    assert!(snap.workers.contains(&"w2".to_string()));

    let mut requeued = leased(chunk("js", 2), "w2");
    requeued.state = ChunkState::Pending as i32;
    store
        .update_chunk(&requeued, token)
        .await
        .expect("requeue the chunk");
    store.remove_worker("w2").await.expect("remove");
    assert!(!store
        .keepalive_worker("w2")
        .await
        .expect("keepalive after removal"));
    let snap = store.load().await.expect("load after removal");
    assert!(
        !snap.workers.contains(&"w2".to_string()),
        "a removed worker's registration is gone"
    );
    assert!(
        !snap.live_assignments.contains(&("js".to_string(), 2)),
        "a requeued chunk's assignment is gone"
    );
}

/// Chunk writes made at once (which `EtcdStore` sends as one transaction)
/// each get their own answer: a stale one conflicts alone, the others land,
/// and each chunk's stored version is the token its write returned.
async fn concurrent_chunk_writes(store: &dyn StateStore) {
    store.create_job(&job("jc", "")).await.expect("job");
    let chunks: Vec<ChunkRecord> = (1..=10).map(|n| chunk("jc", n)).collect();
    let versions = store.put_chunks(&chunks).await.expect("chunks");
    store.register_worker("w5", 10_000).await.expect("register");
    let leases: Vec<ChunkRecord> = chunks.iter().map(|c| leased(c.clone(), "w5")).collect();
    // chunk 1 twice against the same version: exactly one of the two may win
    let writes = leases
        .iter()
        .zip(&versions)
        .chain(std::iter::once((&leases[0], &versions[0])))
        .map(|(c, v)| store.lease_chunk(c, *v));
    let results = futures::future::join_all(writes).await;
    let first = [&results[0], &results[10]];
    assert_eq!(
        first.iter().filter(|r| r.is_ok()).count(),
        1,
        "exactly one of two leases on one version wins: {first:?}"
    );
    assert!(
        first
            .iter()
            .any(|r| matches!(r, Err(StoreError::Conflict(_)))),
        "the other conflicts: {first:?}"
    );
    for (i, r) in results[1..10].iter().enumerate() {
        assert!(r.is_ok(), "lease of chunk {} failed: {r:?}", i + 2);
    }
    let snap = store.load().await.expect("load");
    let (_, stored) = snap
        .jobs
        .iter()
        .find(|(j, _)| j.job_id == "jc")
        .expect("job in snapshot");
    for (i, r) in results.iter().take(10).enumerate() {
        let token = match (i, r) {
            (0, Err(_)) => *results[10].as_ref().expect("the other lease won"),
            (_, r) => *r.as_ref().expect("checked above"),
        };
        assert_eq!(
            stored[i].version,
            token,
            "chunk {}: the stored version is the token the write returned",
            i + 1
        );
        assert_eq!(stored[i].record.state, ChunkState::Leased as i32);
    }
}

/// Chunk `n` of a plan, with bounds of its own (`[n, n+1)`), so that a load
/// shows whether every chunk kept its own.
fn planned(job: &str, n: u32) -> ChunkRecord {
    let v = |x: u32| Some(KeyTuple::of(vec![KeyValue::from_int(i64::from(x))]));
    ChunkRecord {
        bounds: Some(ChunkBounds::range(v(n), v(n + 1))),
        ..chunk(job, n)
    }
}

fn loaded<'a>(snap: &'a Snapshot, job: &str) -> Option<&'a Vec<StoredChunk>> {
    snap.jobs
        .iter()
        .find(|(j, _)| j.job_id == job)
        .map(|(_, c)| c)
}

/// A plan of more chunks than one page or read holds comes back whole, each
/// chunk with its own bounds and its last write (across the read's ranges);
/// a plan stored again replaces the earlier one.
async fn large_plans_round_trip(store: &dyn StateStore) {
    const N: u32 = 2_345;
    let mut j = job("jp", "");
    j.chunks_total = N;
    store.create_job(&j).await.expect("job");
    // an earlier plan of the job, then the one that stands
    let earlier: Vec<ChunkRecord> = (1..=N + 10).map(|n| planned("jp", n)).collect();
    store.put_chunks(&earlier).await.expect("earlier plan");
    let plan: Vec<ChunkRecord> = (1..=N).map(|n| planned("jp", n)).collect();
    let versions = store.put_chunks(&plan).await.expect("plan");
    assert_eq!(versions.len(), N as usize);
    store.register_worker("w6", 10_000).await.expect("register");
    let mut tokens = Vec::new();
    for n in [1, 1_000, 1_001, 2_000, N] {
        let i = n as usize - 1;
        let t = store
            .lease_chunk(&leased(plan[i].clone(), "w6"), versions[i])
            .await
            .expect("lease");
        tokens.push((n, t));
    }
    let mut done = leased(plan[1].clone(), "w6");
    let t2 = store
        .lease_chunk(&done, versions[1])
        .await
        .expect("lease 2");
    done.state = ChunkState::Succeeded as i32;
    done.rows_written = 42;
    let v2 = store.update_chunk(&done, t2).await.expect("complete 2");

    let snap = store.load().await.expect("load");
    let chunks = loaded(&snap, "jp").expect("job in snapshot");
    assert_eq!(chunks.len(), N as usize, "the plan stored again stands");
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.record.chunk_no as usize, i + 1);
        assert_eq!(c.record.job_id, "jp");
        assert_eq!(c.record.bounds, plan[i].bounds, "chunk {} bounds", i + 1);
    }
    for (n, t) in tokens {
        let c = &chunks[n as usize - 1];
        assert_eq!(c.record.state, ChunkState::Leased as i32, "chunk {n}");
        assert_eq!(c.record.worker_id, "w6");
        assert_eq!(c.version, t, "chunk {n}: its version is its token");
    }
    let c2 = &chunks[1];
    assert_eq!(c2.record.state, ChunkState::Succeeded as i32);
    assert_eq!((c2.record.rows_written, c2.version), (42, v2));
    assert_eq!(chunks[2].record.state, ChunkState::Pending as i32);
    assert_eq!(chunks[2].record.attempt, 0);
}

/// Deleting a job removes its record, chunks, assignments and request key
/// (a new submit under the same request id creates a new job), and nothing
/// of another job.
async fn jobs_are_deleted_whole(store: &dyn StateStore) {
    let (gone, _) = store.create_job(&job("jd", "req-d")).await.expect("job");
    store.create_job(&job("jk", "req-k")).await.expect("job");
    let v = store
        .put_chunks(&[planned("jd", 1), planned("jd", 2), planned("jd", 3)])
        .await
        .expect("chunks");
    let kept = store.put_chunks(&[planned("jk", 1)]).await.expect("chunks");
    store.register_worker("w7", 10_000).await.expect("register");
    store
        .lease_chunk(&leased(planned("jd", 1), "w7"), v[0])
        .await
        .expect("lease");
    store
        .lease_chunk(&leased(planned("jk", 1), "w7"), kept[0])
        .await
        .expect("lease");
    let mut done = leased(planned("jd", 2), "w7");
    let t = store.lease_chunk(&done, v[1]).await.expect("lease");
    done.state = ChunkState::Succeeded as i32;
    store.update_chunk(&done, t).await.expect("complete");

    store.delete_job(&gone).await.expect("delete");
    let snap = store.load().await.expect("load");
    assert!(loaded(&snap, "jd").is_none(), "the deleted job is gone");
    assert!(
        !snap.live_assignments.iter().any(|(j, _)| j == "jd"),
        "its assignments are gone: {:?}",
        snap.live_assignments
    );
    assert_eq!(
        loaded(&snap, "jk").map(Vec::len),
        Some(1),
        "the other job stays"
    );
    assert!(snap.live_assignments.contains(&("jk".to_string(), 1)));
    let (again, created) = store
        .create_job(&job("jd2", "req-d"))
        .await
        .expect("submit again");
    assert!(created, "the deleted job's request id is free again");
    assert_eq!(again.job_id, "jd2");
}

/// A retired job leaves with its chunks and its request id; a job whose id
/// it prefixes stays.
async fn retired_jobs_are_deleted(store: &dyn StateStore) {
    let (retired, _) = store.create_job(&job("jr", "req-r")).await.expect("job");
    store.create_job(&job("jr2", "")).await.expect("job");
    store
        .put_chunks(&[chunk("jr", 1), chunk("jr", 2)])
        .await
        .expect("chunks");
    store.put_chunks(&[chunk("jr2", 1)]).await.expect("chunks");
    store.delete_job(&retired).await.expect("delete");
    let snap = store.load().await.expect("load");
    assert!(
        !snap.jobs.iter().any(|(j, _)| j.job_id == "jr"),
        "jr still stored"
    );
    let kept = snap.jobs.iter().find(|(j, _)| j.job_id == "jr2");
    assert_eq!(
        kept.map(|(_, c)| c.len()),
        Some(1),
        "jr2 and its chunk stay"
    );
    let (again, created) = store
        .create_job(&job("jr3", "req-r"))
        .await
        .expect("create with the retired request id");
    assert!(created, "the retired job's request id names a new job");
    assert_eq!(again.job_id, "jr3");
}

async fn run_suite(store: &dyn StateStore) {
    idempotent_submit(store).await;
    retired_jobs_are_deleted(store).await;
    leases_are_fenced(store).await;
    snapshot_round_trip(store).await;
    concurrent_chunk_writes(store).await;
    large_plans_round_trip(store).await;
    jobs_are_deleted_whole(store).await;
}

#[tokio::test]
async fn memory_store_conforms() {
    run_suite(&MemoryStore::new()).await;
}

async fn leader_store(etcd: &EtcdCluster, prefix: &str) -> (EtcdStore, LeaderFence) {
    let client = connect_etcd(&etcd.endpoints()).await.expect("connect etcd");
    let stop = CancellationToken::new();
    let lead = campaign(&client, prefix, "test", &stop, |_| {})
        .await
        .expect("campaign")
        .expect("won");
    (
        EtcdStore::new(client, prefix, Some(lead.fence.clone())),
        lead.fence,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_conforms() {
    let etcd = EtcdCluster::start(1);
    let (store, _) = leader_store(&etcd, "/conformance").await;
    run_suite(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_refuses_a_deposed_leader() {
    let etcd = EtcdCluster::start(1);
    let (_, fence) = leader_store(&etcd, "/deposed").await;
    let client = connect_etcd(&etcd.endpoints()).await.expect("connect etcd");
    let stale = LeaderFence {
        key: fence.key.clone(),
        create_revision: fence.create_revision - 1,
    };
    let store = EtcdStore::new(client, "/deposed", Some(stale));
    let r = store.create_job(&job("jx", "")).await;
    assert!(
        matches!(r, Err(StoreError::NotLeader)),
        "a write under a stale election key must fail: {r:?}"
    );
}

/// Registrations and assignments are plain keys: they need no heartbeat
/// and no renewal (liveness is the leader's, in memory), and etcd holds no
/// lease but the election's; a removed worker's key goes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_registrations_are_kept_without_leases() {
    let etcd = EtcdCluster::start(1);
    let (store, _) = leader_store(&etcd, "/plain").await;
    store.create_job(&job("je", "")).await.expect("job");
    let v = store.put_chunks(&[chunk("je", 1)]).await.expect("chunks");
    store.register_worker("w3", 2_000).await.expect("register");
    store.register_worker("w4", 2_000).await.expect("register");
    store
        .lease_chunk(&leased(chunk("je", 1), "w3"), v[0])
        .await
        .expect("lease");
    let client = connect_etcd(&etcd.endpoints()).await.expect("connect etcd");
    let leases = client.clone().leases().await.expect("list leases");
    assert_eq!(
        leases.leases().len(),
        1,
        "only the election holds a lease, not the workers"
    );
    // the leader's store goes; what it stored stays for the next leader
    drop(store);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let next = EtcdStore::new(client.clone(), "/plain", None);
    let snap = next.load().await.expect("load");
    assert!(snap.live_assignments.contains(&("je".to_string(), 1)));
    assert!(snap.workers.contains(&"w3".to_string()));
    assert!(snap.workers.contains(&"w4".to_string()));
    assert_eq!(next.renew_workers().await.expect("renew"), 2);
    assert!(next.keepalive_worker("w4").await.expect("keepalive"));
    next.remove_worker("w4").await.expect("remove");
    assert!(!next.keepalive_worker("w4").await.expect("keepalive"));
    let snap = EtcdStore::new(client, "/plain", None)
        .load()
        .await
        .expect("load");
    assert_eq!(snap.workers, vec!["w3".to_string()]);
}

/// Puts `workers/<id>` under a fresh lease of `ttl_s`, as a coordinator of
/// an earlier version registered workers; returns the lease.
async fn register_as_before(
    client: &etcd_client::Client,
    prefix: &str,
    id: &str,
    ttl_s: i64,
) -> i64 {
    let mut c = client.clone();
    let lease = c.lease_grant(ttl_s, None).await.expect("grant").id();
    c.put(
        format!("{prefix}/workers/{id}"),
        lease.to_string(),
        Some(etcd_client::PutOptions::new().with_lease(lease)),
    )
    .await
    .expect("put");
    lease
}

/// A new leader renews the leases of workers an earlier version registered
/// (each under its own lease) for as long as it keeps them, and drops those
/// whose lease etcd no longer has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_a_new_leader_renews_earlier_versions_leases() {
    let etcd = EtcdCluster::start(1);
    let client = connect_etcd(&etcd.endpoints()).await.expect("connect etcd");
    register_as_before(&client, "/adopt", "old1", 2).await;
    let revoked = register_as_before(&client, "/adopt", "old2", 2).await;
    let store = EtcdStore::new(client.clone(), "/adopt", None);
    let snap = store.load().await.expect("load");
    assert_eq!(snap.workers.len(), 2);
    assert_eq!(store.renew_workers().await.expect("renew"), 2);
    // past two TTLs: the store's own task kept both alive
    tokio::time::sleep(Duration::from_secs(5)).await;
    let reader = EtcdStore::new(client.clone(), "/adopt", None);
    assert_eq!(reader.load().await.expect("load").workers.len(), 2);
    drop(reader);
    client.clone().lease_revoke(revoked).await.expect("revoke");
    assert_eq!(store.renew_workers().await.expect("renew"), 1);
    assert!(store.keepalive_worker("old1").await.expect("keepalive"));
    assert!(!store.keepalive_worker("old2").await.expect("keepalive"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_batch_survives_a_lease_that_expired() {
    let etcd = EtcdCluster::start(1);
    let (store, _) = leader_store(&etcd, "/batch").await;
    store.create_job(&job("jb", "")).await.expect("job");
    let chunks: Vec<ChunkRecord> = (1..=6).map(|n| chunk("jb", n)).collect();
    let v = store.put_chunks(&chunks).await.expect("chunks");
    // "gone" was registered by an earlier version, under its own lease
    let client = connect_etcd(&etcd.endpoints()).await.expect("connect etcd");
    let lease = register_as_before(&client, "/batch", "gone", 60).await;
    let adopted = store.load().await.expect("load");
    assert!(adopted.workers.contains(&"gone".to_string()));
    store
        .register_worker("live", 60_000)
        .await
        .expect("register");
    // the lease goes behind the store's back, before its next renewal (20 s)
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.clone().lease_revoke(lease).await.expect("revoke");
    // one write under the dead lease among live ones: only it fails
    let store = &store;
    let writes = chunks.iter().zip(&v).enumerate().map(|(i, (c, v))| {
        let worker = if i == 0 { "gone" } else { "live" };
        let rec = leased(c.clone(), worker);
        async move { store.lease_chunk(&rec, *v).await }
    });
    let results = futures::future::join_all(writes).await;
    assert!(
        results[0].is_err(),
        "a lease under an expired worker lease must fail: {:?}",
        results[0]
    );
    for (i, r) in results[1..].iter().enumerate() {
        assert!(r.is_ok(), "lease of chunk {} failed: {r:?}", i + 2);
    }
}

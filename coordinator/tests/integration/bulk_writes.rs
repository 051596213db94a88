//! Cancel and resume of a 20,000-chunk job on a real etcd while three
//! workers heartbeat under a 3 s lease: the scheduler must not hold its lock
//! across one etcd write per chunk, or heartbeats stall past the lease and
//! the workers fence themselves. Every chunk ends in the state asked for.

use crate::synthetic;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_common::plan::WORKER_PROTOCOL;
use ferry_common::proto::{ChunkState, HeldChunk, JobSpec, JobState};
use ferry_common::timing::Timings;
use ferry_coordinator::election::campaign;
use ferry_coordinator::leader::connect_etcd;
use ferry_coordinator::planner::Plan;
use ferry_coordinator::scheduler::Scheduler;
use ferry_coordinator::store::{EtcdStore, StateStore};
use ferry_tests::etcd::EtcdCluster;
use tokio_util::sync::CancellationToken;

const CHUNKS: u32 = 20_000;
const LEASE: Duration = Duration::from_secs(3);

fn spec() -> JobSpec {
    JobSpec {
        max_workers: Some(3),
        // three chunks leased at once, not what adaptive concurrency starts at
        adaptive_concurrency: Some(false),
        ..synthetic::spec()
    }
}

/// Heartbeats like a worker (every third of the lease, listing what it
/// holds) and records the slowest answer.
fn heartbeat(
    s: Arc<Scheduler>,
    worker: String,
    held: Vec<HeldChunk>,
    slowest_ms: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.is_cancelled() {
            let sent = Instant::now();
            if s.heartbeat(&worker, held.clone(), false).await.is_err() {
                failed.store(true, Ordering::SeqCst);
            }
            slowest_ms.fetch_max(sent.elapsed().as_millis() as u64, Ordering::SeqCst);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(LEASE / 3) => {}
            }
        }
    })
}

async fn count(s: &Arc<Scheduler>, job: &str, state: ChunkState) -> usize {
    let j = s.get_job(job).await.expect("job");
    j.chunks.iter().filter(|c| c.state == state as i32).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_resume_of_20000_chunks_do_not_stall_heartbeats() {
    let etcd = EtcdCluster::start(1);
    let client = connect_etcd(&etcd.endpoints()).await.expect("connect etcd");
    let stop = CancellationToken::new();
    let lead = campaign(&client, "/bulk", "test", &stop, |_| {})
        .await
        .expect("campaign")
        .expect("won");
    let store: Arc<dyn StateStore> =
        Arc::new(EtcdStore::new(client, "/bulk", Some(lead.fence.clone())));
    let s = Scheduler::new(
        Arc::clone(&store),
        synthetic::config_with(Timings::new(LEASE).expect("a 3 s lease is valid")),
    );
    let job = s
        .submit_planned(String::new(), spec(), Plan::synthetic(CHUNKS))
        .await
        .expect("submit");

    let slowest = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let beats = CancellationToken::new();
    let mut tasks = Vec::new();
    for i in 0..3 {
        let w = s
            .register_worker(format!("w{i}"), "test".into(), 1, WORKER_PROTOCOL)
            .await
            .expect("register")
            .worker_id;
        let leased = s.acquire(&w, 1).await.expect("acquire");
        let held = leased
            .iter()
            .map(|a| HeldChunk {
                chunk: a.chunk.clone(),
                rows_so_far: 0,
            })
            .collect();
        tasks.push(heartbeat(
            Arc::clone(&s),
            w,
            held,
            Arc::clone(&slowest),
            Arc::clone(&failed),
            beats.clone(),
        ));
    }
    tokio::time::sleep(LEASE).await;

    let started = Instant::now();
    let cancelled = s.cancel(&job).await.expect("cancel");
    let cancel_took = started.elapsed();
    assert_eq!(cancelled.state, JobState::Cancelled as i32);
    assert_eq!(
        count(&s, &job, ChunkState::Cancelled).await,
        CHUNKS as usize - 3,
        "every waiting chunk is cancelled"
    );
    assert_eq!(count(&s, &job, ChunkState::Pending).await, 0);

    // resume runs every chunk that did not land again, also in bulk
    tokio::time::sleep(LEASE / 2).await;
    let started = Instant::now();
    let resumed = s.resume(&job).await.expect("resume");
    let resume_took = started.elapsed();
    assert_eq!(resumed.state, JobState::Running as i32);
    let pending = count(&s, &job, ChunkState::Pending).await;
    assert!(
        pending >= CHUNKS as usize - 3,
        "resumed chunks are pending again: {pending}"
    );
    tokio::time::sleep(LEASE).await;
    beats.cancel();
    for t in tasks {
        t.await.expect("heartbeat task");
    }
    let slowest = Duration::from_millis(slowest.load(Ordering::SeqCst));
    println!(
        "cancel of {CHUNKS} chunks took {cancel_took:?}, resume {resume_took:?}; slowest heartbeat {slowest:?} (lease {LEASE:?})"
    );
    assert!(
        !failed.load(Ordering::SeqCst),
        "a heartbeat was refused: a worker lost its registration"
    );
    assert!(
        slowest < LEASE,
        "a heartbeat took {slowest:?}, longer than the {LEASE:?} lease: that worker would have fenced itself"
    );
    // the store agrees with memory
    let chunks = synthetic::stored_chunks(store.as_ref(), &job).await;
    let stored_pending = chunks
        .iter()
        .filter(|c| c.record.state == ChunkState::Pending as i32)
        .count();
    assert_eq!(stored_pending, pending, "etcd holds the resumed states");
    stop.cancel();
}

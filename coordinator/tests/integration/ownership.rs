//! Who may report on a chunk: only the worker that holds its lease, under the
//! lease's fencing token. A report from another worker, from an empty or
//! unknown worker id, or with a stale token is refused and changes nothing;
//! a worker speaking an older protocol cannot register.

use crate::synthetic;

use std::sync::Arc;

use ferry_common::errors::ErrorClass;
use ferry_common::plan::WORKER_PROTOCOL;
use ferry_common::proto::{ChunkRef, ChunkState, HeldChunk, JobState};
use ferry_coordinator::error::CoordinatorError;
use ferry_coordinator::planner::Plan;
use ferry_coordinator::scheduler::Scheduler;
use ferry_coordinator::store::MemoryStore;

async fn chunk_state(s: &Arc<Scheduler>, job: &str, n: u32) -> (ChunkState, u32) {
    let j = s.get_job(job).await.expect("job");
    let c = &j.chunks[n as usize - 1];
    (
        ChunkState::try_from(c.state).unwrap_or(ChunkState::Unspecified),
        c.attempt,
    )
}

fn refused(r: &Result<impl std::fmt::Debug, CoordinatorError>) -> bool {
    matches!(
        r,
        Err(CoordinatorError::StaleToken { .. }) | Err(CoordinatorError::UnknownWorker(_))
    )
}

#[tokio::test]
async fn only_the_holder_reports_on_a_chunk() {
    let s = Scheduler::new(Arc::new(MemoryStore::new()), synthetic::config());
    let job = s
        .submit_planned(String::new(), synthetic::spec(), Plan::synthetic(2))
        .await
        .expect("submit");
    let register = |id: &str| {
        let s = Arc::clone(&s);
        let id = id.to_string();
        async move {
            s.register_worker(id, "test".into(), 1, WORKER_PROTOCOL)
                .await
                .expect("register")
                .worker_id
        }
    };
    let holder = register("w-holder").await;
    let other = register("w-other").await;
    let leased = s.acquire(&holder, 1).await.expect("acquire");
    let a: ChunkRef = leased[0].chunk.clone().expect("chunk ref");
    let n = a.chunk_no;
    assert_eq!(chunk_state(&s, &job, n).await, (ChunkState::Leased, 1));

    for who in [other.as_str(), "", "w-never-registered"] {
        let r = s.complete(who, a.clone(), 10, 0, false, 0).await;
        assert!(
            refused(&r),
            "a completion from {who:?} must be refused: {r:?}"
        );
        let r = s
            .fail(who, a.clone(), ErrorClass::Permanent, false, "boom")
            .await;
        assert!(refused(&r), "a failure from {who:?} must be refused: {r:?}");
        assert_eq!(
            chunk_state(&s, &job, n).await,
            (ChunkState::Leased, 1),
            "a refused report from {who:?} changed the chunk"
        );
    }
    // a heartbeat from another worker listing the chunk is told to abort it
    let held = vec![HeldChunk {
        chunk: Some(a.clone()),
        rows_so_far: 5,
    }];
    let abort = s
        .heartbeat(&other, held.clone(), true)
        .await
        .expect("heartbeat");
    assert_eq!(abort.len(), 1, "another worker may not hold the chunk");
    let r = s.heartbeat("", held, true).await;
    assert!(
        matches!(r, Err(CoordinatorError::UnknownWorker(_))),
        "{r:?}"
    );
    assert_eq!(s.job_summary(&job).await.expect("job").rows_written, 0);

    // the holder's report stands
    s.complete(&holder, a.clone(), 10, 0, false, 0)
        .await
        .expect("the holder completes its chunk");
    assert_eq!(chunk_state(&s, &job, n).await.0, ChunkState::Succeeded);
    // and a second, late report of the same attempt is refused
    let r = s.complete(&holder, a, 10, 0, false, 0).await;
    assert!(refused(&r), "{r:?}");
    let j = s.job_summary(&job).await.expect("job");
    assert_eq!(j.chunks_succeeded, 1);
    assert_eq!(j.state, JobState::Running as i32);
}

#[tokio::test]
async fn an_older_worker_cannot_register() {
    let s = Scheduler::new(Arc::new(MemoryStore::new()), synthetic::config());
    let r = s
        .register_worker(String::new(), "old-host".into(), 2, 0)
        .await;
    let Err(e @ CoordinatorError::OutdatedWorker { .. }) = r else {
        panic!("a protocol-0 worker registered: {r:?}");
    };
    let msg = e.to_string();
    assert!(msg.contains("old-host") && msg.contains("upgrade"), "{msg}");
    let status = tonic::Status::from(e);
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
}

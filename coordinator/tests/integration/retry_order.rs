//! A chunk whose retry is due is leased before the chunks not yet run: it
//! is already late, and queued behind them it would make the job's tail.

use std::sync::Arc;
use std::time::Duration;

use crate::synthetic;

use ferry_common::errors::ErrorClass;
use ferry_common::proto::{ChunkRef, JobSpec, RetryPolicy};
use ferry_coordinator::planner::Plan;
use ferry_coordinator::scheduler::Scheduler;
use ferry_coordinator::store::MemoryStore;

fn chunk_of(a: &ferry_common::proto::ChunkAssignment) -> ChunkRef {
    a.chunk.clone().expect("an assignment names its chunk")
}

#[tokio::test]
async fn a_retried_chunk_goes_ahead_of_the_chunks_not_yet_run() {
    let s = Scheduler::new(Arc::new(MemoryStore::new()), synthetic::config());
    let _ticker = s.spawn_ticker();
    let spec = JobSpec {
        max_workers: Some(1),
        adaptive_concurrency: Some(false),
        retry: Some(RetryPolicy {
            enabled: Some(true),
            max_retries: Some(3),
            initial_delay_ms: Some(50),
            max_delay_ms: Some(50),
        }),
        ..synthetic::spec()
    };
    let job = s
        .submit_planned("retry-order".into(), spec, Plan::synthetic(6))
        .await
        .expect("submit");
    let w = synthetic::register(&s, "w", 1).await;

    let first = s.acquire(&w, 1).await.expect("acquire");
    let failed = chunk_of(&first[0]);
    assert_eq!(failed.chunk_no, 1);
    s.fail(
        &w,
        failed.clone(),
        ErrorClass::Transient,
        false,
        "connection reset",
    )
    .await
    .expect("fail");

    // chunk 1 waits out its backoff; chunk 2 runs meanwhile
    let second = s.lease_next(&w, 1).await;
    let running = chunk_of(&second[0]);
    assert_eq!(running.chunk_no, 2);
    // past the 50 ms backoff and several 200 ms ticks, which move a due
    // retry back to the queue (nothing else shows that but the next lease)
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(s.job_summary(&job).await.expect("job").retries, 1);
    let next = s
        .complete(&w, running, 10, 0, false, 1)
        .await
        .expect("complete");
    assert_eq!(next.len(), 1, "a next chunk with the report");
    let c = chunk_of(&next[0]);
    assert_eq!(
        c.chunk_no, 1,
        "the retried chunk comes before chunks 3-6, which have not run yet"
    );
    assert_eq!(next[0].attempt, 2);
}

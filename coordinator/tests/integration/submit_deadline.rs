//! SubmitJob under a client deadline that expires while the job is being
//! stored (a slow state store): the client gets DEADLINE_EXCEEDED or
//! CANCELLED, and the job is then stored and planned in full, so the retry
//! with the same request_id finds it (`created == false`) instead of making a
//! second one. Also: a refused spec carries the rich error details.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferry_common::config::JobDefaults;
use ferry_common::connections::ConnectionRegistry;
use ferry_common::ledger::DEFAULT_LEDGER_SCHEMA;
use ferry_common::proto::job_service_client::JobServiceClient;
use ferry_common::proto::{
    ChunkRecord, GetJobRequest, JobRecord, JobSpec, JobState, SubmitJobRequest,
};
use ferry_common::timing::Timings;
use ferry_coordinator::scheduler::{Scheduler, SchedulerConfig};
use ferry_coordinator::server;
use ferry_coordinator::store::{MemoryStore, Snapshot, StateStore, StoreError};
use tonic::Code;
use tonic_types::StatusExt;

/// How long the slow store takes to store a job: far past the client's deadline.
const STORE_DELAY: Duration = Duration::from_millis(1500);
/// The client's deadline.
const DEADLINE: Duration = Duration::from_millis(200);

/// A MemoryStore whose job creation is slow, as an etcd under load would be.
struct SlowStore(MemoryStore);

#[async_trait]
impl StateStore for SlowStore {
    async fn create_job(&self, job: &JobRecord) -> Result<(JobRecord, bool), StoreError> {
        tokio::time::sleep(STORE_DELAY).await;
        self.0.create_job(job).await
    }
    async fn update_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        self.0.update_job(job).await
    }
    async fn put_chunks(&self, chunks: &[ChunkRecord]) -> Result<Vec<u64>, StoreError> {
        self.0.put_chunks(chunks).await
    }
    async fn lease_chunk(&self, chunk: &ChunkRecord, expected: u64) -> Result<u64, StoreError> {
        self.0.lease_chunk(chunk, expected).await
    }
    async fn update_chunk(&self, chunk: &ChunkRecord, expected: u64) -> Result<u64, StoreError> {
        self.0.update_chunk(chunk, expected).await
    }
    async fn register_worker(&self, worker_id: &str, ttl_ms: u64) -> Result<(), StoreError> {
        self.0.register_worker(worker_id, ttl_ms).await
    }
    async fn keepalive_worker(&self, worker_id: &str) -> Result<bool, StoreError> {
        self.0.keepalive_worker(worker_id).await
    }
    async fn renew_workers(&self) -> Result<usize, StoreError> {
        self.0.renew_workers().await
    }
    async fn remove_worker(&self, worker_id: &str) -> Result<(), StoreError> {
        self.0.remove_worker(worker_id).await
    }
    async fn load(&self) -> Result<Snapshot, StoreError> {
        self.0.load().await
    }
    async fn delete_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        self.0.delete_job(job).await
    }
    fn describe(&self) -> String {
        "slow memory store (test)".into()
    }
    fn writes_wait(&self) -> bool {
        self.0.writes_wait()
    }
}

fn config() -> SchedulerConfig {
    SchedulerConfig {
        defaults: JobDefaults::default(),
        // planning connects here and fails: enough to see that planning ran
        connections: ConnectionRegistry::from_pairs([
            (
                "src".to_string(),
                "postgres://t@127.0.0.1:1/src".to_string(),
            ),
            (
                "dst".to_string(),
                "postgres://t@127.0.0.1:1/dst".to_string(),
            ),
        ]),
        timings: Timings::default(),
        ledger_schema: DEFAULT_LEDGER_SCHEMA.to_string(),
        lifecycle: Default::default(),
    }
}

fn submit(
    request_id: &str,
    spec: JobSpec,
    deadline: Option<Duration>,
) -> tonic::Request<SubmitJobRequest> {
    let mut req = tonic::Request::new(SubmitJobRequest {
        request_id: request_id.to_string(),
        spec: Some(spec),
    });
    if let Some(d) = deadline {
        req.set_timeout(d); // sent as grpc-timeout
    }
    req
}

fn spec() -> JobSpec {
    JobSpec {
        source: "src".into(),
        target: "dst".into(),
        query: "SELECT * FROM items".into(),
        table: "public.items".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_deadline_mid_submit_leaves_one_whole_job() {
    let (listener, addr) = server::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let (gate, health) = server::gate().await;
    let scheduler = Scheduler::new(Arc::new(SlowStore(MemoryStore::new())), config());
    gate.lead(scheduler).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    let served = tokio::spawn(server::serve(listener, gate, health, async move {
        s.cancelled().await
    }));
    let mut client = JobServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");

    let first = client
        .submit_job(submit("deadline-1", spec(), Some(DEADLINE)))
        .await
        .expect_err("the store is slower than the deadline");
    assert!(
        matches!(first.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{first:?}"
    );

    // the retry (no deadline) waits for the store and finds the first call's job
    let again = client
        .submit_job(submit("deadline-1", spec(), None))
        .await
        .expect("retry")
        .into_inner();
    assert!(
        !again.created,
        "the first submission must have been stored in full despite its deadline"
    );
    // and planned: its planning ran (and failed: nothing listens on port 1)
    let mut state = JobState::Pending;
    for _ in 0..300 {
        let job = client
            .get_job(GetJobRequest {
                job_id: again.job_id.clone(),
            })
            .await
            .expect("get")
            .into_inner();
        state = JobState::try_from(job.state).expect("state");
        if state.is_terminal() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, JobState::Failed, "planning of the stored job ran");

    // a refused spec names its field and a stable reason
    let bad = client
        .submit_job(submit(
            "",
            JobSpec {
                chunk_size: Some(0),
                ..spec()
            },
            None,
        ))
        .await
        .expect_err("chunk_size 0 is refused");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let details = bad.get_error_details();
    assert_eq!(
        details.error_info().map(|i| i.reason.as_str()),
        Some("INVALID_VALUE")
    );
    let violations = details
        .bad_request()
        .expect("bad request")
        .field_violations
        .clone();
    assert_eq!(violations[0].field, "spec.chunk_size");

    stop.cancel();
    let _ = served.await;
}

//! Two coordinators over one etcd: exactly one leads and reports SERVING on
//! gRPC health; the other reports NOT_SERVING and answers UNAVAILABLE naming
//! the leader; when the leader stops, the follower takes over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_common::config::JobDefaults;
use ferry_common::connections::ConnectionRegistry;
use ferry_common::proto::job_service_client::JobServiceClient;
use ferry_common::proto::ListJobsRequest;
use ferry_common::timing::Timings;
use ferry_coordinator::leader::{self, EtcdOptions};
use ferry_coordinator::scheduler::SchedulerConfig;
use ferry_coordinator::server;
use ferry_tests::etcd::EtcdCluster;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

struct Replica {
    url: String,
    stop: CancellationToken,
}

async fn start(etcd: &EtcdCluster) -> Replica {
    let (listener, addr) = server::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let url = format!("http://{addr}");
    let (gate, health) = server::gate().await;
    let stop = CancellationToken::new();
    let config = SchedulerConfig {
        defaults: JobDefaults::default(),
        connections: ConnectionRegistry::default(),
        timings: Timings::default(),
        ledger_schema: "ferry".into(),
        lifecycle: Default::default(),
    };
    let opts = EtcdOptions {
        endpoints: etcd.endpoints(),
        prefix: "/roles".into(),
        advertise: url.clone(),
        security: Default::default(),
        max_txn_ops: ferry_coordinator::store::DEFAULT_MAX_TXN_OPS,
    };
    tokio::spawn(leader::run(Arc::clone(&gate), config, opts, stop.clone()));
    let s = stop.clone();
    tokio::spawn(server::serve(listener, gate, health, async move {
        s.cancelled().await
    }));
    Replica { url, stop }
}

/// The message of a follower's refusal of ListJobs (empty if it served it).
async fn refusal(url: &str) -> String {
    let Ok(mut client) = JobServiceClient::connect(url.to_string()).await else {
        return String::new();
    };
    match client.list_jobs(ListJobsRequest { limit: 0 }).await {
        Ok(_) => String::new(),
        Err(e) => e.message().to_string(),
    }
}

async fn status(url: &str) -> ServingStatus {
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(url.to_string()) else {
        return ServingStatus::Unknown;
    };
    let Ok(channel) = endpoint.connect().await else {
        return ServingStatus::Unknown;
    };
    let mut client = HealthClient::new(channel);
    match client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
    {
        Ok(r) => ServingStatus::try_from(r.into_inner().status).unwrap_or(ServingStatus::Unknown),
        Err(_) => ServingStatus::Unknown,
    }
}

async fn wait_for(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_serves_the_other_points_to_it_and_takes_over() {
    let etcd = EtcdCluster::start(1);
    let a = start(&etcd).await;
    wait_for("the first replica to lead", async || {
        status(&a.url).await == ServingStatus::Serving
    })
    .await;
    let b = start(&etcd).await;
    // health starts NOT_SERVING; following means knowing whom to point to
    wait_for(
        "the second replica to follow, naming the leader",
        async || {
            status(&b.url).await == ServingStatus::NotServing
                && refusal(&b.url).await.contains(&a.url)
        },
    )
    .await;
    assert_eq!(
        status(&a.url).await,
        ServingStatus::Serving,
        "the leader must stay SERVING"
    );

    let mut follower = JobServiceClient::connect(b.url.clone())
        .await
        .expect("connect follower");
    let err = follower
        .list_jobs(ListJobsRequest { limit: 0 })
        .await
        .expect_err("a follower must refuse");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains(&a.url),
        "the refusal must name the leader {}: {}",
        a.url,
        err.message()
    );

    // the leader goes away (its term ends, its lease is revoked): the follower takes over
    a.stop.cancel();
    wait_for("the follower to take over", async || {
        status(&b.url).await == ServingStatus::Serving
    })
    .await;
    let mut leader = JobServiceClient::connect(b.url.clone())
        .await
        .expect("connect new leader");
    leader
        .list_jobs(ListJobsRequest { limit: 0 })
        .await
        .expect("the new leader serves");
    b.stop.cancel();
}

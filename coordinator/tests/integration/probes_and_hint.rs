//! What Kubernetes probes and clients see of two coordinators over one etcd:
//! the liveness service is SERVING on both (a liveness probe must not restart
//! a follower) while readiness (service "") is SERVING on the leader alone;
//! a follower's refusal names the leader in the `x-ferry-leader` metadata,
//! and a client given only the follower's address reaches the leader by it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_common::client::{leader_hint, Coordinators};
use ferry_common::config::JobDefaults;
use ferry_common::connections::ConnectionRegistry;
use ferry_common::proto::ListJobsRequest;
use ferry_common::timing::Timings;
use ferry_coordinator::leader::{self, EtcdOptions};
use ferry_coordinator::scheduler::SchedulerConfig;
use ferry_coordinator::server::{self, LIVENESS_SERVICE};
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
        prefix: "/probes".into(),
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

async fn status(url: &str, service: &str) -> ServingStatus {
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(url.to_string()) else {
        return ServingStatus::Unknown;
    };
    let Ok(channel) = endpoint.connect().await else {
        return ServingStatus::Unknown;
    };
    let mut client = HealthClient::new(channel);
    match client
        .check(HealthCheckRequest {
            service: service.to_string(),
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
async fn liveness_serves_on_followers_and_the_leader_hint_is_typed() {
    let etcd = EtcdCluster::start(1);
    let a = start(&etcd).await;
    wait_for("the first replica to lead", async || {
        status(&a.url, "").await == ServingStatus::Serving
    })
    .await;
    let b = start(&etcd).await;
    let follower = Coordinators::new(&b.url, None).expect("follower address");
    wait_for(
        "the follower to refuse, naming the leader",
        async || match follower
            .jobs()
            .list_jobs(ListJobsRequest { limit: 0 })
            .await
        {
            Ok(_) => panic!("a follower must not serve JobService"),
            Err(s) => leader_hint(&s).is_some(),
        },
    )
    .await;

    assert_eq!(status(&a.url, "").await, ServingStatus::Serving);
    assert_eq!(status(&b.url, "").await, ServingStatus::NotServing);
    assert_eq!(
        status(&a.url, LIVENESS_SERVICE).await,
        ServingStatus::Serving,
        "the leader is alive"
    );
    assert_eq!(
        status(&b.url, LIVENESS_SERVICE).await,
        ServingStatus::Serving,
        "a follower is alive too: a liveness probe must not restart it"
    );

    let refusal = follower
        .jobs()
        .list_jobs(ListJobsRequest { limit: 0 })
        .await
        .expect_err("a follower refuses");
    assert_eq!(refusal.code(), tonic::Code::Unavailable);
    assert_eq!(leader_hint(&refusal).as_deref(), Some(a.url.as_str()));

    // a client that knows only the follower follows the hint to the leader
    follower.failover(&refusal);
    assert_eq!(follower.current_url(), a.url);
    follower
        .jobs()
        .list_jobs(ListJobsRequest { limit: 0 })
        .await
        .expect("the hinted leader serves");

    a.stop.cancel();
    b.stop.cancel();
}

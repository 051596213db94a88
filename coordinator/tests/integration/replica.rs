//! A coordinator replica on real etcd, as `ferry coordinator --etcd` runs:
//! the gRPC server behind its gate and the leader election loop, for the
//! tests of leader roles and probes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_common::config::JobDefaults;
use ferry_common::connections::ConnectionRegistry;
use ferry_common::timing::Timings;
use ferry_coordinator::leader::{self, EtcdOptions};
use ferry_coordinator::scheduler::SchedulerConfig;
use ferry_coordinator::server;
use ferry_tests::etcd::EtcdCluster;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// A running replica: its URL, and the token that stops it.
pub struct Replica {
    pub url: String,
    pub stop: CancellationToken,
}

/// Starts a replica on a free loopback port, campaigning under `prefix`.
pub async fn start(etcd: &EtcdCluster, prefix: &str) -> Replica {
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
        prefix: prefix.into(),
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

/// The health of `service` ("": the leader's own) at `url`; Unknown when
/// nothing answers.
pub async fn status(url: &str, service: &str) -> ServingStatus {
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

/// Polls `f` every 100 ms until it holds; fails the test after 20 s.
pub async fn wait_for(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

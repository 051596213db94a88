//! What Kubernetes probes and clients see of two coordinators over one etcd:
//! the liveness service is SERVING on both (a liveness probe must not restart
//! a follower) while readiness (service "") is SERVING on the leader alone;
//! a follower's refusal names the leader in the `x-ferry-leader` metadata,
//! and a client given only the follower's address reaches the leader by it.

use crate::replica::{start, status, wait_for};

use ferry_common::client::{leader_hint, Coordinators};
use ferry_common::proto::ListJobsRequest;
use ferry_coordinator::server::LIVENESS_SERVICE;
use ferry_tests::etcd::EtcdCluster;
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_serves_on_followers_and_the_leader_hint_is_typed() {
    let etcd = EtcdCluster::start(1);
    let a = start(&etcd, "/probes").await;
    wait_for("the first replica to lead", async || {
        status(&a.url, "").await == ServingStatus::Serving
    })
    .await;
    let b = start(&etcd, "/probes").await;
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

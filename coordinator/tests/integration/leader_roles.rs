//! Two coordinators over one etcd: exactly one leads and reports SERVING on
//! gRPC health; the other reports NOT_SERVING and answers UNAVAILABLE naming
//! the leader; when the leader stops, the follower takes over.

use crate::replica::{start, status, wait_for};

use ferry_common::proto::job_service_client::JobServiceClient;
use ferry_common::proto::ListJobsRequest;
use ferry_tests::etcd::EtcdCluster;
use tonic_health::pb::health_check_response::ServingStatus;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_serves_the_other_points_to_it_and_takes_over() {
    let etcd = EtcdCluster::start(1);
    let a = start(&etcd, "/roles").await;
    wait_for("the first replica to lead", async || {
        status(&a.url, "").await == ServingStatus::Serving
    })
    .await;
    let b = start(&etcd, "/roles").await;
    // health starts NOT_SERVING; following means knowing whom to point to
    wait_for(
        "the second replica to follow, naming the leader",
        async || {
            status(&b.url, "").await == ServingStatus::NotServing
                && refusal(&b.url).await.contains(&a.url)
        },
    )
    .await;
    assert_eq!(
        status(&a.url, "").await,
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
        status(&b.url, "").await == ServingStatus::Serving
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

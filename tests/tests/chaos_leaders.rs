//! Chaos suite, leaders (cases 2 and 4): with real etcd, 2 coordinators and
//! 3 workers copying 2,000,000 rows, the leader coordinator is SIGKILLed
//! (the standby takes over and rebuilds the job from etcd) or frozen and
//! later woken as a zombie, or the Raft
//! leader of a 3-member etcd is SIGKILLed and restarted. Every case asserts
//! what `ferry_tests::chaos_verdict::finish` lists and appends a row to the
//! chaos report.

use ferry_tests::chaos::{sleep_secs, ChaosRun, ChaosSetup, CHUNK_STALL_MS};
use ferry_tests::chaos_verdict::finish;
use ferry_tests::clock::{format_unix_secs, unix_now};
use ferry_tests::databases::Pg;
use ferry_tests::log_lines::{
    line_unix_secs, log_field, BECAME_LEADER, RENEWED_ADOPTED, STEPPING_DOWN,
};
use std::time::Duration;

/// Case 2: the leader coordinator SIGKILLed mid-job; the standby takes over,
/// rebuilds the running job from etcd, and the workers follow it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_coordinator_killed_standby_takes_over() {
    let mut run = ChaosRun::start(ChaosSetup {
        pg: Pg::OneCluster,
        etcd_members: 1,
        lease_ttl: None,
        stall_ms: CHUNK_STALL_MS,
    })
    .await;
    let job = run.submit(&[]);
    run.wait_first_chunk();
    sleep_secs(1.0).await;
    let killed = run.kill_leader();
    let log = run.cluster.coordinator(1 - killed).log();
    let line = log
        .lines()
        .rfind(|l| l.contains(BECAME_LEADER))
        .unwrap_or_default()
        .to_string();
    finish("2. leader coordinator SIGKILLed", &run, &job).await;
    eprintln!("takeover {:.2}s: {line}", run.takeovers()[0].secs());
    assert_eq!(
        log_field(&line, "running"),
        Some("1"),
        "the new leader should have rebuilt the running job: {line}"
    );
}

/// Case 2b: the leader coordinator frozen (SIGSTOP) mid-job, as a leader on
/// a vanished host: no reset reaches the workers, whose calls to it hang
/// until HTTP/2 keepalive or their deadline drops them. The standby takes
/// over and renews the workers' leases the frozen leader kept; the frozen one
/// is then woken as a zombie and must step down without writing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_coordinator_frozen_then_woken_as_a_zombie() {
    let mut run = ChaosRun::start(ChaosSetup {
        pg: Pg::OneCluster,
        etcd_members: 1,
        lease_ttl: None,
        stall_ms: CHUNK_STALL_MS,
    })
    .await;
    let job = run.submit(&[]);
    run.wait_first_chunk();
    sleep_secs(1.0).await;
    let frozen = run.freeze_leader();
    let leader = run.cluster.coordinator(1 - frozen);
    let renewed = leader
        .wait_for_line(|l| l.contains(RENEWED_ADOPTED), Duration::from_secs(30))
        .unwrap_or_else(|| {
            panic!(
                "the new leader never renewed the workers' leases:\n{}",
                leader.log_tail(30)
            )
        });
    assert_eq!(
        log_field(&renewed, "workers"),
        Some("3"),
        "the new leader should renew the 3 workers the frozen one knew: {renewed}"
    );
    sleep_secs(1.0).await;
    let woken_at = unix_now();
    run.thaw_coordinator(frozen);
    let zombie = run.cluster.coordinator(frozen);
    let stepped = zombie.wait_for_line(
        |l| l.contains(STEPPING_DOWN) && line_unix_secs(l).is_some_and(|t| t >= woken_at - 1.0),
        Duration::from_secs(30),
    );
    assert!(
        stepped.is_some(),
        "the woken zombie leader did not step down:\n{}",
        zombie.log_tail(30)
    );
    finish("2b. leader coordinator frozen, then woken", &run, &job).await;
    // not asserted (it depends on how fast the workers' calls to the frozen
    // leader fail), but the point of the renewal: chunks given up for a lost lease
    let lost = run
        .requeues(&job)
        .iter()
        .filter(|r| r.line.contains("lease expired") || r.line.contains("stopped heartbeating"))
        .count();
    eprintln!(
        "chunk attempts given up for a lost worker lease across the takeover: {lost}; {renewed}"
    );
}

/// Case 4: the Raft leader of a 3-member etcd cluster SIGKILLed mid-job and
/// restarted 4 s later; the coordinators know all 3 endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_member_killed_and_restarted() {
    let mut run = ChaosRun::start(ChaosSetup {
        pg: Pg::OneCluster,
        etcd_members: 3,
        lease_ttl: None,
        stall_ms: CHUNK_STALL_MS,
    })
    .await;
    let job = run.submit(&[]);
    run.wait_first_chunk();
    sleep_secs(1.0).await;
    let member = run.cluster.etcd().leader().unwrap_or(0);
    let killed_at = unix_now();
    let restart_mid_job = run.kill_etcd_member(member, 4.0).await;
    finish("4. etcd member SIGKILLed and restarted", &run, &job).await;
    // Not asserted (the suite's contract is exactly-once), but worth seeing:
    // with etcd quorum intact, did the leader coordinator keep leading?
    let step_downs: Vec<String> = run
        .cluster
        .coordinator_lines()
        .into_iter()
        .filter(|l| l.contains(STEPPING_DOWN) && line_unix_secs(l).is_some_and(|t| t >= killed_at))
        .collect();
    let requeued = run.requeues(&job).len();
    eprintln!(
        "while etcd member m{member} was down (from {}): {} coordinator step-down line(s), \
         {requeued} chunk attempt(s) given up{}",
        format_unix_secs(killed_at),
        step_downs.len(),
        if step_downs.is_empty() {
            String::new()
        } else {
            format!(":\n{}", step_downs.join("\n"))
        }
    );
    assert!(
        restart_mid_job,
        "the job finished while the etcd member was down: its restart was not mid-job"
    );
}

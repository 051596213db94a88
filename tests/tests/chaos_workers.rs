//! Chaos suite, workers (cases 1 and 3): with real etcd, 2 coordinators and
//! 3 workers copying 2,000,000 rows, one worker is SIGKILLed and restarted
//! again and again, or frozen (SIGSTOP) past its lease and thawed. Every
//! case asserts what `ferry_tests::chaos_verdict::finish` lists (SUCCEEDED,
//! target == source, nothing lost or doubled, one ledger row per chunk, no
//! late commit, every fault mid-job, re-lease within its bound) and appends
//! a row to the chaos report.

use ferry_tests::chaos::{sleep_secs, ChaosRun, ChaosSetup, CHUNK_STALL_MS, SHORT_LEASE_TTL};
use ferry_tests::chaos_verdict::finish;
use ferry_tests::databases::Pg;
use ferry_tests::log_lines::{line_unix_secs, log_field};

/// Case 1: one worker SIGKILLed and restarted four times during the job,
/// each time once its new life had committed a chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_and_restarted_repeatedly() {
    let mut run = ChaosRun::start(ChaosSetup {
        pg: Pg::OneCluster,
        etcd_members: 1,
        lease_ttl: None,
        stall_ms: CHUNK_STALL_MS,
    })
    .await;
    // Every worker must keep getting chunks for the restarted one to hold
    // some when it is killed again: with adaptive concurrency the job may run
    // at 2 streams while a dead worker's chunk holds one of them until its
    // lease expires, and the surviving workers, asking again the moment they
    // commit, took every free slot (the restarted worker waited 25 s for a
    // chunk and the case ran out of kills). The 12 streams of `--max-workers`
    // keep all three workers busy, as this case means them to be.
    let job = run.submit(&["--fixed-workers"]);
    run.wait_first_chunk();
    for _ in 0..4 {
        run.wait_commits(0, 1).await;
        sleep_secs(0.3).await;
        if run.cluster.job_finished() {
            break;
        }
        run.kill_worker(0);
        sleep_secs(0.5).await;
        run.restart_worker(0);
    }
    let outcome = finish("1. worker SIGKILLed and restarted", &run, &job).await;
    assert!(
        run.faults().len() >= 3,
        "only {} worker kills landed mid-job",
        run.faults().len()
    );
    assert!(
        !outcome.relets.is_empty(),
        "no killed worker held a chunk: re-leasing was never exercised"
    );
}

/// Case 3: a worker frozen (SIGSTOP) for twice its lease while holding
/// chunks, then resumed (SIGCONT): its chunks are leased again, and what it
/// tries after waking up is rolled back or refused, never committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_worker_is_fenced_after_its_lease() {
    let mut run = ChaosRun::start(ChaosSetup {
        pg: Pg::OneCluster,
        etcd_members: 1,
        lease_ttl: Some(SHORT_LEASE_TTL),
        stall_ms: CHUNK_STALL_MS,
    })
    .await;
    // As in case 1: the frozen worker must be holding chunks when it stops.
    let job = run.submit(&["--fixed-workers"]);
    run.wait_first_chunk();
    run.wait_commits(0, 1).await;
    sleep_secs(0.3).await;
    let frozen_secs = 2.0 * run.lease_ttl_secs() + 2.0;
    run.freeze_worker(0, frozen_secs).await;
    let thawed_at = run.dead_workers()[0].until;
    let outcome = finish("3. worker SIGSTOPped past its lease", &run, &job).await;
    assert!(
        !outcome.frozen_requeues.is_empty(),
        "the frozen worker held no chunk (no requeue line for it): nothing was fenced"
    );
    let zombie_log = run.cluster.worker(0).log();
    let after_thaw: Vec<&str> = zombie_log
        .lines()
        .filter(|l| line_unix_secs(l).is_some_and(|t| t >= thawed_at - 0.1))
        .filter(|l| log_field(l, "job") == Some(job.as_str()))
        .collect();
    eprintln!(
        "the frozen worker after its thaw:\n{}",
        after_thaw.join("\n")
    );
    for r in &outcome.frozen_requeues {
        let chunk = r.chunk.to_string();
        let attempt = r.attempt.to_string();
        let fenced = after_thaw.iter().any(|l| {
            log_field(l, "chunk") == Some(chunk.as_str())
                && ((l.contains("rolled back")
                    && log_field(l, "attempt") == Some(attempt.as_str()))
                    || l.contains("refused"))
        });
        assert!(
            fenced,
            "chunk {} attempt {} was taken from the frozen worker, but after waking up the \
             worker neither rolled it back nor had its report refused:\n{}",
            r.chunk,
            r.attempt,
            after_thaw.join("\n")
        );
    }
}

//! Chaos suite, the target and a random mix (cases 5 and 6): with real
//! etcd, 2 coordinators and 3 workers copying 2,000,000 rows, the target
//! PostgreSQL is restarted mid-job; then every fault kind at once in a
//! seeded random order (`FERRY_CHAOS_SEED=<seed>` replays it). Every case
//! asserts what `ferry_tests::chaos_verdict::finish` lists and appends a row
//! to the chaos report.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use ferry_tests::chaos::{
    sleep_secs, ChaosRun, ChaosSetup, CHUNK_STALL_MS, RANDOM_CHUNK_STALL_MS, SHORT_LEASE_TTL,
    WORKERS,
};
use ferry_tests::chaos_verdict::finish;
use ferry_tests::databases::Pg;

/// Case 5: the target PostgreSQL restarted mid-job (fast shutdown, 2 s down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_postgres_restarted() {
    let mut run = ChaosRun::start(ChaosSetup {
        pg: Pg::TwoClusters,
        etcd_members: 1,
        lease_ttl: None,
        stall_ms: CHUNK_STALL_MS,
    })
    .await;
    let job = run.submit(&[]);
    run.wait_first_chunk();
    sleep_secs(1.0).await;
    run.restart_target(2.0).await;
    finish("5. target PostgreSQL restarted", &run, &job).await;
    assert!(
        !run.requeues(&job).is_empty(),
        "chunks in flight when the target went down should have been retried"
    );
}

/// The faults the randomized run draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    KillWorker,
    FreezeWorker,
    KillLeader,
    KillEtcdMember,
    RestartTarget,
}

const KINDS: [Kind; 5] = [
    Kind::KillWorker,
    Kind::FreezeWorker,
    Kind::KillLeader,
    Kind::KillEtcdMember,
    Kind::RestartTarget,
];

/// The seed of the randomized run: env `FERRY_CHAOS_SEED`, else a fresh one.
fn chaos_seed() -> u64 {
    match std::env::var("FERRY_CHAOS_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("FERRY_CHAOS_SEED={s:?} is not an unsigned integer")),
        Err(_) => rand::rng().random(),
    }
}

/// Case 6: every fault kind once plus one or two more, in an order, with
/// victims and pauses drawn from a seeded RNG. Worker leases are 3 s, so a
/// leader takeover (~5 s) also outlasts them: workers fence themselves and
/// their chunks are leased again. The seed is printed and written to the
/// report; `FERRY_CHAOS_SEED=<seed>` replays the same schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_mix_of_all_faults() {
    let seed = chaos_seed();
    eprintln!("randomized chaos run: replay with FERRY_CHAOS_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut plan: Vec<Kind> = KINDS.to_vec();
    for _ in 0..rng.random_range(1..=2) {
        plan.push(KINDS[rng.random_range(0..KINDS.len())]);
    }
    plan.shuffle(&mut rng);
    eprintln!("FERRY_CHAOS_SEED={seed}: plan {plan:?}");

    let mut run = ChaosRun::start(ChaosSetup {
        pg: Pg::TwoClusters,
        etcd_members: 3,
        lease_ttl: Some(SHORT_LEASE_TTL),
        stall_ms: RANDOM_CHUNK_STALL_MS,
    })
    .await;
    // Retries are per chunk; a chunk may be hit by several faults in a row.
    let job = run.submit(&["--max-retries", "10"]);
    run.wait_first_chunk();
    let mut skipped = Vec::new();
    for (step, kind) in plan.iter().enumerate() {
        sleep_secs(rng.random_range(0.2..1.2)).await;
        if run.cluster.job_finished() {
            skipped.extend_from_slice(&plan[step..]);
            break;
        }
        match kind {
            Kind::KillWorker => {
                let slot = rng.random_range(0..WORKERS);
                let down = rng.random_range(0.0..2.0);
                run.kill_worker(slot);
                sleep_secs(down).await;
                run.restart_worker(slot);
                run.amend_fault(&format!(", restarted {down:.1}s later"));
            }
            Kind::FreezeWorker => {
                let slot = rng.random_range(0..WORKERS);
                let frozen = run.lease_ttl_secs() + rng.random_range(1.5..3.5);
                run.freeze_worker(slot, frozen).await;
            }
            Kind::KillLeader => {
                let down = rng.random_range(0.5..3.0);
                let slot = run.kill_leader();
                sleep_secs(down).await;
                run.restart_coordinator(slot);
                run.amend_fault(&format!(
                    ", restarted as standby after takeover + {down:.1}s"
                ));
            }
            Kind::KillEtcdMember => {
                let member = rng.random_range(0..run.cluster.etcd().len());
                let down = rng.random_range(1.0..4.0);
                run.kill_etcd_member(member, down).await;
            }
            Kind::RestartTarget => {
                let down = rng.random_range(0.0..2.0);
                run.restart_target(down).await;
            }
        }
    }
    let case = format!("6. randomized, FERRY_CHAOS_SEED={seed}");
    finish(&case, &run, &job).await;
    assert!(
        skipped.is_empty(),
        "FERRY_CHAOS_SEED={seed}: the job finished before these faults were injected: {skipped:?}"
    );
}

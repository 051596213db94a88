//! Issue 10, metrics: a real Prometheus scrapes a coordinator and two
//! workers during a real job; `promtool` accepts every page; the rows
//! Prometheus holds equal the job's rows; a page with 100 finished jobs in
//! memory stays under 50 KB; bad settings are refused with clear messages.

use std::time::{Duration, Instant};

use ferry_tests::cli::{run_cli, Submit, CLI_TIMEOUT};
use ferry_tests::cluster::{Cluster, WorkerOptions};
use ferry_tests::databases::ITEMS_TABLE;
use ferry_tests::net::{free_port, free_ports};
use ferry_tests::observability::{
    metrics_listen, promtool_check, sample, scrape, wait_serving_metrics, Prometheus,
    METRICS_LISTEN_ENV,
};

const ROWS: u64 = 300_000;
const WATCH_TIMEOUT: Duration = Duration::from_secs(180);
const SETTLE: Duration = Duration::from_secs(60);

/// Every series name on a metrics page (without labels), comments skipped.
fn names(page: &str) -> Vec<String> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_coordinator_and_two_workers_during_a_job() {
    // [coordinator, worker 0, worker 1]; the coordinator gets the flag, the
    // workers the environment variable, so both ways are exercised.
    let ports = free_ports(3);
    let coordinator_port = ports[0];
    let cluster = Cluster::builder()
        .coordinator_args_for(move |_| metrics_listen(coordinator_port))
        .worker(
            WorkerOptions::new()
                .concurrency(1)
                .env(METRICS_LISTEN_ENV, format!("127.0.0.1:{}", ports[1])),
        )
        .worker(
            WorkerOptions::new()
                .concurrency(1)
                .env(METRICS_LISTEN_ENV, format!("127.0.0.1:{}", ports[2])),
        )
        .start()
        .await;
    cluster.dbs().prepare_items(ROWS).await;
    wait_serving_metrics(cluster.coordinator(0), ports[0]);
    wait_serving_metrics(cluster.worker(0), ports[1]);
    wait_serving_metrics(cluster.worker(1), ports[2]);
    let prometheus = Prometheus::start(&ports);

    let out = cluster.submit_watch(&Submit::items().chunk_size(25_000));
    assert!(out.success(), "{out}");
    let job = out.job_id();
    cluster.dbs().assert_copied_exactly(ITEMS_TABLE).await;

    // every page passes promtool's lint
    let pages: Vec<String> = ports.iter().map(|p| scrape(*p)).collect();
    for (port, page) in ports.iter().zip(&pages) {
        if let Err(e) = promtool_check(page) {
            panic!("promtool rejects /metrics of :{port}: {e}\n{page}");
        }
    }
    let coord = &pages[0];
    assert_eq!(sample(coord, "ferry_leader", &[]), Some(1.0), "{coord}");
    let job_label = format!("job_id=\"{job}\"");
    assert_eq!(
        sample(coord, "ferry_job_rows_written", &[&job_label]),
        Some(ROWS as f64),
        "{coord}"
    );
    assert_eq!(
        sample(
            coord,
            "ferry_job_state",
            &[&job_label, "state=\"succeeded\""]
        ),
        Some(1.0),
        "{coord}"
    );
    let chunks = sample(
        coord,
        "ferry_job_chunks",
        &[&job_label, "state=\"succeeded\""],
    )
    .expect("the job's succeeded chunks are exported");
    // no name is exported by both sides
    for w in &pages[1..] {
        for n in names(w) {
            assert!(
                !n.starts_with("ferry_job") && !n.starts_with("ferry_leader"),
                "a worker exports {n}"
            );
        }
    }
    for n in names(coord) {
        assert!(
            !n.starts_with("ferry_worker_"),
            "the coordinator exports {n}"
        );
    }
    // histograms carry no job_id
    for page in &pages {
        for l in page.lines().filter(|l| l.contains("_bucket{")) {
            assert!(!l.contains("job_id"), "a histogram carries job_id: {l}");
        }
    }

    // Prometheus holds what the workers did: their sum is the job's rows and chunks
    let rows = prometheus.wait_for(
        "sum(max_over_time(ferry_worker_rows_written_total[5m]))",
        ROWS as f64,
        SETTLE,
    );
    assert_eq!(rows, Some(ROWS as f64), "workers' rows in Prometheus");
    let done = prometheus.wait_for(
        "sum(max_over_time(ferry_worker_chunks_completed_total[5m]))",
        chunks,
        SETTLE,
    );
    assert_eq!(done, Some(chunks), "workers' chunks in Prometheus");
    let job_rows = prometheus.wait_for(
        &format!("max_over_time(ferry_job_rows_written{{{job_label}}}[5m])"),
        ROWS as f64,
        SETTLE,
    );
    assert_eq!(
        job_rows,
        Some(ROWS as f64),
        "the leader's job rows in Prometheus"
    );
    assert_eq!(
        prometheus.wait_for("count(up == 1)", 3.0, SETTLE),
        Some(3.0),
        "every scrape succeeded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_page_stays_small_with_100_finished_jobs() {
    const JOBS: usize = 100;
    let port = free_port();
    let cluster = Cluster::builder()
        .coordinator_env(METRICS_LISTEN_ENV, format!("127.0.0.1:{port}"))
        .worker(WorkerOptions::new().concurrency(4))
        .start()
        .await;
    cluster.dbs().prepare_items_keyless_target(200).await;
    wait_serving_metrics(cluster.coordinator(0), port);
    let ids: Vec<String> = (0..JOBS)
        .map(|_| cluster.submit(&Submit::items()))
        .collect();
    let page = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + WATCH_TIMEOUT;
        loop {
            let page = scrape(port);
            let done = sample(&page, "ferry_jobs", &["state=\"succeeded\""]);
            if done == Some(JOBS as f64) || Instant::now() >= deadline {
                return page;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    })
    .await
    .expect("poll task");
    assert_eq!(
        sample(&page, "ferry_jobs", &["state=\"succeeded\""]),
        Some(JOBS as f64),
        "not every job succeeded; coordinator log:\n{}",
        cluster.coordinator(0).log_tail(30)
    );
    for id in &ids {
        assert!(
            page.contains(&format!("job_id=\"{id}\"")),
            "no series for {id}"
        );
    }
    assert!(
        page.len() < 50_000,
        "/metrics is {} bytes with {JOBS} finished jobs (limit 50 KB)",
        page.len()
    );
    promtool_check(&page).unwrap_or_else(|e| panic!("promtool: {e}"));
}

/// Start-up refusals: these processes must exit at once, so they are run to
/// completion like client verbs rather than started as a cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_telemetry_settings_are_refused_with_clear_messages() {
    let none: [(&str, &str); 0] = [];
    let out = run_cli(
        &["worker", "--metrics-listen", "not-an-address"],
        &none,
        CLI_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(2), "{out}");
    assert!(out.stderr.contains("--metrics-listen"), "{out}");

    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = busy.local_addr().expect("addr").to_string();
    let out = run_cli(
        &[
            "coordinator",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--metrics-listen",
            &taken,
        ],
        &none,
        CLI_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(2), "{out}");
    assert!(out.stderr.contains("--metrics-listen"), "{out}");

    let listen = format!("127.0.0.1:{}", free_port());
    let out = run_cli(
        &["coordinator", "--listen", &listen],
        &[("FERRY_HISTORY_CONN", "nosuch")],
        CLI_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(2), "{out}");
    assert!(
        out.stderr.contains("FERRY_HISTORY_CONN") && out.stderr.contains("FERRY_CONN_NOSUCH"),
        "{out}"
    );

    let out = run_cli(
        &["coordinator", "--listen", &listen],
        &[("FERRY_JOB_RETENTION", "5s")],
        CLI_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(2), "{out}");
    assert!(out.stderr.contains("FERRY_JOB_RETENTION"), "{out}");

    let out = run_cli(
        &["coordinator", "--listen", &listen],
        &[("FERRY_LOG_FORMAT", "yaml")],
        CLI_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(2), "{out}");
    assert!(out.stderr.contains("FERRY_LOG_FORMAT"), "{out}");
}

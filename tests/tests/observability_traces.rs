//! Issue 10, traces and logs: a real OTLP/gRPC receiver gets the spans of a
//! job run by a coordinator and two worker processes: one trace (the
//! client's), the SubmitJob span under the client's span, the job span
//! under it, the plan span and one span per chunk attempt (from the
//! workers) under the job span. JSON log lines carry the trace id. An
//! unreachable endpoint is a warning and the copy goes on.

use std::collections::HashSet;
use std::time::Duration;

use ferry_tests::cli::{run_cli, Submit, LONG_CLI_TIMEOUT};
use ferry_tests::cluster::{Cluster, ClusterBuilder, WorkerOptions};
use ferry_tests::databases::ITEMS_TABLE;
use ferry_tests::ledger::ledger_summary;
use ferry_tests::log_lines::{JOB_COMPLETE, JOB_STARTING};
use ferry_tests::net::free_port;
use ferry_tests::observability::{OtlpReceiver, ReceivedSpan};

const ROWS: u64 = 200_000;
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const COORDINATOR_SERVICE: &str = "ferry-coordinator";
const WORKER_SERVICE: &str = "ferry-worker";

/// The standard OpenTelemetry variables sending every span to `endpoint` as `service`.
fn otel_env(endpoint: &str, service: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_string()),
        ("OTEL_SERVICE_NAME", service.to_string()),
        ("OTEL_TRACES_SAMPLER", "always_on".to_string()),
    ]
}

/// `builder` with tracing on in every coordinator (JSON logs when `json_logs`).
fn traced_coordinators(builder: ClusterBuilder, endpoint: &str, json_logs: bool) -> ClusterBuilder {
    let mut builder = otel_env(endpoint, COORDINATOR_SERVICE)
        .into_iter()
        .fold(builder, |b, (k, v)| b.coordinator_env(k, v));
    if json_logs {
        builder = builder.coordinator_env("FERRY_LOG_FORMAT", "json");
    }
    builder
}

/// A worker tracing to `endpoint`, logging JSON.
fn traced_worker(endpoint: &str, concurrency: usize) -> WorkerOptions {
    otel_env(endpoint, WORKER_SERVICE)
        .into_iter()
        .fold(
            WorkerOptions::new().concurrency(concurrency),
            |w, (k, v)| w.env(k, v),
        )
        .env("FERRY_LOG_FORMAT", "json")
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_one_trace_across_coordinator_and_workers() {
    let receiver = OtlpReceiver::start();
    let endpoint = receiver.endpoint();
    let cluster = traced_coordinators(Cluster::builder(), &endpoint, true)
        .worker(traced_worker(&endpoint, 1))
        .worker(traced_worker(&endpoint, 1))
        .start()
        .await;
    cluster.dbs().prepare_items(ROWS).await;

    // `ferry submit --watch` as an Airflow task would run it: inside the
    // client's trace (TRACEPARENT), with the cluster's connections.
    let mut client_env = cluster.env().to_vec();
    client_env.push((
        "TRACEPARENT".to_string(),
        format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"),
    ));
    let args = Submit::items()
        .chunk_size(25_000)
        .args(&["--watch"])
        .submit_args(cluster.urls());
    let out = run_cli(&args, &client_env, LONG_CLI_TIMEOUT);
    assert!(out.success(), "{out}");
    let job = out.job_id();
    cluster.dbs().assert_copied_exactly(ITEMS_TABLE).await;
    let chunks = ledger_summary(&cluster.dbs().target().await, &job)
        .await
        .rows as usize;

    let spans = receiver.wait_until(
        |s| named(s, "ferry.job").len() == 1 && named(s, "ferry.chunk").len() >= chunks,
        Duration::from_secs(60),
    );
    let summary = || {
        spans
            .iter()
            .map(|s| {
                format!(
                    "{} {} {} {} {}",
                    s.trace_id, s.span_id, s.parent_id, s.service, s.name
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let traces: HashSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
    assert_eq!(
        traces,
        HashSet::from([CLIENT_TRACE]),
        "one trace, the client's:\n{}",
        summary()
    );

    let submit = named(&spans, "ferry.submit");
    assert_eq!(submit.len(), 1, "{}", summary());
    assert_eq!(submit[0].parent_id, CLIENT_SPAN, "{}", summary());
    assert_eq!(submit[0].service, COORDINATOR_SERVICE);
    let jobs = named(&spans, "ferry.job");
    assert_eq!(jobs.len(), 1, "{}", summary());
    let job_span = jobs[0];
    assert_eq!(job_span.parent_id, submit[0].span_id, "{}", summary());
    assert_eq!(job_span.attr("ferry.job_id"), Some(job.as_str()));
    assert_eq!(job_span.attr("ferry.state"), Some("SUCCEEDED"));
    assert_eq!(job_span.attr("ferry.rows"), Some(ROWS.to_string().as_str()));
    let plans = named(&spans, "ferry.plan");
    assert_eq!(plans.len(), 1, "{}", summary());
    assert_eq!(plans[0].parent_id, job_span.span_id);

    let chunk_spans = named(&spans, "ferry.chunk");
    assert_eq!(
        chunk_spans.len(),
        chunks,
        "one span per chunk attempt:\n{}",
        summary()
    );
    let mut rows = 0u64;
    for c in &chunk_spans {
        assert_eq!(c.service, WORKER_SERVICE, "{c:?}");
        assert_eq!(
            c.parent_id, job_span.span_id,
            "chunk span not under the job span: {c:?}"
        );
        assert_eq!(c.attr("ferry.job_id"), Some(job.as_str()), "{c:?}");
        assert_eq!(c.attr("ferry.attempt"), Some("1"), "{c:?}");
        assert_eq!(c.attr("ferry.outcome"), Some("committed"), "{c:?}");
        rows += c
            .attr("ferry.rows")
            .and_then(|r| r.parse::<u64>().ok())
            .unwrap_or(0);
    }
    assert_eq!(rows, ROWS, "chunk spans' rows");
    let numbers: HashSet<&str> = chunk_spans
        .iter()
        .filter_map(|c| c.attr("ferry.chunk"))
        .collect();
    assert_eq!(numbers.len(), chunks, "every chunk has its span");
    for s in &spans {
        for (k, v) in &s.attributes {
            assert!(
                !v.contains("postgres://"),
                "span {} attribute {k} holds a URL: {v}",
                s.name
            );
        }
    }

    // JSON log lines: the guide's wording, and the trace id inside spans
    let log = cluster.coordinator(0).log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let message = |v: &serde_json::Value| v["message"].as_str().unwrap_or_default().to_string();
    assert!(
        lines
            .iter()
            .any(|v| message(v).starts_with(&format!("{JOB_COMPLETE}: 200,000 rows"))),
        "no completion line:\n{log}"
    );
    let planned = lines
        .iter()
        .find(|v| message(v).starts_with(JOB_STARTING))
        .unwrap_or_else(|| panic!("no start line:\n{log}"));
    assert_eq!(
        planned["trace_id"].as_str(),
        Some(CLIENT_TRACE),
        "{planned}"
    );
    assert_eq!(planned["job"].as_str(), Some(job.as_str()), "{planned}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_otlp_endpoint_is_a_warning_and_the_copy_goes_on() {
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let cluster = traced_coordinators(Cluster::builder(), &nowhere, false)
        .worker(traced_worker(&nowhere, 2))
        .start()
        .await;
    cluster.dbs().prepare_items(50_000).await;
    let out = cluster.submit_watch(&Submit::items());
    assert!(out.success(), "{out}");
    cluster.dbs().assert_copied_exactly(ITEMS_TABLE).await;
    cluster
        .coordinator(0)
        .expect_log("OTLP endpoint unreachable", Duration::from_secs(10));
}

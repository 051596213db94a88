//! Issue 10, traces and logs: a real OTLP/gRPC receiver gets the spans of a
//! job run by a coordinator and two worker processes: one trace (the
//! client's), the SubmitJob span under the client's span, the job span
//! under it, the plan span and one span per chunk attempt (from the
//! workers) under the job span. JSON log lines carry the trace id. An
//! unreachable endpoint is a warning and the copy goes on.

use std::collections::HashSet;
use std::time::Duration;

use ferry_tests::ferry::{start_coordinator, start_worker};
use ferry_tests::job::{job_id, ledger_summary, submit_watch};
use ferry_tests::net::free_port;
use ferry_tests::observability::{OtlpReceiver, ReceivedSpan};
use ferry_tests::scenario::{Databases, ITEMS_QUERY, ITEMS_TABLE};

const ROWS: u64 = 200_000;
const WATCH_TIMEOUT: Duration = Duration::from_secs(180);
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn traced(env: &[(String, String)], endpoint: &str, service: &str) -> Vec<(String, String)> {
    let mut env = env.to_vec();
    for (k, v) in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_SERVICE_NAME", service),
        ("OTEL_TRACES_SAMPLER", "always_on"),
        ("FERRY_LOG_FORMAT", "json"),
    ] {
        env.push((k.to_string(), v.to_string()));
    }
    env
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_one_trace_across_coordinator_and_workers() {
    let receiver = OtlpReceiver::start();
    let dbs = Databases::one_cluster().await;
    dbs.prepare_items(ROWS).await;
    let env = dbs.conn_env();
    let endpoint = receiver.endpoint();
    let (coordinator, url) = start_coordinator(&[], &traced(&env, &endpoint, "ferry-coordinator"));
    let _w1 = start_worker(&url, 1, &traced(&env, &endpoint, "ferry-worker"));
    let _w2 = start_worker(&url, 1, &traced(&env, &endpoint, "ferry-worker"));

    let mut client_env = env.clone();
    client_env.push((
        "TRACEPARENT".to_string(),
        format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"),
    ));
    let out = submit_watch(
        &url,
        ITEMS_QUERY,
        ITEMS_TABLE,
        &["--chunk-size", "25000"],
        &client_env,
        WATCH_TIMEOUT,
    );
    let job = job_id(&out);
    dbs.assert_copied_exactly(ITEMS_TABLE).await;
    let chunks = ledger_summary(&dbs.target().await, &job).await.rows as usize;

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
    assert_eq!(submit[0].service, "ferry-coordinator");
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
        assert_eq!(c.service, "ferry-worker", "{c:?}");
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
    let log = coordinator.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let message = |v: &serde_json::Value| v["message"].as_str().unwrap_or_default().to_string();
    assert!(
        lines
            .iter()
            .any(|v| message(v).starts_with("Parallel processing complete: 200,000 rows")),
        "no completion line:\n{log}"
    );
    let planned = lines
        .iter()
        .find(|v| message(v).starts_with("Starting parallel processing with"))
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
    let dbs = Databases::one_cluster().await;
    dbs.prepare_items(50_000).await;
    let env = dbs.conn_env();
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let mut coord_env = traced(&env, &nowhere, "ferry-coordinator");
    coord_env.retain(|(k, _)| k != "FERRY_LOG_FORMAT");
    let (coordinator, url) = start_coordinator(&[], &coord_env);
    let _w = start_worker(&url, 2, &traced(&env, &nowhere, "ferry-worker"));
    let out = submit_watch(&url, ITEMS_QUERY, ITEMS_TABLE, &[], &env, WATCH_TIMEOUT);
    assert!(out.success(), "{out}");
    dbs.assert_copied_exactly(ITEMS_TABLE).await;
    assert!(
        coordinator.wait_for_log("OTLP endpoint unreachable", Duration::from_secs(10)),
        "no warning about the endpoint:\n{}",
        coordinator.log_tail(20)
    );
}

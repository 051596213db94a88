//! Helpers of the observability tests: plain HTTP to metrics pages,
//! Prometheus and etcd's JSON gateway; a real Prometheus server and
//! `promtool`; a real OTLP/gRPC trace receiver collecting spans.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use tempfile::TempDir;

use crate::net::{free_port, wait_for_port};
use crate::node::Node;
use crate::sync::blocking;

/// How long a helper waits for a server it started to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The variable a process reads its metrics address from (as `--metrics-listen`).
pub const METRICS_LISTEN_ENV: &str = "FERRY_METRICS_LISTEN";

/// `--metrics-listen 127.0.0.1:PORT`, for `.coordinator_args_for` or `WorkerOptions::arg`.
pub fn metrics_listen(port: u16) -> Vec<String> {
    vec!["--metrics-listen".to_string(), format!("127.0.0.1:{port}")]
}

/// Waits until `node` serves metrics on `127.0.0.1:port`; panics with its log otherwise.
pub fn wait_serving_metrics(node: &Node, port: u16) {
    assert!(
        blocking(|| wait_for_port(port, START_TIMEOUT)),
        "{} serves no metrics on {port}; log:\n{}",
        node.label(),
        node.log_tail(30)
    );
}

/// One HTTP/1.0 exchange with `127.0.0.1:port`: status code and body.
fn http(port: u16, request: &str) -> Result<(u16, String), String> {
    blocking(|| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no HTTP header in {text:?}"))?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("no status in {head:?}"))?;
        Ok((status, body.to_string()))
    })
}

/// `GET path` on `127.0.0.1:port`.
pub fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    http(
        port,
        &format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    )
}

/// `POST path` with a JSON body on `127.0.0.1:port`.
pub fn http_post_json(port: u16, path: &str, body: &str) -> Result<(u16, String), String> {
    http(
        port,
        &format!(
            "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// The `/metrics` page of a process serving `--metrics-listen 127.0.0.1:port`.
pub fn scrape(port: u16) -> String {
    match http_get(port, "/metrics") {
        Ok((200, body)) => body,
        other => panic!("GET /metrics on port {port}: {other:?}"),
    }
}

/// The value of the series `name{labels}` (labels as printed, e.g.
/// `job_id="j1"`) on a metrics page; None when absent.
pub fn sample(page: &str, name: &str, labels: &[&str]) -> Option<f64> {
    page.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, ""));
        (n == name && labels.iter().all(|want| rest.contains(want)))
            .then(|| value.parse().ok())
            .flatten()
    })
}

/// Runs `promtool check metrics` on a page; Err with what it said.
pub fn promtool_check(page: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool is not installed ({e}): run `sudo bash scripts/setup.sh`")
        });
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(page.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("wait for promtool");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A real Prometheus server on a free loopback port scraping targets every
/// second. Dropping it kills it.
pub struct Prometheus {
    child: Mutex<Child>,
    port: u16,
    dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `127.0.0.1:PORT` for each of `targets`.
    pub fn start(targets: &[u16]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ferry-prom-")
            .tempdir()
            .expect("temp dir for prometheus");
        let list = targets
            .iter()
            .map(|p| format!("'127.0.0.1:{p}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: ferry\n    static_configs: [{{targets: [{list}]}}]\n"
            ),
        )
        .expect("write prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("prometheus is not installed ({e}): run `sudo bash scripts/setup.sh`")
            });
        let p = Prometheus {
            child: Mutex::new(child),
            port,
            dir,
        };
        assert!(
            blocking(|| wait_for_port(port, START_TIMEOUT)),
            "prometheus did not listen on {port}; log:\n{}",
            p.log()
        );
        p
    }

    /// Prometheus's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The value of an instant query returning one sample (None: no sample).
    pub fn query(&self, expr: &str) -> Option<f64> {
        let q: String = expr
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, body) = http_get(self.port, &format!("/api/v1/query?query={q}")).ok()?;
        assert_eq!(status, 200, "prometheus refused {expr}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Polls `expr` until it equals `want` or `timeout` passes; returns the last value.
    pub fn wait_for(&self, expr: &str, want: f64, timeout: Duration) -> Option<f64> {
        blocking(|| {
            let deadline = Instant::now() + timeout;
            loop {
                let got = self.query(expr);
                if got == Some(want) || Instant::now() >= deadline {
                    return got;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let mut c = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = c.kill();
        let _ = c.wait();
        if std::thread::panicking() {
            eprintln!("--- prometheus log ---\n{}", self.log());
        }
    }
}

/// One span as an OTLP receiver got it.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// Trace id, hex.
    pub trace_id: String,
    /// Span id, hex.
    pub span_id: String,
    /// Parent span id, hex (empty for a root).
    pub parent_id: String,
    /// `service.name` of the process that sent it.
    pub service: String,
    /// Span name.
    pub name: String,
    /// Attributes as text.
    pub attributes: Vec<(String, String)>,
}

impl ReceivedSpan {
    /// An attribute's value as text.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text_of(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut out = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
                .map(|a| text_of(a.value.as_ref()))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    out.push(ReceivedSpan {
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent_id: hex(&s.parent_span_id),
                        service: service.clone(),
                        name: s.name.clone(),
                        attributes: s
                            .attributes
                            .iter()
                            .map(|a| (a.key.clone(), text_of(a.value.as_ref())))
                            .collect(),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A real OTLP/gRPC trace receiver on a free loopback port, in this process.
pub struct OtlpReceiver {
    collector: Collector,
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl OtlpReceiver {
    /// Starts the receiver on the current Tokio runtime.
    pub fn start() -> Self {
        let port = free_port();
        let collector = Collector::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(async move {
            let addr = ([127, 0, 0, 1], port).into();
            let served = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_shutdown(addr, async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                eprintln!("OTLP receiver stopped: {e}");
            }
        });
        assert!(
            blocking(|| wait_for_port(port, START_TIMEOUT)),
            "OTLP receiver did not listen on {port}"
        );
        OtlpReceiver {
            collector,
            port,
            stop: Some(tx),
        }
    }

    /// `http://127.0.0.1:PORT`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.collector
            .spans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until `done` holds for the spans received (or `timeout`); returns them.
    pub fn wait_until(
        &self,
        done: impl Fn(&[ReceivedSpan]) -> bool,
        timeout: Duration,
    ) -> Vec<ReceivedSpan> {
        blocking(|| {
            let deadline = Instant::now() + timeout;
            loop {
                let spans = self.spans();
                if done(&spans) || Instant::now() >= deadline {
                    return spans;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Keys under `prefix` in etcd (through its JSON gateway at `endpoint`).
pub fn etcd_count(endpoint: &str, prefix: &str) -> u64 {
    let port: u16 = endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("etcd endpoint {endpoint} has no port"));
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let body = format!(
        "{{\"key\":\"{}\",\"range_end\":\"{}\",\"count_only\":true}}",
        base64(prefix.as_bytes()),
        base64(&end)
    );
    let (status, text) = http_post_json(port, "/v3/kv/range", &body)
        .unwrap_or_else(|e| panic!("etcd range {prefix}: {e}"));
    assert_eq!(status, 200, "etcd range {prefix}: {text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("etcd answers JSON");
    v["count"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .or_else(|| v["count"].as_u64())
        .unwrap_or(0)
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_base64_and_reads_samples() {
        assert_eq!(base64(b"/ferry/jobs/"), "L2ZlcnJ5L2pvYnMv");
        assert_eq!(base64(b"ab"), "YWI=");
        let page = "# HELP x y\nferry_leader 1\nferry_job_rows_written{job_id=\"j1\"} 40\n";
        assert_eq!(sample(page, "ferry_leader", &[]), Some(1.0));
        assert_eq!(
            sample(page, "ferry_job_rows_written", &["job_id=\"j1\""]),
            Some(40.0)
        );
        assert_eq!(
            sample(page, "ferry_job_rows_written", &["job_id=\"j2\""]),
            None
        );
    }
}

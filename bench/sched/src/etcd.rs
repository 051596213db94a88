//! A throwaway single-member etcd on free loopback ports in a temporary
//! directory, and its Prometheus counters.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The etcd counters read before and after a phase. Which of them are
/// "writes" is decided in the report (see `Counters::writes`).
/// The etcd's `--max-txn-ops`, as the chart's bundled etcd is started and
/// its coordinators told (`FERRY_ETCD_MAX_TXN_OPS`).
pub const MAX_TXN_OPS: usize = 512;

pub const COUNTERS: &[&str] = &[
    "etcd_mvcc_put_total",
    "etcd_mvcc_delete_total",
    "etcd_mvcc_txn_total",
    "etcd_mvcc_range_total",
    "etcd_server_proposals_committed_total",
    "etcd_disk_wal_fsync_duration_seconds_count",
    "etcd_disk_wal_fsync_duration_seconds_sum",
    "etcd_disk_backend_commit_duration_seconds_count",
    "etcd_debugging_lease_granted_total",
    "etcd_debugging_lease_renewed_total",
    "etcd_debugging_lease_revoked_total",
];

/// A running etcd; killed and its directory removed on drop (unless kept).
pub struct Etcd {
    child: Child,
    pub dir: PathBuf,
    pub client_port: u16,
    keep: bool,
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("bind a free port")?;
    Ok(l.local_addr()?.port())
}

impl Etcd {
    /// Starts `bin` with its data under `parent` and waits for /health.
    pub async fn start(bin: &Path, parent: &Path, keep: bool, pprof: bool) -> Result<Self> {
        let dir = parent.join("etcd");
        std::fs::create_dir_all(&dir)?;
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let log = std::fs::File::create(dir.join("etcd.log"))?;
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let child = Command::new(bin)
            .args(["--name", "bench"])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("bench={peer}")])
            .args(["--initial-cluster-state", "new"])
            .args(["--max-txn-ops", &MAX_TXN_OPS.to_string()])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .args(if pprof {
                &["--enable-pprof"][..]
            } else {
                &[][..]
            })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let mut etcd = Etcd {
            child,
            dir,
            client_port,
            keep,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(body) = etcd.http_get("/health").await {
                if body.contains("\"health\":\"true\"") {
                    return Ok(etcd);
                }
            }
            if let Some(status) = etcd.child.try_wait()? {
                bail!(
                    "etcd exited with {status}; see {}",
                    etcd.dir.join("etcd.log").display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd not healthy after 20 s; see {}",
                    etcd.dir.join("etcd.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// GET over HTTP/1.0; returns the body as text.
    async fn http_get(&self, path: &str) -> Result<String> {
        let body = http_get_bytes(self.client_port, path, Duration::from_secs(5)).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Scrapes /metrics: the value of every counter in `COUNTERS` (summed over labels).
    pub async fn counters(&self) -> Result<Counters> {
        let body = self.http_get("/metrics").await?;
        let mut out = BTreeMap::new();
        for line in body.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((name_labels, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let name = name_labels.split('{').next().unwrap_or(name_labels);
            if COUNTERS.contains(&name) {
                let v: f64 = value.parse().unwrap_or(0.0);
                *out.entry(name.to_string()).or_insert(0.0) += v;
            }
        }
        Ok(Counters(out))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// etcd counter values at one moment.
#[derive(Debug, Clone, Default)]
pub struct Counters(pub BTreeMap<String, f64>);

impl Counters {
    pub fn get(&self, name: &str) -> f64 {
        self.0.get(name).copied().unwrap_or(0.0)
    }

    /// `self - before`, counter by counter.
    pub fn since(&self, before: &Counters) -> Counters {
        Counters(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v - before.get(k)))
                .collect(),
        )
    }

    /// Write requests: Raft proposals committed. Every client Put, Txn with a
    /// write, DeleteRange and LeaseGrant/Revoke is one proposal and one WAL
    /// append (fsync). This is what the goal "≤ 3 etcd writes per chunk" counts.
    ///
    /// Not `etcd_mvcc_txn_total`: etcd 3.4 counts an internal MVCC transaction
    /// there only when it has more than one operation, and runs a client Txn as
    /// two (one reads the compares, one applies the ops), so a Ferry chunk Txn
    /// (2 compares, 2 ops) counts 2; a Txn of 1 compare and 1 put counts 0.
    pub fn write_requests(&self) -> f64 {
        self.get("etcd_server_proposals_committed_total")
    }

    /// Keys written: every put and every delete the MVCC store applied
    /// (a transaction with two puts counts two).
    pub fn keys_written(&self) -> f64 {
        self.get("etcd_mvcc_put_total") + self.get("etcd_mvcc_delete_total")
    }

    /// Mean WAL fsync time in ms.
    pub fn mean_fsync_ms(&self) -> f64 {
        let n = self.get("etcd_disk_wal_fsync_duration_seconds_count");
        if n == 0.0 {
            return 0.0;
        }
        self.get("etcd_disk_wal_fsync_duration_seconds_sum") * 1000.0 / n
    }
}

/// GET over HTTP/1.0 (no chunked encoding) from 127.0.0.1:`port`; returns the raw body.
async fn http_get_bytes(port: u16, path: &str, timeout: Duration) -> Result<Vec<u8>> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(timeout, s.read_to_end(&mut buf)).await??;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("malformed HTTP response")?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let ok = head.starts_with("HTTP/1.") && head.split_whitespace().nth(1) == Some("200");
    if !ok {
        bail!("GET {path}: {}", head.lines().next().unwrap_or(""));
    }
    Ok(buf[split + 4..].to_vec())
}

/// etcd's Go CPU profile (pprof protobuf, gzipped) over `secs` seconds.
pub async fn fetch_profile(port: u16, secs: u64) -> Result<Vec<u8>> {
    http_get_bytes(
        port,
        &format!("/debug/pprof/profile?seconds={secs}"),
        Duration::from_secs(secs + 30),
    )
    .await
}

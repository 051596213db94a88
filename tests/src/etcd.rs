//! Throwaway etcd clusters of one or more members on free loopback ports.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::net::free_ports;
use crate::sync::blocking;
use crate::text::tail;

/// Where Debian's etcd-server package puts the server.
const DEFAULT_ETCD_BIN: &str = "/usr/bin/etcd";

/// How long a new cluster (or a restarted member) may take to become healthy.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);

/// The etcd server binary: env `FERRY_ETCD_BIN`, else Debian's.
pub fn etcd_bin() -> PathBuf {
    std::env::var_os("FERRY_ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ETCD_BIN))
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Mutex<Option<Child>>,
}

/// An etcd cluster whose members are separate processes with data in a temp
/// dir; members can be killed and restarted. Dropping it kills every member.
pub struct EtcdCluster {
    dir: TempDir,
    initial_cluster: String,
    token: String,
    members: Vec<Member>,
}

impl EtcdCluster {
    /// Starts `members` members and waits until each reports healthy; panics
    /// with the reason (and how to install etcd) when it cannot.
    pub fn start(members: usize) -> Self {
        assert!(members > 0, "an etcd cluster needs at least one member");
        blocking(|| Self::start_blocking(members))
    }

    fn start_blocking(count: usize) -> Self {
        let bin = etcd_bin();
        if !bin.is_file() {
            panic!(
                "etcd is not installed: {} is missing. Run `sudo bash scripts/setup.sh` \
                 (or set FERRY_ETCD_BIN)",
                bin.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("ferry-etcd-")
            .tempdir()
            .expect("create a temp dir for etcd");
        let ports = free_ports(2 * count);
        let members: Vec<Member> = (0..count)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                child: Mutex::new(None),
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("ferry-test-{}-{}", std::process::id(), ports[0]);
        let cluster = EtcdCluster {
            dir,
            initial_cluster,
            token,
            members,
        };
        for i in 0..count {
            cluster.spawn_member(i);
        }
        for i in 0..count {
            cluster.wait_healthy(i);
        }
        cluster
    }

    fn member_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.members[i].name)
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    fn spawn_member(&self, i: usize) {
        let m = &self.members[i];
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("open etcd log file");
        let client_url = format!("http://127.0.0.1:{}", m.client_port);
        let peer_url = format!("http://127.0.0.1:{}", m.peer_port);
        let child = Command::new(etcd_bin())
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(self.member_dir(i))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", "new"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", etcd_bin().display()));
        *self.members[i]
            .child
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(child);
    }

    /// Client URLs of all members (`http://127.0.0.1:PORT`), killed ones included.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Client URL of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when the cluster has no members (never, by construction).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    /// True when member `i` answers `GET /health` with `"health":"true"`.
    pub fn is_healthy(&self, i: usize) -> bool {
        http_get(self.members[i].client_port, "/health")
            .map(|body| body.replace(' ', "").contains("\"health\":\"true\""))
            .unwrap_or(false)
    }

    /// Which member is the Raft leader right now, as member `i` sees it
    /// (`POST /v3/maintenance/status`); `None` if no running member knows.
    pub fn leader(&self) -> Option<usize> {
        let mut ids = Vec::new();
        let mut leader = None;
        for m in &self.members {
            let status = http_request(m.client_port, "POST", "/v3/maintenance/status", "{}");
            let member_id = status
                .as_deref()
                .and_then(|b| json_string_field(b, "member_id"));
            if leader.is_none() {
                leader = status
                    .as_deref()
                    .and_then(|b| json_string_field(b, "leader"));
            }
            ids.push(member_id);
        }
        let leader = leader?;
        ids.iter()
            .position(|id| id.as_deref() == Some(leader.as_str()))
    }

    /// Waits until member `i` is healthy; panics with its log on timeout or exit.
    pub fn wait_healthy(&self, i: usize) {
        blocking(|| {
            let deadline = Instant::now() + HEALTHY_TIMEOUT;
            while Instant::now() < deadline {
                if self.is_healthy(i) {
                    return;
                }
                if let Some(status) = self.exited(i) {
                    panic!(
                        "etcd member {i} exited ({status}) before becoming healthy; log:\n{}",
                        tail(&self.log(i), 30)
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            panic!(
                "etcd member {i} not healthy within {HEALTHY_TIMEOUT:?}; log:\n{}",
                tail(&self.log(i), 30)
            );
        })
    }

    fn exited(&self, i: usize) -> Option<std::process::ExitStatus> {
        let mut guard = self.members[i]
            .child
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            Some(child) => child.try_wait().ok().flatten(),
            None => None,
        }
    }

    /// Kills member `i` with SIGKILL and reaps it; its data dir stays.
    pub fn kill(&self, i: usize) {
        let child = self.members[i]
            .child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = blocking(|| child.wait());
        }
    }

    /// Sends `sig` to member `i` unless it is not running; false if that failed.
    fn signal(&self, i: usize, sig: libc::c_int) -> bool {
        // Holding the lock keeps the child from being reaped meanwhile.
        let mut guard = self.members[i]
            .child
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Some(child) = guard.as_mut() else {
            return true;
        };
        if child.try_wait().ok().flatten().is_some() {
            return true;
        }
        let Ok(pid) = libc::pid_t::try_from(child.id()) else {
            return false;
        };
        // SAFETY: plain kill(2) on our own unreaped child.
        unsafe { libc::kill(pid, sig) == 0 }
    }

    /// Asks member `i` to stop (SIGTERM); does not wait.
    pub fn terminate(&self, i: usize) {
        assert!(
            self.signal(i, libc::SIGTERM),
            "SIGTERM to etcd member {i} failed"
        );
    }

    /// Freezes member `i` (SIGSTOP): it holds its ports but answers nothing.
    pub fn freeze(&self, i: usize) {
        assert!(
            self.signal(i, libc::SIGSTOP),
            "SIGSTOP to etcd member {i} failed"
        );
    }

    /// Resumes member `i` after `freeze` (SIGCONT).
    pub fn thaw(&self, i: usize) {
        assert!(
            self.signal(i, libc::SIGCONT),
            "SIGCONT to etcd member {i} failed"
        );
    }

    /// A handle on member `i`.
    pub fn member(&self, i: usize) -> EtcdMember<'_> {
        assert!(
            i < self.members.len(),
            "etcd has {} members",
            self.members.len()
        );
        EtcdMember { cluster: self, i }
    }

    /// Restarts member `i` on its old ports and data (killing it first if it
    /// still runs) and waits until it is healthy again.
    pub fn restart(&self, i: usize) {
        self.signal(i, libc::SIGCONT);
        self.kill(i);
        self.spawn_member(i);
        self.wait_healthy(i);
    }

    /// Directory holding the members' data dirs and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// One member of an `EtcdCluster`: kill, terminate, freeze, thaw, restart,
/// and its log and health.
#[derive(Clone, Copy)]
pub struct EtcdMember<'a> {
    cluster: &'a EtcdCluster,
    i: usize,
}

impl EtcdMember<'_> {
    /// Its index in the cluster (`m{index}`).
    pub fn index(&self) -> usize {
        self.i
    }

    /// Its client URL.
    pub fn endpoint(&self) -> String {
        self.cluster.endpoint(self.i)
    }

    /// SIGKILL; its data dir stays.
    pub fn kill(&self) {
        self.cluster.kill(self.i);
    }

    /// SIGTERM; does not wait.
    pub fn terminate(&self) {
        self.cluster.terminate(self.i);
    }

    /// SIGSTOP.
    pub fn freeze(&self) {
        self.cluster.freeze(self.i);
    }

    /// SIGCONT.
    pub fn thaw(&self) {
        self.cluster.thaw(self.i);
    }

    /// Starts it again on its old ports and data and waits until it is healthy.
    pub fn restart(&self) {
        self.cluster.restart(self.i);
    }

    /// True when it answers `/health` healthy.
    pub fn is_healthy(&self) -> bool {
        self.cluster.is_healthy(self.i)
    }

    /// True when it is the Raft leader now.
    pub fn is_raft_leader(&self) -> bool {
        self.cluster.leader() == Some(self.i)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.cluster.log(self.i)
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.signal(i, libc::SIGCONT);
            if std::thread::panicking() {
                eprintln!(
                    "--- etcd member {i} log, last lines ---\n{}",
                    tail(&self.log(i), 15)
                );
            }
            self.kill(i);
        }
    }
}

/// A minimal HTTP/1.0 GET to `127.0.0.1:port`; returns the body, or `None`
/// when the server does not answer with a 200 within a second.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    http_request(port, "GET", path, "")
}

/// The string value of `"key":"value"` (or `"key":number`) in flat JSON text.
fn json_string_field(body: &str, key: &str) -> Option<String> {
    let needle = format!("\"{key}\":");
    let rest = body.split_once(&needle)?.1.trim_start();
    let rest = rest.strip_prefix('"').unwrap_or(rest);
    let end = rest.find(['"', ',', '}'])?;
    Some(rest[..end].to_string())
}

/// A minimal HTTP/1.0 request with a JSON `body` to `127.0.0.1:port`;
/// returns the response body, or `None` unless it is a 200 within a second.
pub fn http_request(port: u16, method: &str, path: &str, body: &str) -> Option<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(1)))
        .ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status_line = head.lines().next()?;
    if status_line.split_whitespace().nth(1)? != "200" {
        return None;
    }
    Some(body.to_string())
}

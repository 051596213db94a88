//! Loopback ports: finding free ones and waiting for a server to listen.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rand::Rng;

/// Lowest port handed out: below it are well-known and registered services.
const LOWEST_PORT: u16 = 10_000;

/// Picks tried before falling back to a kernel-assigned port.
const MAX_PICKS: usize = 10_000;

/// First port of the kernel's ephemeral range, which outgoing connections
/// take their local ports from.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Ports this process has handed out already (tests of one binary run in
/// parallel threads).
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Returns `n` distinct loopback ports that were free a moment ago.
///
/// They are picked at random below the kernel's ephemeral range, so the
/// local port of some process's outgoing connection cannot take one between
/// the pick and the server's bind (a kernel-assigned port can: that made an
/// etcd member fail with "address already in use" under a busy chaos test).
/// A port is never handed out twice by one process; all listeners are held
/// until every port is chosen.
pub fn free_ports(n: usize) -> Vec<u16> {
    let top = ephemeral_start();
    let mut given = handed_out().lock().unwrap_or_else(|p| p.into_inner());
    let mut rng = rand::rng();
    let mut listeners = Vec::with_capacity(n);
    let mut ports = Vec::with_capacity(n);
    let mut picks = 0;
    while ports.len() < n {
        let port = if top > LOWEST_PORT + 1_000 && picks < MAX_PICKS {
            picks += 1;
            rng.random_range(LOWEST_PORT..top)
        } else {
            0
        };
        if port != 0 && given.contains(&port) {
            continue;
        }
        let Ok(l) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) else {
            continue;
        };
        let port = l
            .local_addr()
            .expect("local_addr of a bound listener")
            .port();
        if given.insert(port) {
            ports.push(port);
        }
        listeners.push(l);
    }
    ports
}

/// Returns one loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// True when something accepts TCP connections on `127.0.0.1:port`.
pub fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Waits until `127.0.0.1:port` accepts TCP connections; false on timeout.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if port_open(port) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

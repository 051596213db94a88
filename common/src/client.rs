//! A client of the coordinator that knows every coordinator replica and moves
//! to another when the one it uses is down or not the leader.
//!
//! Each host in the address list is resolved to all its addresses, and each
//! address is a replica of its own (a Kubernetes headless Service, or a
//! Service whose readiness is not enforced, names every coordinator pod). A
//! follower's refusal carries the leader's address (metadata
//! [`LEADER_HINT_KEY`]); [`Coordinators::failover`] jumps straight to it.
//!
//! Over `https://`, a replica reached by an IP address that a host name
//! resolved to verifies the server certificate against that host name (the
//! Service's name, which the coordinators' certificate carries).

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tonic::codegen::http::Uri;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::credentials::{BearerToken, ChannelFactory, ClientSecurity};

use crate::proto::job_service_client::JobServiceClient;
use crate::proto::worker_service_client::WorkerServiceClient;
use crate::timing::REPLICA_DOWN_FOR;

/// gRPC metadata key in which a follower coordinator names the leader's
/// advertised address when it answers UNAVAILABLE.
pub const LEADER_HINT_KEY: &str = "x-ferry-leader";

/// A coordinator address list that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid coordinator address {url:?}: {reason}; pass --coordinator http://HOST:PORT[,http://HOST:PORT…]")]
pub struct AddressError {
    /// The address.
    pub url: String,
    /// Why.
    pub reason: String,
}

/// A JobService client that sends the bearer token, if any, on every call.
pub type JobClient = JobServiceClient<InterceptedService<Channel, BearerToken>>;

/// Makes the lazy channels of replicas, plain or TLS, with one request timeout.
struct Dialer {
    factory: Mutex<ChannelFactory>,
    request_timeout: Option<Duration>,
}

impl Dialer {
    /// A channel to `url`; over TLS the certificate must name `server_name`
    /// when given.
    fn channel(&self, url: &str, server_name: Option<&str>) -> Result<Channel, AddressError> {
        let mut factory = self.factory.lock().unwrap_or_else(|p| p.into_inner());
        factory
            .lazy_as(url, server_name, self.request_timeout)
            .map_err(|reason| AddressError {
                url: url.to_string(),
                reason,
            })
    }
}

/// One coordinator replica: an address and its (lazily connected) channel.
struct Replica {
    url: String,
    channel: Channel,
    /// Set when a call could not reach it: skipped (and so are hints naming
    /// it) until then.
    down_until: Option<Instant>,
}

impl Replica {
    fn new(url: String, channel: Channel) -> Self {
        Self {
            url,
            channel,
            down_until: None,
        }
    }

    fn is_down(&self, now: Instant) -> bool {
        self.down_until.is_some_and(|t| now < t)
    }
}

/// The replicas known now and the one in use.
struct Replicas {
    list: Vec<Replica>,
    current: usize,
    /// Moves away from a replica since the last re-resolution.
    misses: usize,
}

/// Channels to every coordinator replica, with the one believed to lead.
pub struct Coordinators {
    /// The addresses as given (normalized), for messages and re-resolution.
    seeds: Vec<String>,
    dialer: Arc<Dialer>,
    token: BearerToken,
    replicas: Arc<RwLock<Replicas>>,
    resolving: Arc<AtomicBool>,
}

impl Coordinators {
    /// Parses a comma-separated address list and resolves each host to its
    /// addresses; channels connect on first use.
    ///
    /// Resolution here is a blocking lookup, once, at construction (as a
    /// connect would do); later re-resolutions run in the background.
    pub fn new(list: &str, request_timeout: Option<Duration>) -> Result<Self, AddressError> {
        Self::with_security(list, request_timeout, &ClientSecurity::default())
    }

    /// Like `new`, presenting `security`'s TLS files on `https://` addresses
    /// and its token on JobService calls.
    pub fn with_security(
        list: &str,
        request_timeout: Option<Duration>,
        security: &ClientSecurity,
    ) -> Result<Self, AddressError> {
        let seeds: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(normalize)
            .collect();
        if seeds.is_empty() {
            return Err(AddressError {
                url: list.into(),
                reason: "no address given".into(),
            });
        }
        for url in &seeds {
            split_url(url)?;
        }
        let dialer = Arc::new(Dialer {
            factory: Mutex::new(ChannelFactory::new(&security.tls)),
            request_timeout,
        });
        let mut urls = Vec::new();
        for seed in &seeds {
            let addrs = split_url(seed)
                .ok()
                .filter(|(_, host, _)| host.parse::<std::net::IpAddr>().is_err())
                .and_then(|(_, host, port)| (host.as_str(), port).to_socket_addrs().ok())
                .map(|a| a.collect::<Vec<_>>())
                .unwrap_or_default();
            urls.extend(replica_urls(seed, &addrs));
        }
        dedup(&mut urls);
        let mut replicas = Vec::with_capacity(urls.len());
        for (url, name) in urls {
            let channel = dialer.channel(&url, name.as_deref())?;
            replicas.push(Replica::new(url, channel));
        }
        Ok(Self {
            seeds,
            dialer,
            token: security.token.clone(),
            replicas: Arc::new(RwLock::new(Replicas {
                list: replicas,
                current: 0,
                misses: 0,
            })),
            resolving: Arc::new(AtomicBool::new(false)),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Replicas> {
        self.replicas.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Replicas> {
        self.replicas.write().unwrap_or_else(|p| p.into_inner())
    }

    /// How many replicas are known now.
    pub fn len(&self) -> usize {
        self.read().list.len()
    }

    /// Whether no replica is known (never, once built).
    pub fn is_empty(&self) -> bool {
        self.read().list.is_empty()
    }

    /// The address in use.
    pub fn current_url(&self) -> String {
        let r = self.read();
        r.list[r.current % r.list.len()].url.clone()
    }

    /// The addresses as given, for messages.
    pub fn urls(&self) -> &[String] {
        &self.seeds
    }

    /// Every replica address known now (resolved, plus leaders hinted at).
    pub fn replica_urls(&self) -> Vec<String> {
        self.read().list.iter().map(|r| r.url.clone()).collect()
    }

    fn channel(&self) -> Channel {
        let r = self.read();
        r.list[r.current % r.list.len()].channel.clone()
    }

    /// A JobService client on the address in use.
    pub fn jobs(&self) -> JobClient {
        JobServiceClient::with_interceptor(self.channel(), self.token.clone())
    }

    /// A WorkerService client on the address in use.
    pub fn workers(&self) -> WorkerServiceClient<Channel> {
        WorkerServiceClient::new(self.channel())
    }

    /// Moves on after `status` (UNAVAILABLE: down, or not the leader): to the
    /// leader the refusal names, else to the next replica. A replica the call
    /// could not reach at all (a transport error, not an answer) is marked
    /// down for a while: it is skipped, and so is a hint that names it (a
    /// follower names a dead leader until its election lease expires).
    pub fn failover(&self, status: &tonic::Status) {
        let now = Instant::now();
        let mut r = self.write();
        if std::error::Error::source(status).is_some() {
            let i = r.current % r.list.len();
            r.list[i].down_until = Some(now + REPLICA_DOWN_FOR);
        }
        match leader_hint(status) {
            Some(leader) => self.jump_to(&mut r, &leader, now),
            None => advance(&mut r, now),
        }
        self.missed(&mut r);
    }

    /// Moves to the next replica not known to be down. Once every replica
    /// has been left since the last resolution, the host names are resolved
    /// again in the background (pods come and go).
    pub fn rotate(&self) {
        let mut r = self.write();
        advance(&mut r, Instant::now());
        self.missed(&mut r);
    }

    /// Makes `url` (a leader's advertised address) the replica in use, adding
    /// it when it is not known yet; a replica known to be down, or an unusable
    /// address, is skipped by moving to the next replica.
    fn jump_to(&self, r: &mut Replicas, url: &str, now: Instant) {
        let url = normalize(url);
        if let Some(i) = r.list.iter().position(|x| x.url == url) {
            if r.list[i].is_down(now) {
                advance(r, now);
            } else {
                r.current = i;
            }
            return;
        }
        let name = hinted_server_name(&url, &self.seeds);
        match self.dialer.channel(&url, name.as_deref()) {
            Ok(channel) => {
                r.list.push(Replica::new(url, channel));
                r.current = r.list.len() - 1;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the leader hint is not a usable address");
                advance(r, now);
            }
        }
    }

    /// Counts a move away from a replica; after a full round, re-resolves.
    fn missed(&self, r: &mut Replicas) {
        r.misses += 1;
        if r.misses >= r.list.len().max(1) {
            r.misses = 0;
            self.resolve_in_background();
        }
    }

    /// Resolves the host names again and replaces the replica list, unless a
    /// resolution is already running or there is no runtime to run it on.
    fn resolve_in_background(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.resolving.swap(true, Ordering::AcqRel) {
            return;
        }
        let seeds = self.seeds.clone();
        let replicas = Arc::clone(&self.replicas);
        let resolving = Arc::clone(&self.resolving);
        let dialer = Arc::clone(&self.dialer);
        handle.spawn(async move {
            let mut urls = Vec::new();
            for seed in &seeds {
                urls.extend(resolve(seed).await);
            }
            dedup(&mut urls);
            let mut r = replicas.write().unwrap_or_else(|p| p.into_inner());
            let in_use = r.list[r.current % r.list.len()].url.clone();
            let mut old: Vec<Replica> = std::mem::take(&mut r.list);
            let mut list = Vec::with_capacity(urls.len());
            for (url, name) in urls {
                if let Some(i) = old.iter().position(|x| x.url == url) {
                    list.push(old.swap_remove(i));
                } else if let Ok(channel) = dialer.channel(&url, name.as_deref()) {
                    list.push(Replica::new(url, channel));
                }
            }
            // keep the replica in use (perhaps a hinted leader) until it fails
            if let Some(i) = old.iter().position(|x| x.url == in_use) {
                list.push(old.swap_remove(i));
            }
            if list.is_empty() {
                list = old;
            }
            r.current = list.iter().position(|x| x.url == in_use).unwrap_or(0);
            r.list = list;
            drop(r);
            resolving.store(false, Ordering::Release);
        });
    }
}

/// Moves to the next replica not marked down; stays when every other one is
/// down and this one is not; moves to the next when all are down.
fn advance(r: &mut Replicas, now: Instant) {
    let n = r.list.len();
    if n <= 1 {
        return;
    }
    let current = r.current % n;
    let up = (1..n)
        .map(|k| (current + k) % n)
        .find(|&i| !r.list[i].is_down(now));
    r.current = match up {
        Some(i) => i,
        None if !r.list[current].is_down(now) => current,
        None => (current + 1) % n,
    };
}

/// The leader address a follower's refusal names in its metadata, if any.
pub fn leader_hint(status: &tonic::Status) -> Option<String> {
    let value = status.metadata().get(LEADER_HINT_KEY)?.to_str().ok()?;
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_string())
}

/// Scheme, host and port of a coordinator URL (port defaulting by scheme).
fn split_url(url: &str) -> Result<(String, String, u16), AddressError> {
    let bad = |reason: &str| AddressError {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let uri: Uri = url
        .parse()
        .map_err(|e: tonic::codegen::http::uri::InvalidUri| bad(&e.to_string()))?;
    let scheme = uri.scheme_str().unwrap_or("http").to_string();
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    Ok((scheme, host, port))
}

/// A replica's URL and, when it is an address its seed's host name resolved
/// to, that name (for TLS verification).
type ReplicaUrl = (String, Option<String>);

/// The replica URLs of `seed` given the addresses its host resolved to: the
/// seed itself when it names one address (or none could be found), else one
/// URL per address, carrying the seed's host name.
fn replica_urls(seed: &str, addrs: &[SocketAddr]) -> Vec<ReplicaUrl> {
    let mut distinct: Vec<SocketAddr> = Vec::new();
    for a in addrs {
        if !distinct.contains(a) {
            distinct.push(*a);
        }
    }
    if distinct.len() <= 1 {
        return vec![(seed.to_string(), None)];
    }
    let Ok((scheme, host, _)) = split_url(seed) else {
        return vec![(seed.to_string(), None)];
    };
    distinct
        .iter()
        .map(|a| (format!("{scheme}://{a}"), Some(host.clone())))
        .collect()
}

/// The name to verify a hinted leader's certificate against: a leader
/// advertising an IP address is one of the replicas behind the first seed
/// that is a host name, so it presents that name's certificate.
fn hinted_server_name(url: &str, seeds: &[String]) -> Option<String> {
    let (_, host, _) = split_url(url).ok()?;
    host.parse::<std::net::IpAddr>().ok()?;
    seeds
        .iter()
        .filter_map(|s| split_url(s).ok())
        .map(|(_, h, _)| h)
        .find(|h| h.parse::<std::net::IpAddr>().is_err())
}

/// Resolves `seed`'s host without blocking the runtime.
async fn resolve(seed: &str) -> Vec<ReplicaUrl> {
    let Ok((_, host, port)) = split_url(seed) else {
        return vec![(seed.to_string(), None)];
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return vec![(seed.to_string(), None)];
    }
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(a) => a.collect(),
        Err(_) => Vec::new(),
    };
    replica_urls(seed, &addrs)
}

/// Removes repeated URLs, keeping the first of each.
fn dedup(urls: &mut Vec<ReplicaUrl>) {
    let mut seen = std::collections::HashSet::new();
    urls.retain(|(u, _)| seen.insert(u.clone()));
}

/// Accepts `host:port` as well as `http://host:port`.
fn normalize(url: &str) -> String {
    if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

/// Whether a status means "try another coordinator": this one is down,
/// unreachable, not the leader, or did not answer within the call's own
/// deadline (a frozen or vanished leader; tonic reports that as CANCELLED
/// with `TimeoutExpired` as its cause). Decided by the code and the typed
/// cause, never by the message.
pub fn is_failover_status(status: &tonic::Status) -> bool {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown => true,
        tonic::Code::Cancelled => timed_out(status),
        _ => false,
    }
}

/// Whether the status's cause chain holds tonic's client-side deadline error.
fn timed_out(status: &tonic::Status) -> bool {
    let mut cause = std::error::Error::source(status);
    while let Some(e) = cause {
        if e.is::<tonic::TimeoutExpired>() {
            return true;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_addresses_become_several_replicas() {
        let a: SocketAddr = "10.0.0.1:50051".parse().unwrap();
        let b: SocketAddr = "[fd00::2]:50051".parse().unwrap();
        let name = Some("coord".to_string());
        assert_eq!(
            replica_urls("https://coord:50051", &[a, b, a]),
            vec![
                ("https://10.0.0.1:50051".to_string(), name.clone()),
                ("https://[fd00::2]:50051".to_string(), name)
            ]
        );
        // one address (a ClusterIP Service): the name itself stays
        assert_eq!(
            replica_urls("http://coord:50051", &[a]),
            vec![("http://coord:50051".to_string(), None)]
        );
        assert_eq!(
            replica_urls("http://coord:50051", &[]),
            vec![("http://coord:50051".to_string(), None)]
        );
        let seeds = ["https://coord:50051".to_string()];
        assert_eq!(
            hinted_server_name("https://10.0.0.9:50051", &seeds).as_deref(),
            Some("coord")
        );
        assert_eq!(hinted_server_name("https://coord-0:50051", &seeds), None);
    }

    #[test]
    fn urls_split_with_default_ports() {
        assert_eq!(
            split_url("http://coord").unwrap(),
            ("http".into(), "coord".into(), 80)
        );
        assert_eq!(
            split_url("https://[::1]:7000").unwrap(),
            ("https".into(), "::1".into(), 7000)
        );
        assert!(Coordinators::new("http://", None).is_err());
    }

    #[test]
    fn the_leader_hint_is_read_from_metadata() {
        let mut s = tonic::Status::unavailable("not the leader coordinator");
        assert_eq!(leader_hint(&s), None);
        s.metadata_mut()
            .insert(LEADER_HINT_KEY, "http://10.0.0.7:50051".parse().unwrap());
        assert_eq!(leader_hint(&s).as_deref(), Some("http://10.0.0.7:50051"));
    }

    #[tokio::test]
    async fn a_replica_that_never_answers_is_a_failover() {
        // accepts connections (the kernel's backlog) and never answers, as a
        // frozen leader does
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", silent.local_addr().unwrap());
        let c = Coordinators::new(&url, Some(Duration::from_millis(300))).unwrap();
        let err = c
            .jobs()
            .list_jobs(crate::proto::ListJobsRequest { limit: 0 })
            .await
            .expect_err("nobody answers");
        assert_eq!(err.code(), tonic::Code::Cancelled, "{err:?}");
        assert!(is_failover_status(&err), "a call's own deadline: {err:?}");
        // a cancellation that is not our deadline is no reason to move
        assert!(!is_failover_status(&tonic::Status::cancelled("cancelled")));
        drop(silent);
    }

    #[tokio::test]
    async fn an_unreachable_replica_and_hints_naming_it_are_skipped() {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dead = format!("http://127.0.0.1:{closed}");
        let c = Coordinators::new(&format!("{dead},http://127.0.0.1:2"), None).unwrap();
        let err = c
            .jobs()
            .list_jobs(crate::proto::ListJobsRequest { limit: 0 })
            .await
            .expect_err("nothing listens there");
        assert!(
            std::error::Error::source(&err).is_some(),
            "a transport failure carries its cause: {err:?}"
        );
        c.failover(&err);
        assert_eq!(c.current_url(), "http://127.0.0.1:2");
        // a follower still naming the dead leader: stay here
        let mut s = tonic::Status::unavailable("not the leader coordinator");
        s.metadata_mut()
            .insert(LEADER_HINT_KEY, dead.parse().unwrap());
        c.failover(&s);
        assert_eq!(c.current_url(), "http://127.0.0.1:2");
    }

    #[tokio::test]
    async fn failover_jumps_to_the_hinted_leader_and_rotation_cycles() {
        let c = Coordinators::new("http://127.0.0.1:1,http://127.0.0.1:2", None).unwrap();
        assert_eq!(c.len(), 2);
        c.rotate();
        assert_eq!(c.current_url(), "http://127.0.0.1:2");
        c.rotate();
        assert_eq!(c.current_url(), "http://127.0.0.1:1");
        let mut s = tonic::Status::unavailable("not the leader coordinator");
        s.metadata_mut()
            .insert(LEADER_HINT_KEY, "http://127.0.0.1:3".parse().unwrap());
        c.failover(&s);
        assert_eq!(c.current_url(), "http://127.0.0.1:3");
        assert_eq!(c.len(), 3);
        s.metadata_mut()
            .insert(LEADER_HINT_KEY, "http://127.0.0.1:2".parse().unwrap());
        c.failover(&s);
        assert_eq!(c.current_url(), "http://127.0.0.1:2");
        assert_eq!(c.len(), 3, "a known replica is not added twice");
        c.failover(&tonic::Status::unavailable("connection refused"));
        assert_ne!(c.current_url(), "http://127.0.0.1:2");
        assert_eq!(c.urls(), ["http://127.0.0.1:1", "http://127.0.0.1:2"]);
    }
}

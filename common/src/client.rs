//! A client of the coordinator that knows every coordinator address and moves
//! to the next one when the one it uses is down or not the leader.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::credentials::{BearerToken, ChannelFactory, ClientSecurity};
use crate::proto::job_service_client::JobServiceClient;
use crate::proto::worker_service_client::WorkerServiceClient;

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

/// Channels to every coordinator replica, with the one believed to lead.
pub struct Coordinators {
    urls: Vec<String>,
    channels: Vec<Channel>,
    current: AtomicUsize,
    token: BearerToken,
}

impl Coordinators {
    /// Parses a comma-separated address list; channels connect on first use.
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
        let urls: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(normalize)
            .collect();
        if urls.is_empty() {
            return Err(AddressError {
                url: list.into(),
                reason: "no address given".into(),
            });
        }
        let mut channels = Vec::with_capacity(urls.len());
        let mut factory = ChannelFactory::new(&security.tls);
        for url in &urls {
            let channel = factory
                .lazy(url, request_timeout)
                .map_err(|reason| AddressError {
                    url: url.clone(),
                    reason,
                })?;
            channels.push(channel);
        }
        Ok(Self {
            urls,
            channels,
            current: AtomicUsize::new(0),
            token: security.token.clone(),
        })
    }

    /// How many addresses there are.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    /// Whether the list is empty (never, once built).
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// The address in use.
    pub fn current_url(&self) -> &str {
        &self.urls[self.current.load(Ordering::Relaxed) % self.urls.len()]
    }

    /// Every address, for messages.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    fn channel(&self) -> Channel {
        self.channels[self.current.load(Ordering::Relaxed) % self.channels.len()].clone()
    }

    /// A JobService client on the address in use.
    pub fn jobs(&self) -> JobClient {
        JobServiceClient::with_interceptor(self.channel(), self.token.clone())
    }

    /// A WorkerService client on the address in use.
    pub fn workers(&self) -> WorkerServiceClient<Channel> {
        WorkerServiceClient::new(self.channel())
    }

    /// Moves to the next address (after UNAVAILABLE: down, or not the leader).
    pub fn rotate(&self) {
        if self.urls.len() > 1 {
            self.current.fetch_add(1, Ordering::Relaxed);
        }
    }
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
/// unreachable, or not the leader. Decided by the code alone.
pub fn is_failover_status(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown
    )
}

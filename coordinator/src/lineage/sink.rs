//! POSTs lineage events to `$OPENLINEAGE_URL/api/v1/lineage` with a deadline:
//! a slow or dead collector costs a warning, never a blocked or failed job.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Where events go (its Debug form hides the API key).
#[derive(Clone)]
pub struct Endpoint {
    /// Full URL events are POSTed to.
    pub url: hyper::Uri,
    /// Bearer token (`OPENLINEAGE_API_KEY`), if any.
    pub api_key: Option<String>,
    /// Deadline of one POST.
    pub timeout: Duration,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Why one POST failed.
#[derive(Debug, thiserror::Error)]
enum PostError {
    #[error("cannot build the request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("{0}")]
    Transport(#[from] hyper_util::client::legacy::Error),
    #[error("the collector answered HTTP {0}")]
    Status(hyper::StatusCode),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// POSTs events to one endpoint, warning (once per event) when one is not delivered.
pub struct Poster {
    client: Client<HttpConnector, Full<Bytes>>,
    endpoint: Endpoint,
    failing: bool,
}

impl Poster {
    /// A poster for `endpoint`.
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            endpoint,
            failing: false,
        }
    }

    /// Sends one event; a failure is logged, never returned: lineage is best effort.
    pub async fn send(&mut self, event: &Value) {
        match post(&self.client, &self.endpoint, event).await {
            Ok(()) => {
                if self.failing {
                    tracing::info!(url = %self.endpoint.url, "openlineage endpoint reachable again");
                }
                self.failing = false;
            }
            Err(e) => {
                tracing::warn!(url = %self.endpoint.url, error = %e, event = %event["eventType"], run = %event["run"]["runId"], "openlineage event not delivered; the job is not affected");
                self.failing = true;
            }
        }
    }
}

async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    endpoint: &Endpoint,
    event: &Value,
) -> Result<(), PostError> {
    let mut req = hyper::Request::post(endpoint.url.clone())
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(key) = &endpoint.api_key {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {key}"));
    }
    let req = req.body(Full::new(Bytes::from(event.to_string())))?;
    let send = async {
        let resp = client.request(req).await?;
        let status = resp.status();
        // drain the body so the connection can be reused
        let _ = resp.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(PostError::Status(status))
        }
    };
    tokio::time::timeout(endpoint.timeout, send)
        .await
        .map_err(|_| PostError::Timeout(endpoint.timeout))?
}

//! OpenTelemetry traces over OTLP/gRPC, configured only by the standard
//! variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`; unset:
//! no traces), `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER` (+ `…_ARG`) and
//! `OTEL_RESOURCE_ATTRIBUTES`. Context travels as W3C `traceparent`.
//!
//! A job's own span outlives any one coordinator (a leader may die mid-job),
//! so its ids are fixed when the job is submitted and kept with the job; the
//! leader that ends the job exports it under those ids (`export_span`).

use std::cell::Cell;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt, Tracer, TracerProvider,
};
use opentelemetry::{global, Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tonic::metadata::{KeyRef, MetadataKey, MetadataMap, MetadataValue};

use crate::timing::OTLP_PROBE_TIMEOUT;

/// The variables that turn traces on, in the order they are read.
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// Name of the tracer (the instrumentation scope) of every Ferry span.
pub const TRACER: &str = "ferry";

// The span id the id generator hands out next on this thread (see `export_span`).
thread_local! {
    static NEXT_SPAN_ID: Cell<Option<SpanId>> = const { Cell::new(None) };
}

/// Random ids, except where `export_span` fixes the next span id on this thread.
#[derive(Debug, Default)]
struct FixableIds(RandomIdGenerator);

impl IdGenerator for FixableIds {
    fn new_trace_id(&self) -> opentelemetry::trace::TraceId {
        self.0.new_trace_id()
    }
    fn new_span_id(&self) -> SpanId {
        NEXT_SPAN_ID
            .with(Cell::take)
            .unwrap_or_else(|| self.0.new_span_id())
    }
}

/// The span exporter of a process.
pub struct TraceExporter {
    provider: SdkTracerProvider,
    endpoint: String,
}

impl TraceExporter {
    /// Builds the OTLP exporter when an endpoint variable is set; None when
    /// traces are off. Must run inside the Tokio runtime (the gRPC channel
    /// lives there).
    pub fn from_env(service: &str) -> Option<Self> {
        let endpoint = ENDPOINT_VARS
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|e| !e.trim().is_empty()))?;
        let exporter = match opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                // the log subscriber is not installed yet
                eprintln!(
                    "warning: cannot set up the OTLP exporter for {endpoint}: {e}; traces are off, the copy goes on"
                );
                return None;
            }
        };
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_id_generator(FixableIds::default())
            .with_resource(resource(service))
            .build();
        global::set_tracer_provider(provider.clone());
        Some(Self { provider, endpoint })
    }

    /// The tracer spans are recorded with.
    pub fn tracer(&self) -> SdkTracer {
        self.provider.tracer(TRACER)
    }

    /// Warns, without holding up start-up, when the endpoint does not accept
    /// connections: spans are then dropped, and the copy goes on.
    pub fn warn_if_unreachable(&self) {
        let endpoint = self.endpoint.clone();
        let Some(addr) = host_port(&endpoint) else {
            tracing::warn!(%endpoint, "OTLP endpoint is not a URL like http://HOST:PORT: spans will be dropped; the copy goes on");
            return;
        };
        tokio::spawn(async move {
            let connect = tokio::net::TcpStream::connect(addr.as_str());
            match tokio::time::timeout(OTLP_PROBE_TIMEOUT, connect).await {
                Ok(Ok(_)) => tracing::info!(%endpoint, "exporting traces over OTLP"),
                Ok(Err(e)) => {
                    tracing::warn!(%endpoint, error = %e, "OTLP endpoint unreachable: spans are dropped until it answers; the copy goes on")
                }
                Err(_) => {
                    tracing::warn!(%endpoint, "OTLP endpoint did not answer in time: spans are dropped until it answers; the copy goes on")
                }
            }
        });
    }

    /// Exports the spans still buffered and stops the exporter.
    pub async fn shutdown(self) {
        let provider = self.provider;
        let done = tokio::task::spawn_blocking(move || provider.shutdown());
        if let Ok(Err(e)) = done.await {
            tracing::warn!(error = %e, "spans not flushed at shutdown");
        }
    }
}

/// `HOST:PORT` of an endpoint URL (default port 4317, OTLP/gRPC's).
fn host_port(endpoint: &str) -> Option<String> {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split('/').next().filter(|a| !a.is_empty())?;
    if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        Some(authority.to_string())
    } else {
        Some(format!("{authority}:4317"))
    }
}

/// The resource: `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME` when
/// set, else `service.name` = `service`.
fn resource(service: &str) -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|s| !s.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| {
            a.split(',')
                .any(|kv| kv.trim().starts_with("service.name="))
        });
    let builder = Resource::builder();
    if named {
        builder.build()
    } else {
        builder.with_service_name(service.to_string()).build()
    }
}

/// Makes W3C trace context (`traceparent`, `tracestate`) the propagation format.
pub fn install_propagator() {
    global::set_text_map_propagator(TraceContextPropagator::new());
}

/// A fresh random span id.
pub fn new_span_id() -> SpanId {
    loop {
        let id = SpanId::from_bytes(rand::random::<[u8; 8]>());
        if id != SpanId::INVALID {
            return id;
        }
    }
}

/// The context of a span `span_id` that is a child of `parent`'s span, in
/// its trace and with its sampling decision; None when `parent` carries no
/// valid span (traces were off).
pub fn child_of(parent: &Context, span_id: SpanId) -> Option<Context> {
    let p = parent.span().span_context().clone();
    if !p.is_valid() {
        return None;
    }
    let sc = SpanContext::new(
        p.trace_id(),
        span_id,
        p.trace_flags(),
        true,
        p.trace_state().clone(),
    );
    Some(Context::new().with_remote_span_context(sc))
}

/// The context as W3C headers (empty when it carries no valid span).
pub fn to_carrier(cx: &Context) -> HashMap<String, String> {
    let mut map = HashMap::new();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(cx, &mut map);
    }
    map
}

/// The context carried by W3C headers (an empty context when they carry none).
pub fn from_carrier(map: &HashMap<String, String>) -> Context {
    if map.is_empty() {
        return Context::new();
    }
    TraceContextPropagator::new().extract(map)
}

/// The context a process was started in: the `TRACEPARENT` (and
/// `TRACESTATE`) environment variables, as CI systems and workflow tools
/// pass a trace to the commands they run.
pub fn from_environment() -> Context {
    let mut map = HashMap::new();
    for (var, key) in [("TRACEPARENT", "traceparent"), ("TRACESTATE", "tracestate")] {
        if let Ok(v) = std::env::var(var) {
            map.insert(key.to_string(), v);
        }
    }
    from_carrier(&map)
}

/// The context a gRPC request carries in its metadata (`traceparent`).
pub fn from_metadata(metadata: &MetadataMap) -> Context {
    TraceContextPropagator::new().extract(&MetadataCarrier(metadata))
}

/// Puts `cx` into gRPC request metadata as `traceparent`/`tracestate`.
pub fn inject_metadata(cx: &Context, metadata: &mut MetadataMap) {
    for (k, v) in to_carrier(cx) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(k.as_bytes()),
            MetadataValue::try_from(v.as_str()),
        ) {
            metadata.insert(key, value);
        }
    }
}

struct MetadataCarrier<'a>(&'a MetadataMap);

impl Extractor for MetadataCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .map(|k| match k {
                KeyRef::Ascii(k) => k.as_str(),
                KeyRef::Binary(k) => k.as_str(),
            })
            .collect()
    }
}

/// `(trace_id, span_id)` in hex of the span the current code runs in, for log lines.
pub fn current_ids() -> Option<(String, String)> {
    Context::map_current(|cx| {
        let sc = cx.span().span_context().clone();
        sc.is_valid()
            .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
    })
}

/// A span that has already ended, exported under an id chosen earlier.
pub struct FinishedSpan<'a> {
    /// Span name.
    pub name: &'static str,
    /// Its id (kept with the job since submission).
    pub span_id: SpanId,
    /// Its parent (trace and sampling decision come from there).
    pub parent: &'a Context,
    /// Start time.
    pub start: SystemTime,
    /// End time.
    pub end: SystemTime,
    /// Attributes (never a secret or a connection URL).
    pub attributes: Vec<KeyValue>,
    /// Set when the work failed: a short class, never a message.
    pub error: Option<&'static str>,
}

/// Exports `span` through the process's tracer; does nothing when traces are off.
pub fn export_span(span: FinishedSpan<'_>) {
    if !span.parent.span().span_context().is_valid() {
        return;
    }
    let tracer = global::tracer(TRACER);
    let builder = SpanBuilder::from_name(span.name)
        .with_kind(SpanKind::Internal)
        .with_start_time(span.start)
        .with_attributes(span.attributes);
    NEXT_SPAN_ID.with(|c| c.set(Some(span.span_id)));
    let mut s = tracer.build_with_context(builder, span.parent);
    NEXT_SPAN_ID.with(|c| c.set(None));
    if let Some(class) = span.error {
        opentelemetry::trace::Span::set_status(&mut s, Status::error(class));
    }
    opentelemetry::trace::Span::end_with_timestamp(&mut s, span.end);
}

/// Milliseconds since the Unix epoch as a time.
pub fn unix_ms(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{TraceFlags, TraceId};

    #[test]
    fn endpoints_give_host_and_port() {
        assert_eq!(
            host_port("http://127.0.0.1:4317").as_deref(),
            Some("127.0.0.1:4317")
        );
        assert_eq!(
            host_port("https://collector/v1").as_deref(),
            Some("collector:4317")
        );
    }

    #[test]
    fn a_child_context_round_trips_through_headers() {
        let parent_sc = SpanContext::new(
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            SpanId::from_hex("b7ad6b7169203331").unwrap(),
            TraceFlags::SAMPLED,
            true,
            Default::default(),
        );
        let parent = Context::new().with_remote_span_context(parent_sc.clone());
        let id = new_span_id();
        let child = child_of(&parent, id).unwrap();
        let back = from_carrier(&to_carrier(&child));
        let sc = back.span().span_context().clone();
        assert_eq!(sc.trace_id(), parent_sc.trace_id());
        assert_eq!(sc.span_id(), id);
        assert!(sc.is_sampled());
        assert!(child_of(&Context::new(), id).is_none());
        assert!(to_carrier(&Context::new()).is_empty());
    }
}

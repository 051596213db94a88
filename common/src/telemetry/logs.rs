//! Log lines on stderr: the text format operators grep (`2026-11-25T07:00:00Z
//! INFO message key=value`) or, with `FERRY_LOG_FORMAT=json`, one JSON object
//! per line with `trace_id`/`span_id` when the line belongs to a traced span.
//! The guide's lines keep their wording in both: only the framing differs.

use std::fmt;

use opentelemetry_sdk::trace::SdkTracer;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::ConfigError;

/// The variable choosing the log format.
pub const LOG_FORMAT_VAR: &str = "FERRY_LOG_FORMAT";

/// How log lines are framed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-11-25T07:00:00.000000Z  INFO message key=value`.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Reads `FERRY_LOG_FORMAT` (`text` or `json`; unset means text).
    pub fn from_env() -> Result<Self, ConfigError> {
        match std::env::var(LOG_FORMAT_VAR) {
            Ok(v) => Self::parse(&v),
            Err(_) => Ok(Self::Text),
        }
    }

    /// Parses a format name.
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(ConfigError {
                name: LOG_FORMAT_VAR.into(),
                value: value.into(),
                expected: "text or json",
            }),
        }
    }
}

/// The log filter: `FERRY_LOG`, else `RUST_LOG`, else `info` with the
/// transport crates quieted.
fn filter_spec() -> String {
    std::env::var("FERRY_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,h2=warn,tower=warn,hyper=warn,tokio_postgres=warn".into())
}

/// Installs the global subscriber: log lines in `format`, and (given a
/// tracer) spans exported to OpenTelemetry. Spans never show in log lines and
/// log lines never become span events, so neither changes the other. Does
/// nothing when a subscriber is already installed.
pub fn install(format: LogFormat, tracer: Option<SdkTracer>) {
    // spans are for the tracer: the log layer sees events only
    let events = EnvFilter::new(filter_spec()).and(filter_fn(|m| !m.is_span()));
    let ansi = format == LogFormat::Text && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let base = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let fmt_layer = match format {
        LogFormat::Text => base.with_filter(events).boxed(),
        LogFormat::Json => base.event_format(JsonLines).with_filter(events).boxed(),
    };
    // Ferry's own spans, whatever the log filter (which `ferry local` sets
    // to quiet the workers' lines): traces are chosen by OTEL_* alone
    let otel_layer = tracer.map(|t| {
        tracing_opentelemetry::layer()
            .with_tracer(t)
            .with_location(false)
            .with_threads(false)
            .with_filter(filter_fn(|m| {
                m.is_span() && *m.level() <= tracing::Level::INFO && m.target().starts_with("ferry")
            }))
    });
    let _ = tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layer)
        .try_init();
}

/// Formats an event as one JSON object: `timestamp`, `level`, `message`, the
/// event's fields, and `trace_id`/`span_id` of the span it belongs to.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut map = Map::new();
        let mut now = String::new();
        SystemTime.format_time(&mut Writer::new(&mut now))?;
        map.insert("timestamp".into(), Value::String(now));
        map.insert(
            "level".into(),
            Value::String(event.metadata().level().as_str().to_string()),
        );
        event.record(&mut JsonFields(&mut map));
        if let Some((trace_id, span_id)) = super::traces::current_ids() {
            map.insert("trace_id".into(), Value::String(trace_id));
            map.insert("span_id".into(), Value::String(span_id));
        }
        writeln!(writer, "{}", Value::Object(map))
    }
}

/// Collects an event's fields as JSON values.
struct JsonFields<'a>(&'a mut Map<String, Value>);

impl Visit for JsonFields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.into()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_formats_and_names_the_variable() {
        assert_eq!(LogFormat::parse("JSON").unwrap(), LogFormat::Json);
        assert_eq!(LogFormat::parse("text").unwrap(), LogFormat::Text);
        let e = LogFormat::parse("yaml").unwrap_err().to_string();
        assert!(e.contains(LOG_FORMAT_VAR), "{e}");
    }
}

//! Logs and traces.
//!
//! Logs go to stderr (text, or JSON lines), filtered by `RUST_LOG`
//! (default `info`). With `[telemetry] otlp_endpoint`, spans are also
//! exported over OTLP/HTTP (JSON encoding) by `tracing-opentelemetry`:
//!
//! ```toml
//! [telemetry]
//! otlp_endpoint = "http://127.0.0.1:4318/v1/traces"
//! service_name = "backbone-server"
//! ```
//!
//! A publish continues the W3C trace context of the HTTP request
//! (`traceparent`, `tracestate`) in a `send` span, and every event it
//! stores carries that span as its `traceparent`; a consumer's `process`
//! span continues it (`backbone-consumers`' `otel` feature), so the request,
//! the publish and every apply are one trace. Attributes follow the
//! OpenTelemetry messaging conventions (`messaging.system`,
//! `messaging.operation.type`, `messaging.destination.name`,
//! `messaging.message.id`, `messaging.consumer.group.name`,
//! `cloudevents.event_id`).

use std::collections::HashMap;

use axum::http::HeaderMap;
use backbone_schemas::{Envelope, wire};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use serde::Deserialize;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{
    EnvFilter, Layer as _, filter::LevelFilter, layer::SubscriberExt as _,
    util::SubscriberInitExt as _,
};

use crate::config::{ServerError, ServerErrorKind};

/// The `[telemetry]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Where spans are sent (OTLP over HTTP, JSON); none: not exported.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the exported spans.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "backbone-server".into(),
        }
    }
}

/// The installed logging and tracing; [`Telemetry::shutdown`] flushes the
/// spans not exported yet.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Installs the global subscriber: logs to stderr, and spans to the OTLP
/// endpoint when configured.
pub fn init(json_logs: bool, config: &TelemetryConfig) -> Result<Telemetry, ServerError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = if json_logs {
        logs.json().boxed()
    } else {
        logs.boxed()
    };
    let provider = match &config.otlp_endpoint {
        None => None,
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpJson)
                .with_endpoint(endpoint.clone())
                .build()
                .map_err(|e| {
                    ServerError::with_source(ServerErrorKind::Config, e).detail(endpoint.clone())
                })?;
            let resource = Resource::builder()
                .with_service_name(config.service_name.clone())
                .build();
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource)
                    .build(),
            )
        }
    };
    // Spans are exported at info and above whatever RUST_LOG says of logs.
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("backbone-server"))
            .with_filter(LevelFilter::INFO)
    });
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .init();
    Ok(Telemetry { provider })
}

impl Telemetry {
    /// Exports what is buffered and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("backbone-server: flushing traces failed: {e}");
        }
    }
}

/// The `send` span of a publish: a child of the request's trace context,
/// with the messaging attributes; every event in `events` is given the
/// span's context as its `traceparent` (when spans are exported).
pub(crate) fn publish_span(headers: &HeaderMap, events: &mut [Envelope]) -> tracing::Span {
    let first = events.first();
    let event_id = first.map(|e| e.id.to_string()).unwrap_or_default();
    let span = tracing::info_span!(
        "publish",
        otel.name = "send",
        otel.kind = "producer",
        messaging.system = "backbone",
        messaging.operation.type = "send",
        messaging.destination.name = first.map(Envelope::subject).unwrap_or_default(),
        messaging.message.id = %event_id,
        cloudevents.event_id = %event_id,
        messaging.batch.message_count = events.len(),
    );
    let carrier: HashMap<String, String> = [wire::TRACEPARENT, "tracestate"]
        .iter()
        .filter_map(|name| {
            let value = headers.get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), value.to_owned()))
        })
        .collect();
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    let _ = span.set_parent(parent);
    let mut injected = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&span.context(), &mut injected)
    });
    if let Some(traceparent) = injected.remove(wire::TRACEPARENT) {
        for event in events {
            event.traceparent = Some(traceparent.clone());
        }
    }
    span
}

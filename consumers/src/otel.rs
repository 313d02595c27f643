//! With the `otel` feature: each event's span continues the trace the
//! event carries (its W3C `traceparent` header), so a consumer's apply
//! shows in the same trace as the publish that produced the event.
//!
//! The propagator is OpenTelemetry's global one, which the process that
//! exports traces (the server) sets; without it this does nothing.

use std::collections::HashMap;

use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Makes `span` a child of the context in `traceparent`, when valid.
pub(crate) fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let carrier = HashMap::from([(
        backbone_schemas::wire::TRACEPARENT.to_owned(),
        traceparent.to_owned(),
    )]);
    let parent =
        opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&carrier));
    // An invalid or absent context leaves the span a root: nothing to continue.
    let _ = span.set_parent(parent);
}

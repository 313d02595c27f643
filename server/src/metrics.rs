//! `/metrics`: the Prometheus exposition of the server, through
//! `prometheus-client`.
//!
//! The consumer runtime counts in plain atomics
//! ([`backbone_consumers::Metrics`]); [`ConsumerCollector`] reads them at
//! each scrape. The server's own HTTP metrics are `prometheus-client`
//! families updated by a middleware.

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use backbone_bridges::BridgeCounters;
use backbone_consumers::{
    Metrics,
    metrics::{ConsumerMetrics, Named},
};
use prometheus_client::{
    collector::Collector,
    encoding::{
        DescriptorEncoder, EncodeLabelSet, EncodeMetric as _, MetricEncoder, NoLabelSet,
        text::encode,
    },
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::ConstGauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::app::AppState;

/// Labels of an HTTP request metric.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route pattern, e.g. `/v1/events`.
    pub route: String,
    /// The HTTP method.
    pub method: String,
    /// The status code.
    pub status: u16,
}

/// Labels of an HTTP duration metric.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route pattern.
    pub route: String,
}

/// The server's metrics registry and its own HTTP families.
#[derive(Debug)]
pub struct ServerMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
}

impl ServerMetrics {
    /// A registry with the consumers of `metrics`, the `bridges` and the
    /// HTTP families.
    pub fn new(metrics: &Metrics, bridges: Arc<Vec<RunningBridge>>) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.5, 12))
        });
        registry.register(
            "backbone_http_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        registry.register(
            "backbone_http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            durations.clone(),
        );
        registry.register_collector(Box::new(ConsumerCollector(metrics.clone())));
        registry.register_collector(Box::new(BridgeCollector(bridges)));
        Self {
            registry,
            requests,
            durations,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Counts and times every request by its route pattern.
pub(crate) async fn track(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = &state.server_metrics;
    metrics
        .durations
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    summary = "Prometheus (OpenMetrics) exposition",
    responses((status = 200, description = "OK")),
)]
pub(crate) async fn scrape(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.server_metrics.render(),
    )
}

/// Labels of a consumer metric.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabels {
    consumer: String,
}

type Field = fn(&ConsumerMetrics) -> &std::sync::atomic::AtomicU64;

const COUNTERS: [(&str, &str, Field); 6] = [
    (
        "backbone_events_applied",
        "Events the handler applied",
        |m| &m.applied,
    ),
    (
        "backbone_events_skipped",
        "Redeliveries of applied events, acked without applying",
        |m| &m.skipped,
    ),
    (
        "backbone_events_duplicate",
        "Copies of applied events (same ce-id), skipped",
        |m| &m.duplicates,
    ),
    (
        "backbone_dead_letters",
        "Events sent to the dead-letter stream",
        |m| &m.dead_letters,
    ),
    (
        "backbone_retries",
        "Transient failures that were retried",
        |m| &m.retries,
    ),
    (
        "backbone_settle_failures",
        "Acknowledgements the broker did not confirm",
        |m| &m.settle_failures,
    ),
];

const GAUGES: [(&str, &str, Field); 2] = [
    (
        "backbone_consumer_lag",
        "Matching events not yet delivered, as of the last fetch",
        |m| &m.lag,
    ),
    (
        "backbone_checkpoint",
        "The committed checkpoint (stream sequence)",
        |m| &m.checkpoint,
    ),
];

/// Reads the consumer runtime's atomics at each scrape.
#[derive(Debug)]
struct ConsumerCollector(Metrics);

/// One metric family with a member per consumer, each encoded by `encode`.
fn per_consumer(
    encoder: &mut DescriptorEncoder<'_>,
    consumers: &Named,
    (name, help, metric_type): (&str, &str, MetricType),
    encode: impl Fn(&ConsumerMetrics, MetricEncoder<'_>) -> std::fmt::Result,
) -> std::fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (consumer, m) in consumers {
        let labels = ConsumerLabels {
            consumer: consumer.clone(),
        };
        encode(m, family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for ConsumerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let consumers = self.0.consumers();
        for (name, help, field) in COUNTERS {
            per_consumer(
                &mut encoder,
                &consumers,
                (name, help, MetricType::Counter),
                |m, e| ConstCounter::new(ConsumerMetrics::get(field(m))).encode(e),
            )?;
        }
        for (name, help, field) in GAUGES {
            per_consumer(
                &mut encoder,
                &consumers,
                (name, help, MetricType::Gauge),
                |m, e| {
                    let value = i64::try_from(ConsumerMetrics::get(field(m))).unwrap_or(i64::MAX);
                    ConstGauge::new(value).encode(e)
                },
            )?;
        }
        let latency = (
            "backbone_apply_latency_seconds",
            "Time to apply one event",
            MetricType::Histogram,
        );
        per_consumer(&mut encoder, &consumers, latency, |m, mut e| {
            let (buckets, sum, count) = m.apply_latency();
            e.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
        })
    }
}

/// A bridge the server runs, and what it counts.
#[derive(Debug)]
pub struct RunningBridge {
    /// Its configuration.
    pub config: backbone_bridges::BridgeConfig,
    /// Its counters.
    pub counters: Arc<BridgeCounters>,
}

/// Labels of a bridge metric.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BridgeLabels {
    bridge: String,
    direction: String,
    broker: String,
}

/// Reads the bridges' counters at each scrape.
#[derive(Debug)]
struct BridgeCollector(Arc<Vec<RunningBridge>>);

impl Collector for BridgeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        type Pick = fn((u64, u64, u64)) -> u64;
        let families: [(&str, &str, Pick); 3] = [
            (
                "backbone_bridge_messages",
                "Events a bridge moved (confirmed by the broker, or stored in the log)",
                |c| c.0,
            ),
            (
                "backbone_bridge_dead_letters",
                "Messages a bridge dead-lettered",
                |c| c.1,
            ),
            (
                "backbone_bridge_failures",
                "Failed attempts of a bridge, each retried after a backoff",
                |c| c.2,
            ),
        ];
        if self.0.is_empty() {
            return Ok(());
        }
        for (name, help, pick) in families {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for bridge in self.0.iter() {
                let labels = BridgeLabels {
                    bridge: bridge.config.name.clone(),
                    direction: format!("{:?}", bridge.config.direction).to_ascii_lowercase(),
                    broker: bridge.config.broker.to_string(),
                };
                ConstCounter::new(pick(bridge.counters.snapshot()))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn consumers_render_as_openmetrics() {
        let metrics = Metrics::new();
        let billing = metrics.consumer("billing");
        billing
            .applied
            .fetch_add(3, std::sync::atomic::Ordering::Relaxed);
        billing.observe_apply(Duration::from_micros(300));
        let text = ServerMetrics::new(&metrics, Arc::default()).render();
        assert!(
            text.contains("backbone_events_applied_total{consumer=\"billing\"} 3"),
            "{text}"
        );
        assert!(
            text.contains(
                "backbone_apply_latency_seconds_bucket{le=\"0.00025\",consumer=\"billing\"} 0"
            ) || text.contains(
                "backbone_apply_latency_seconds_bucket{consumer=\"billing\",le=\"0.00025\"} 0"
            ),
            "{text}"
        );
        assert!(text.contains("le=\"+Inf\""), "{text}");
        assert!(
            text.contains("backbone_apply_latency_seconds_count{consumer=\"billing\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}

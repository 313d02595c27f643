//! The axum application: shared state, the router, and the bounds every
//! request goes through (body size, requests in flight).

use std::{collections::HashMap, sync::Arc};

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State, rejection::BytesRejection},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use backbone_broker::Broker;
use backbone_consumers::{Metrics, Shutdown};
use tokio::sync::Semaphore;

use crate::{
    access::{self, Access},
    api_error::ApiError,
    config::{HttpConfig, ServerConfig},
    dashboard,
    metrics::{self, RunningBridge, ServerMetrics},
    openapi,
    rebuilds::Rebuilds,
    routes::{admin, health, models, publish, rebuilds},
    runners::Runners,
    spool::Spool,
    webhook::{self, Webhook},
};

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The log the server publishes to and reads from.
    pub broker: Arc<dyn Broker>,
    /// The stream the read models consume.
    pub stream: String,
    /// The data directory (read models not run here are read from it).
    pub data_dir: std::path::PathBuf,
    /// The read models and reactors this server runs, and the stores the
    /// queries read.
    pub(crate) runners: Arc<Runners>,
    /// The rebuilds started through the admin routes.
    pub rebuilds: Rebuilds,
    /// Triggered when the server stops.
    pub(crate) stopping: Shutdown,
    /// The runners' counters and health.
    pub metrics: Metrics,
    /// The Prometheus registry.
    pub server_metrics: ServerMetrics,
    /// The HTTP bounds.
    pub http: HttpConfig,
    /// The bearer tokens.
    pub access: Access,
    /// The webhook routes, by name.
    pub webhooks: HashMap<String, Webhook>,
    /// Where events wait while the broker is unreachable (JetStream).
    pub spool: Option<Arc<Spool>>,
    /// The bridges the server runs.
    pub bridges: Arc<Vec<RunningBridge>>,
    in_flight: Arc<Semaphore>,
}

impl AppState {
    /// State over `broker` for `config`, counting into `metrics`.
    pub(crate) fn new(
        config: &ServerConfig,
        broker: Arc<dyn Broker>,
        runners: Arc<Runners>,
        metrics: Metrics,
        webhooks: HashMap<String, Webhook>,
        spool: Option<Arc<Spool>>,
        stopping: Shutdown,
    ) -> Self {
        let bridges: Arc<Vec<RunningBridge>> = Arc::new(
            config
                .bridges
                .iter()
                .map(|config| RunningBridge {
                    config: config.clone(),
                    counters: Arc::default(),
                })
                .collect(),
        );
        Self {
            broker,
            stream: config.stream.clone(),
            data_dir: config.data_dir.clone(),
            runners,
            rebuilds: Rebuilds::default(),
            stopping,
            server_metrics: ServerMetrics::new(&metrics, bridges.clone()),
            bridges,
            metrics,
            in_flight: Arc::new(Semaphore::new(config.http.max_in_flight)),
            http: config.http.clone(),
            access: Access::new(&config.tokens),
            webhooks,
            spool,
        }
    }

    /// The answer to a body that could not be read: 413 over the limit.
    pub(crate) fn body_rejection(&self, rejection: &BytesRejection) -> ApiError {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::body_too_large(self.http.max_body_bytes)
        } else {
            ApiError::malformed(rejection.body_text())
        }
    }
}

/// Every route of the server.
pub fn router(state: Arc<AppState>) -> Router {
    let max_body = state.http.max_body_bytes;
    let v1 = Router::new()
        .route("/v1/events", post(publish::publish))
        .merge(models::routes())
        .merge(admin::routes())
        .merge(rebuilds::routes())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            access::authenticate,
        ));
    Router::new()
        .merge(v1)
        .route("/v1/webhooks/{name}", post(webhook::ingest))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::scrape))
        .route("/openapi.json", get(openapi::document))
        .route("/", get(dashboard::page))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), bounded))
        .with_state(state)
}

/// Answers 503 `Overloaded` with `Retry-After` when `max_in_flight`
/// requests are already being handled, instead of queueing without bound.
async fn bounded(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    match state.in_flight.clone().try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError::overloaded().into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

//! `GET /healthz` and `GET /readyz`.
//!
//! `/healthz` is liveness: 200 while every read model and reactor is
//! running and none has been failing for longer than `unhealthy_after`,
//! 503 otherwise; the body is the [`HealthReport`], naming each unhealthy
//! runner and its last error. `/readyz` is readiness: 200 only when the
//! runners are healthy *and* the broker answers, so a load balancer sends
//! publishes elsewhere while it does not.

use std::{sync::Arc, time::Duration};

use axum::{Json, extract::State, http::StatusCode};
use backbone_consumers::HealthReport;
use serde::Serialize;

use crate::{app::AppState, spool::SpoolDepth};

/// How long `/readyz` waits for the broker.
const BROKER_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    summary = "Liveness: every runner running and none stuck failing",
    responses((status = 200, description = "OK"), (status = 503, description = "Unavailable; retry after Retry-After", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn healthz(
    State(state): State<Arc<AppState>>,
) -> (StatusCode, Json<HealthReport>) {
    let report = state.metrics.health().report();
    (status(report.healthy), Json(report))
}

/// The body of `/readyz`.
#[derive(Debug, Serialize)]
pub(crate) struct Readiness {
    ready: bool,
    broker: BrokerProbe,
    runners: HealthReport,
    /// What waits in the spool for the broker, when there is a spool.
    #[serde(skip_serializing_if = "Option::is_none")]
    spool: Option<SpoolDepth>,
}

/// Whether the broker answered a stream lookup.
#[derive(Debug, Serialize)]
struct BrokerProbe {
    reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `GET /readyz`.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    summary = "Readiness: runners healthy and the broker answering",
    responses((status = 200, description = "OK"), (status = 503, description = "Unavailable; retry after Retry-After", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Readiness>) {
    let probe = tokio::time::timeout(
        BROKER_PROBE_TIMEOUT,
        state.broker.stream_info(&state.stream),
    )
    .await;
    let broker = match probe {
        Ok(Ok(_)) => BrokerProbe {
            reachable: true,
            error: None,
        },
        Ok(Err(e)) => BrokerProbe {
            reachable: false,
            error: Some(e.to_string()),
        },
        Err(_) => BrokerProbe {
            reachable: false,
            error: Some("no answer within 2s".into()),
        },
    };
    let runners = state.metrics.health().report();
    let ready = broker.reachable && runners.healthy;
    let spool = state.spool.as_ref().map(|s| s.depth());
    (
        status(ready),
        Json(Readiness {
            ready,
            broker,
            runners,
            spool,
        }),
    )
}

fn status(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

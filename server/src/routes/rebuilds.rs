//! `/v1/admin/rebuilds`: rebuilding a read model the server runs
//! ([`crate::rebuilds`]), with a token of `admin` scope.
//!
//! - `POST /v1/admin/rebuilds` `{"model": "billing", "verify": true}`:
//!   starts one; 202 with its state, 409 `RebuildRunning` while one of the
//!   same model runs, 404 `UnknownReadModel`.
//! - `GET /v1/admin/rebuilds`: the latest rebuild of every model.
//! - `GET /v1/admin/rebuilds/{model}`: the latest rebuild of one.
//! - `GET /v1/admin/rebuilds/{model}/events`: its progress as Server-Sent
//!   Events (`event: progress`, the state as JSON), ending with the state
//!   whose `phase` is `done` or `failed`.

use std::{convert::Infallible, sync::Arc};

use axum::{
    Extension, Json, Router,
    extract::{Path, State, rejection::JsonRejection},
    http::{StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::get,
};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::{
    access::Principal,
    api_error::ApiError,
    app::AppState,
    rebuilds::{Job, RebuildStatus, StartRefusal},
};

/// The rebuild routes.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/admin/rebuilds", get(list).post(start))
        .route("/v1/admin/rebuilds/{model}", get(show))
        .route("/v1/admin/rebuilds/{model}/events", get(events))
}

/// The body of `POST /v1/admin/rebuilds`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartRebuild {
    /// The read model to rebuild.
    model: String,
    /// Swap only when the rebuilt digest equals the live one.
    #[serde(default)]
    verify: bool,
    /// Events applied per commit (default 1000).
    #[serde(default = "default_batch")]
    batch_size: usize,
}

fn default_batch() -> usize {
    backbone_consumers::RebuildOptions::default().batch_size
}

/// `POST /v1/admin/rebuilds`.
#[utoipa::path(
    post,
    path = "/v1/admin/rebuilds",
    tag = "admin",
    summary = "Start rebuilding a read model from the log (then verify and swap)",
    request_body = StartRebuild,
    responses((status = 202, description = "Started", body = RebuildStatus), (status = 400, description = "Bad request", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 404, description = "Not found", body = crate::openapi::ErrorBody), (status = 409, description = "A rebuild of that model is running", body = crate::openapi::ErrorBody), (status = 415, description = "Not application/json", body = crate::openapi::ErrorBody), (status = 503, description = "The server is stopping", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn start(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    body: Result<Json<StartRebuild>, JsonRejection>,
) -> Result<Response, ApiError> {
    principal.check_admin()?;
    let Json(request) = body.map_err(|e| match e {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::unsupported_media_type(None, &["application/json"])
        }
        e => ApiError::malformed(e.body_text()),
    })?;
    if request.batch_size == 0 {
        return Err(ApiError::malformed("batch_size must be at least 1"));
    }
    let job = Job {
        broker: state.broker.clone(),
        runners: state.runners.clone(),
        shutdown: state.stopping.clone(),
    };
    let started = state
        .rebuilds
        .start(job, &request.model, request.verify, request.batch_size)
        .map_err(|refusal| match refusal {
            StartRefusal::UnknownModel => ApiError::unknown_read_model(&request.model),
            StartRefusal::AlreadyRunning => ApiError::new(
                StatusCode::CONFLICT,
                "RebuildRunning",
                format!("a rebuild of {} is running", request.model),
            )
            .with("model", request.model.as_str()),
            StartRefusal::Stopping => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Stopping",
                "the server is stopping",
            ),
        })?;
    let status = started.borrow().clone();
    let location = format!("/v1/admin/rebuilds/{}", request.model);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(status),
    )
        .into_response())
}

/// `GET /v1/admin/rebuilds`.
#[utoipa::path(
    get,
    path = "/v1/admin/rebuilds",
    tag = "admin",
    summary = "The latest rebuild of every read model",
    responses((status = 200, description = "OK"), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    principal.check_admin()?;
    let models: Vec<&str> = state.runners.projection_names().collect();
    Ok(Json(
        json!({ "models": models, "rebuilds": state.rebuilds.all() }),
    ))
}

fn latest(state: &AppState, model: &str) -> Result<watch::Receiver<RebuildStatus>, ApiError> {
    if state.runners.spec(model).is_none() {
        return Err(ApiError::unknown_read_model(model));
    }
    state
        .rebuilds
        .watch(model)
        .ok_or_else(|| ApiError::not_found(format!("no rebuild of {model} since the start")))
}

/// `GET /v1/admin/rebuilds/{model}`.
#[utoipa::path(
    get,
    path = "/v1/admin/rebuilds/{model}",
    tag = "admin",
    summary = "The latest rebuild of a read model",
    params(("model" = String, Path, description = "The read model")),
    responses((status = 200, description = "OK", body = RebuildStatus), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 404, description = "Not found", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(model): Path<String>,
) -> Result<Json<RebuildStatus>, ApiError> {
    principal.check_admin()?;
    let status = latest(&state, &model)?.borrow().clone();
    Ok(Json(status))
}

/// `GET /v1/admin/rebuilds/{model}/events`.
#[utoipa::path(
    get,
    path = "/v1/admin/rebuilds/{model}/events",
    tag = "admin",
    summary = "A rebuild's progress as Server-Sent Events, to its end",
    params(("model" = String, Path, description = "The read model")),
    responses((status = 200, description = "text/event-stream of `progress` events", content_type = "text/event-stream"), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 404, description = "Not found", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn events(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(model): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    principal.check_admin()?;
    let receiver = latest(&state, &model)?;
    Ok(Sse::new(progress_events(receiver)).keep_alive(KeepAlive::default()))
}

/// Every state `receiver` takes (the latest when several came between
/// two sends), from the current one to the final one.
fn progress_events(
    receiver: watch::Receiver<RebuildStatus>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(Some((receiver, true)), |next| async move {
        let (mut receiver, first) = next?;
        if !first && receiver.changed().await.is_err() {
            // The job is gone; its last state was sent already.
            return None;
        }
        let status = receiver.borrow_and_update().clone();
        let event = Event::default()
            .event("progress")
            .json_data(&status)
            .unwrap_or_else(|_| Event::default().event("progress"));
        let rest = (!status.phase.is_final()).then_some((receiver, false));
        Some((Ok(event), rest))
    })
}

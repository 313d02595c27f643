//! `/v1/admin/...`: what an operator asks a running server, with a token
//! of `admin` scope.
//!
//! - `GET /v1/admin/status`: the [`StatusReport`] `replay-tool status`
//!   prints (streams, consumers with lag, dead-letter depth, read-model
//!   checkpoints), read through the server's own broker and stores, so it
//!   answers while the server holds the embedded log.
//! - `GET /v1/admin/dead-letters?limit=&cursor=`: letters in order, paged.
//! - `GET /v1/admin/dead-letters/{seq}`: one letter and its event as JSON.
//! - `POST /v1/admin/dead-letters/{seq}/redrive`: the letter's event back
//!   into the log for the consumer that gave up on it only
//!   ([`redrive_message`]); `duplicate: true` when the broker dropped it
//!   as a copy within the duplicate window (retry later).
//! - `DELETE /v1/admin/dead-letters?consumer=`: purges handled letters,
//!   all or one consumer's.
//! - `GET /v1/admin/streams/{stream}/messages`: the log itself
//!   ([`crate::routes::log`]).

use std::sync::Arc;

use axum::{
    Extension, Json, Router,
    extract::{Path, Query, State, rejection::QueryRejection},
    http::StatusCode,
    routing::{get, post},
};
use backbone_broker::{
    ReadError, ReadErrorKind, StreamErrorKind,
    stream::{DEAD_LETTER_STREAM, ReadRequest, ReadStart},
};
use backbone_consumers::{
    dead_letter::LetterSummary,
    redrive::redrive_message,
    status::{StatusReport, read_model_rows},
};
use backbone_schemas::Envelope;
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    access::Principal,
    api_error::ApiError,
    app::AppState,
    routes::models::{PagingQuery, paging},
};

/// The admin routes.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/admin/status", get(status))
        .route("/v1/admin/dead-letters", get(letters).delete(purge))
        .route("/v1/admin/dead-letters/{seq}", get(letter))
        .route("/v1/admin/dead-letters/{seq}/redrive", post(redrive))
        .route(
            "/v1/admin/streams/{stream}/messages",
            get(crate::routes::log::messages),
        )
}

/// The broker's refusal as an answer: 404 for what does not exist, 503
/// (with `Retry-After`) when it is unreachable, 500 otherwise.
pub(crate) fn broker_error(kind: BrokerFailure, e: impl std::fmt::Display) -> ApiError {
    match kind {
        BrokerFailure::NotFound => ApiError::not_found(e.to_string()),
        BrokerFailure::Unavailable => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "BrokerUnavailable",
            e.to_string(),
        )
        .retry_after(crate::api_error::RETRY_AFTER),
        BrokerFailure::Other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "BrokerFailure",
            e.to_string(),
        ),
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum BrokerFailure {
    NotFound,
    Unavailable,
    Other,
}

pub(crate) fn read_failure(e: &ReadError) -> BrokerFailure {
    match e.kind() {
        ReadErrorKind::StreamNotFound | ReadErrorKind::MessageNotFound => BrokerFailure::NotFound,
        ReadErrorKind::TimedOut | ReadErrorKind::BrokerUnavailable => BrokerFailure::Unavailable,
        _ => BrokerFailure::Other,
    }
}

/// `GET /v1/admin/dead-letters`.
#[utoipa::path(
    get,
    path = "/v1/admin/dead-letters",
    tag = "admin",
    summary = "Dead letters in order, paged",
    params(("limit" = Option<usize>, Query, description = "Page size, 1 to 1000 (default 100)"), ("cursor" = Option<String>, Query, description = "The previous page's next_cursor")),
    responses((status = 200, description = "OK"), (status = 400, description = "Bad request", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 503, description = "Unavailable; retry after Retry-After", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn letters(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    query: PagingQuery,
) -> Result<Json<Value>, ApiError> {
    principal.check_admin()?;
    // The cursor is the last letter's sequence.
    let paging = paging(query)?;
    let (limit, after) = (paging.limit()?, paging.cursor::<u64>()?);
    let request = ReadRequest {
        start: ReadStart::Sequence(after.map_or(1, |c| c + 1)),
        ..Default::default()
    };
    let mut read = match state.broker.read(DEAD_LETTER_STREAM, request).await {
        Ok(read) => read,
        // No letter was ever written: the stream does not exist yet.
        Err(e) if e.kind() == &ReadErrorKind::StreamNotFound => {
            return Ok(Json(json!({ "items": [] })));
        }
        Err(e) => return Err(broker_error(read_failure(&e), e)),
    };
    let mut items = Vec::new();
    let mut more = false;
    while let Some(message) = read.next().await {
        let message = message.map_err(|e| broker_error(read_failure(&e), e))?;
        if items.len() == limit {
            more = true;
            break;
        }
        items.push(LetterSummary::of(&message));
    }
    let mut page = json!({ "items": items });
    if more && let Some(last) = items.last() {
        page["next_cursor"] = json!(last.seq.to_string());
    }
    Ok(Json(page))
}

/// The dead letter at `seq`, or the broker's refusal as an answer.
async fn letter_at(state: &AppState, seq: u64) -> Result<backbone_broker::StoredMessage, ApiError> {
    state
        .broker
        .get(DEAD_LETTER_STREAM, seq)
        .await
        .map_err(|e| broker_error(read_failure(&e), e))
}

/// `GET /v1/admin/dead-letters/{seq}`.
#[utoipa::path(
    get,
    path = "/v1/admin/dead-letters/{seq}",
    tag = "admin",
    summary = "One dead letter and its event",
    params(("seq" = u64, Path, description = "The letter's sequence")),
    responses((status = 200, description = "OK"), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 404, description = "Not found", body = crate::openapi::ErrorBody), (status = 503, description = "Unavailable; retry after Retry-After", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn letter(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(seq): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    principal.check_admin()?;
    let letter = letter_at(&state, seq).await?;
    let event = redrive_message(&letter)
        .ok()
        .and_then(|original| {
            Envelope::decode(&original.subject, &original.headers, &original.payload).ok()
        })
        .map(|envelope| {
            json!({
                "id": envelope.id.to_string(),
                "type": envelope.event_type,
                "subject": envelope.subject(),
                "source": envelope.source,
                "data": envelope.payload_json().unwrap_or(Value::Null),
            })
        });
    Ok(Json(
        json!({ "letter": LetterSummary::of(&letter), "event": event }),
    ))
}

/// `POST /v1/admin/dead-letters/{seq}/redrive`.
#[utoipa::path(
    post,
    path = "/v1/admin/dead-letters/{seq}/redrive",
    tag = "admin",
    summary = "Put a letter's event back for the consumer that gave up on it",
    params(("seq" = u64, Path, description = "The letter's sequence")),
    responses((status = 200, description = "OK"), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 404, description = "Not found", body = crate::openapi::ErrorBody), (status = 422, description = "Unprocessable", body = crate::openapi::ErrorBody), (status = 503, description = "Unavailable; retry after Retry-After", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn redrive(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(seq): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    principal.check_admin()?;
    let letter = letter_at(&state, seq).await?;
    let entry = redrive_message(&letter).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "NotRedrivable",
            e.to_string(),
        )
    })?;
    let subject = entry.subject.clone();
    let receipt = state.broker.publish(entry).await?;
    Ok(Json(json!({
        "letter": seq,
        "consumer": LetterSummary::of(&letter).consumer,
        "subject": subject,
        "seq": receipt.seq,
        "duplicate": receipt.duplicate,
    })))
}

/// `?consumer=` of a purge.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PurgeQuery {
    consumer: Option<String>,
}

/// `DELETE /v1/admin/dead-letters`.
#[utoipa::path(
    delete,
    path = "/v1/admin/dead-letters",
    tag = "admin",
    summary = "Purge handled letters, all or one consumer's",
    params(("consumer" = Option<String>, Query, description = "Only this consumer's letters")),
    responses((status = 200, description = "OK"), (status = 400, description = "Bad request", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn purge(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<PurgeQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    principal.check_admin()?;
    let Query(query) = query.map_err(|e| ApiError::invalid_query(e.body_text()))?;
    if let Some(consumer) = query
        .consumer
        .as_deref()
        .filter(|c| !backbone_core::subject::valid_name(c))
    {
        return Err(ApiError::invalid_query(format!(
            "{consumer:?} is not a consumer name"
        )));
    }
    let filter = query
        .consumer
        .as_deref()
        .map(backbone_consumers::dead_letter::letters_of);
    let purged = match state
        .broker
        .purge(DEAD_LETTER_STREAM, filter.as_deref())
        .await
    {
        Ok(purged) => purged,
        Err(e) if e.kind() == &StreamErrorKind::StreamNotFound => 0,
        Err(e) if e.kind() == &StreamErrorKind::InvalidConfig => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidQuery",
                e.to_string(),
            ));
        }
        Err(e) => return Err(broker_error(BrokerFailure::Other, e)),
    };
    Ok(Json(json!({ "purged": purged })))
}

/// `GET /v1/admin/status`.
#[utoipa::path(
    get,
    path = "/v1/admin/status",
    tag = "admin",
    summary = "Streams, consumers with lag, dead letters, read-model checkpoints",
    responses((status = 200, description = "OK"), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 503, description = "Unavailable; retry after Retry-After", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn status(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<StatusReport>, ApiError> {
    principal.check_admin()?;
    let rows = read_model_rows(&state.data_dir, |name| state.runners.held(name));
    StatusReport::collect(state.broker.as_ref(), rows)
        .await
        .map(Json)
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "BrokerUnavailable",
                e.to_string(),
            )
            .retry_after(crate::api_error::RETRY_AFTER)
        })
}

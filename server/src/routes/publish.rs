//! `POST /v1/events`: publish one event or a batch over HTTP.
//!
//! The request is read as [`crate::cloudevents`] describes (binary,
//! structured or batch mode) and every event is validated before anything
//! is published. Answers:
//!
//! - **201** with the receipt (`stream`, `seq`, `duplicate: false`, `id`,
//!   `subject`) for a stored event; **200** with `duplicate: true` and the
//!   original's `seq` when the broker already had that `ce-id`;
//! - a batch answers 201 with one receipt per event, in order, when every
//!   event was stored (duplicates included); otherwise the status of the
//!   first failure, with every event's receipt or error in `results`;
//! - **400** an invalid event (`kind` from `DecodeErrorKind`), **413** over
//!   the size limit, **415** an unreadable `content-type`, **409**
//!   `WrongLastSequence` when `backbone-expected-last-subject-seq` does not
//!   match, **503** with `Retry-After` when the broker is unreachable and
//!   there is no spool (or it is full: `SpoolFull`); **202** `spooled`
//!   when the spool took it ([`crate::spool`]);
//!   **403** `Forbidden` when the token may not publish an event's type
//!   (a batch is refused whole).

use std::sync::Arc;

use axum::{
    Extension, Json,
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use backbone_broker::{OutboundMessage, PublishError, PublishErrorKind, PublishReceipt};
use backbone_schemas::Envelope;
use serde::Serialize;
use serde_json::{Value, json};

use tracing::Instrument as _;

use crate::{
    access::Principal, api_error::ApiError, app::AppState, cloudevents, spool::is_transient,
    telemetry,
};

/// The header of an optimistic append: the subject's last stored sequence
/// the client expects (0: the subject has no event yet).
pub const EXPECTED_LAST_SUBJECT_SEQ: &str = "backbone-expected-last-subject-seq";

/// What the server answers for a stored (or duplicate) event.
#[derive(Debug, Serialize)]
pub struct Receipt {
    /// The event's `ce-id`.
    pub id: String,
    /// The subject it was stored on.
    pub subject: String,
    /// The stream that stored it.
    pub stream: String,
    /// Its stream sequence (the original's, for a duplicate).
    pub seq: u64,
    /// True when the broker already had this `ce-id` and stored nothing.
    pub duplicate: bool,
}

impl Receipt {
    fn new(envelope: &Envelope, receipt: PublishReceipt) -> Self {
        Self {
            id: envelope.id.to_string(),
            subject: envelope.subject(),
            stream: receipt.stream,
            seq: receipt.seq,
            duplicate: receipt.duplicate,
        }
    }
}

/// What the server answers for an event it spooled (202).
fn spooled(envelope: &Envelope) -> Value {
    json!({ "id": envelope.id.to_string(), "subject": envelope.subject(), "spooled": true })
}

/// `POST /v1/events`.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    summary = "Publish one event or a batch (CloudEvents HTTP binding: binary, structured, batch)",
    responses((status = 200, description = "OK"), (status = 201, description = "Stored"), (status = 202, description = "Spooled: published when the broker is back"), (status = 400, description = "Bad request", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 409, description = "Optimistic append failed", body = crate::openapi::ErrorBody), (status = 413, description = "Over the size limit", body = crate::openapi::ErrorBody), (status = 415, description = "Unsupported content type", body = crate::openapi::ErrorBody), (status = 503, description = "Unavailable; retry after Retry-After", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn publish(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| state.body_rejection(&e))?;
    let mut incoming = cloudevents::events(&headers, body)?;
    for (i, event) in incoming.events.iter().enumerate() {
        principal
            .check_publish(&event.event_type)
            .map_err(|e| if incoming.batch { e.at(i) } else { e })?;
    }
    let expected = expected_last_subject_seq(&headers)?;
    let span = telemetry::publish_span(&headers, &mut incoming.events);
    send(&state, incoming, expected).instrument(span).await
}

/// Publishes the request's validated events.
async fn send(
    state: &AppState,
    incoming: cloudevents::Incoming,
    expected: Option<u64>,
) -> Result<Response, ApiError> {
    if incoming.batch {
        if expected.is_some() {
            return Err(ApiError::malformed(format!(
                "{EXPECTED_LAST_SUBJECT_SEQ} applies to one event, not a batch"
            )));
        }
        return Ok(store(state, &incoming.events).await);
    }
    let envelope = &incoming.events[0];
    let mut message = OutboundMessage::from(envelope);
    message.expected_last_subject_seq = expected;
    // An optimistic append needs the broker's answer: never spooled.
    let Some(spool) = state.spool.as_ref().filter(|_| expected.is_none()) else {
        let receipt = Receipt::new(envelope, state.broker.publish(message).await?);
        return Ok(stored(receipt));
    };
    if !spool.pending() {
        match state.broker.publish(message.clone()).await {
            Ok(receipt) => return Ok(stored(Receipt::new(envelope, receipt))),
            Err(e) if !is_transient(&e) => return Err(e.into()),
            Err(_) => {}
        }
    }
    spool.push(vec![message]).await?;
    Ok((StatusCode::ACCEPTED, Json(spooled(envelope))).into_response())
}

/// 201 with the receipt, or 200 for a duplicate.
fn stored(receipt: Receipt) -> Response {
    let status = if receipt.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    (status, Json(receipt)).into_response()
}

/// Publishes validated `events` in order and answers with every event's
/// receipt, `spooled` mark or error in `results`: 201 when all were stored
/// (duplicates included), 202 when some were spooled, else the first
/// failure's status and error. Events the broker could not take go to the
/// spool, when there is one; while it holds events, all go there.
pub(crate) async fn store(state: &AppState, events: &[Envelope]) -> Response {
    let messages: Vec<OutboundMessage> = events.iter().map(OutboundMessage::from).collect();
    // `Err(None)`: not tried, the spool holds events. With a spool the
    // messages are kept, for what the broker does not take.
    let publish = |messages| async {
        let results = state.broker.publish_batch(messages).await;
        results
            .into_iter()
            .map(|r| r.map_err(Some))
            .collect::<Vec<_>>()
    };
    let (results, retained) = match &state.spool {
        Some(spool) if spool.pending() => {
            (messages.iter().map(|_| Err(None)).collect(), Some(messages))
        }
        Some(_) => (publish(messages.clone()).await, Some(messages)),
        None => (publish(messages).await, None),
    };
    let to_spool: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| match r {
            Err(None) => true,
            Err(Some(e)) => state.spool.is_some() && is_transient(e),
            Ok(_) => false,
        })
        .map(|(i, _)| i)
        .collect();
    let spool_result = match (&state.spool, &retained) {
        (Some(spool), Some(retained)) if !to_spool.is_empty() => {
            let waiting = to_spool.iter().map(|&i| retained[i].clone()).collect();
            Some(spool.push(waiting).await)
        }
        _ => None,
    };
    let mut first_failure: Option<ApiError> = None;
    let mut any_spooled = false;
    let results: Vec<Value> = events
        .iter()
        .zip(results)
        .enumerate()
        .map(|(i, (envelope, result))| {
            let error = match result {
                Ok(receipt) => return json!(Receipt::new(envelope, receipt)),
                Err(_) if to_spool.contains(&i) && matches!(spool_result, Some(Ok(()))) => {
                    any_spooled = true;
                    return spooled(envelope);
                }
                Err(_) if to_spool.contains(&i) => match &spool_result {
                    Some(Err(e)) => e.clone(),
                    _ => ApiError::from(PublishError::new(PublishErrorKind::BrokerUnavailable)),
                },
                Err(Some(e)) => ApiError::from(e),
                Err(None) => ApiError::from(PublishError::new(PublishErrorKind::BrokerUnavailable)),
            }
            .at(i);
            let body = json!({ "error": error.body() });
            first_failure.get_or_insert(error);
            body
        })
        .collect();
    let status = if any_spooled {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    match first_failure {
        None => (status, Json(json!({ "results": results }))).into_response(),
        Some(failure) => {
            let body = json!({ "error": failure.body(), "results": results });
            failure.respond_with(body)
        }
    }
}

fn expected_last_subject_seq(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(EXPECTED_LAST_SUBJECT_SEQ) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidHeader",
                format!("{EXPECTED_LAST_SUBJECT_SEQ} is not a sequence number"),
            )
            .with("header", EXPECTED_LAST_SUBJECT_SEQ)
        })
}

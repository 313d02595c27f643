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
//!   match, **503** with `Retry-After` when the broker is unreachable;
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
use backbone_broker::{OutboundMessage, PublishReceipt};
use backbone_schemas::Envelope;
use serde::Serialize;
use serde_json::{Value, json};

use crate::{access::Principal, api_error::ApiError, app::AppState, cloudevents};

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

/// `POST /v1/events`.
pub(crate) async fn publish(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| state.body_rejection(&e))?;
    let incoming = cloudevents::events(&headers, body)?;
    for (i, event) in incoming.events.iter().enumerate() {
        principal
            .check_publish(&event.event_type)
            .map_err(|e| if incoming.batch { e.at(i) } else { e })?;
    }
    let expected = expected_last_subject_seq(&headers)?;
    if incoming.batch {
        if expected.is_some() {
            return Err(ApiError::malformed(format!(
                "{EXPECTED_LAST_SUBJECT_SEQ} applies to one event, not a batch"
            )));
        }
        return Ok(store(&state, &incoming.events).await);
    }
    let envelope = &incoming.events[0];
    let mut message = OutboundMessage::from(envelope);
    message.expected_last_subject_seq = expected;
    let receipt = Receipt::new(envelope, state.broker.publish(message).await?);
    let status = if receipt.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(receipt)).into_response())
}

/// Publishes validated `events` in order and answers with every event's
/// receipt or error in `results`: 201 when all were stored (duplicates
/// included), else the first failure's status and error.
pub(crate) async fn store(state: &AppState, events: &[Envelope]) -> Response {
    let messages = events.iter().map(OutboundMessage::from).collect();
    let results = state.broker.publish_batch(messages).await;
    let mut first_failure: Option<ApiError> = None;
    let results: Vec<Value> = events
        .iter()
        .zip(results)
        .enumerate()
        .map(|(i, (envelope, result))| match result {
            Ok(receipt) => json!(Receipt::new(envelope, receipt)),
            Err(e) => {
                let error = ApiError::from(e).at(i);
                let body = json!({ "error": error.body() });
                first_failure.get_or_insert(error);
                body
            }
        })
        .collect();
    match first_failure {
        None => (StatusCode::CREATED, Json(json!({ "results": results }))).into_response(),
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

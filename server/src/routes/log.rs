//! `GET /v1/admin/streams/{stream}/messages`: the log itself, read through
//! the server that holds it, with a token of `admin` scope. What
//! `replay-tool tail` and `audit` read when the server holds the embedded
//! log.
//!
//! The answer is NDJSON (`application/x-ndjson`): one
//! [`MessageRecord`] per line, in sequence order, byte for byte (payload
//! base64). With `follow=true` it stays open and sends new messages as
//! they are stored, until the client disconnects or the server stops. A
//! read that fails after the answer started ends with one line
//! `{"error": {"kind", "message"}}`.

use std::sync::Arc;

use axum::{
    Extension,
    body::{Body, Bytes},
    extract::{Path, Query, State, rejection::QueryRejection},
    http::header,
    response::{IntoResponse, Response},
};
use backbone_broker::{ReadRequest, ReadStart, record::MessageRecord};
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::json;

use crate::{
    access::Principal,
    api_error::ApiError,
    app::AppState,
    routes::admin::{broker_error, read_failure},
};

/// The parameters of a read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadParams {
    /// First sequence.
    from_seq: Option<u64>,
    /// First store time (RFC 3339).
    from_time: Option<String>,
    /// Last sequence (inclusive).
    end_seq: Option<u64>,
    /// Last store time (RFC 3339, inclusive).
    until: Option<String>,
    /// Subject pattern (`*` and `>`).
    filter: Option<String>,
    /// Keep sending new messages.
    #[serde(default)]
    follow: bool,
}

fn parse_time(name: &str, text: &str) -> Result<std::time::SystemTime, ApiError> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(std::time::SystemTime::from)
        .map_err(|_| ApiError::invalid_query(format!("{name}: {text:?} is not an RFC 3339 time")))
}

impl ReadParams {
    fn request(&self) -> Result<ReadRequest, ApiError> {
        let start = match (self.from_seq, &self.from_time) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid_query(
                    "give from_seq or from_time, not both",
                ));
            }
            (Some(seq), None) => ReadStart::Sequence(seq),
            (None, Some(t)) => ReadStart::Time(parse_time("from_time", t)?),
            (None, None) => ReadStart::First,
        };
        Ok(ReadRequest {
            start,
            end_seq: self.end_seq,
            end_time: self
                .until
                .as_deref()
                .map(|t| parse_time("until", t))
                .transpose()?,
            filter: self.filter.clone(),
            follow: self.follow,
        })
    }
}

/// `GET /v1/admin/streams/{stream}/messages`.
#[utoipa::path(
    get,
    path = "/v1/admin/streams/{stream}/messages",
    tag = "admin",
    summary = "The stream's messages in order, byte for byte, as NDJSON (optionally following)",
    params(("stream" = String, Path, description = "The stream, e.g. EVENTS"), ("from_seq" = Option<u64>, Query, description = "First sequence"), ("from_time" = Option<String>, Query, description = "First store time, RFC 3339"), ("end_seq" = Option<u64>, Query, description = "Last sequence, inclusive"), ("until" = Option<String>, Query, description = "Last store time, RFC 3339, inclusive"), ("filter" = Option<String>, Query, description = "Subject pattern, * and > wildcards"), ("follow" = Option<bool>, Query, description = "Keep sending new messages")),
    responses((status = 200, description = "application/x-ndjson: one message per line", content_type = "application/x-ndjson"), (status = 400, description = "Bad request", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 403, description = "Outside the token's scopes", body = crate::openapi::ErrorBody), (status = 404, description = "Not found", body = crate::openapi::ErrorBody), (status = 503, description = "Unavailable; retry after Retry-After", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn messages(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(stream): Path<String>,
    query: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    principal.check_admin()?;
    let Query(params) = query.map_err(|e| ApiError::invalid_query(e.body_text()))?;
    let request = params.request()?;
    let read = state
        .broker
        .read(&stream, request)
        .await
        .map_err(|e| match e.kind() {
            backbone_broker::ReadErrorKind::InvalidRequest => {
                ApiError::invalid_query(e.to_string())
            }
            _ => broker_error(read_failure(&e), e),
        })?;
    let mut stopping = state.stopping.clone();
    let lines = read
        .scan(false, |failed, item| {
            // Nothing follows a failure's line.
            if *failed {
                return std::future::ready(None);
            }
            let line = match item {
                Ok(message) => serde_json::to_vec(&MessageRecord::from(&message)),
                Err(e) => {
                    *failed = true;
                    let kind = format!("{:?}", e.kind());
                    serde_json::to_vec(
                        &json!({ "error": { "kind": kind, "message": e.to_string() } }),
                    )
                }
            };
            let mut line = line.unwrap_or_default();
            line.push(b'\n');
            std::future::ready(Some(Ok::<_, std::convert::Infallible>(Bytes::from(line))))
        })
        // A follow ends with the server, which waits for open answers.
        .take_until(async move { stopping.wait().await });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

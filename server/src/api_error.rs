//! [`ApiError`]: every failed request's answer, a status and a JSON body
//! naming the error's kind.
//!
//! ```json
//! {"error": {"kind": "MissingHeader", "message": "missing header ce-id", "header": "ce-id"}}
//! ```
//!
//! `kind` is stable and meant for code: the [`DecodeErrorKind`] names for
//! an invalid event, the [`PublishErrorKind`] names for a refused publish,
//! and the server's own ([`ApiError`]'s constructors) for the rest.
//! `message` is for people. Extra members (`header`, `index`, `actual`,
//! ...) depend on the kind.

use std::time::Duration;

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use backbone_broker::{PublishError, PublishErrorKind};
use backbone_schemas::{DecodeError, DecodeErrorKind};
use serde_json::{Map, Value, json};

/// A failed request: status, kind, message and kind-specific members.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable error kind, e.g. `"UnknownType"`.
    pub kind: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// Kind-specific members of the error object.
    pub members: Map<String, Value>,
    /// When the client may retry (`Retry-After`), for 429 and 503.
    pub retry_after: Option<Duration>,
}

/// How long a client should wait before retrying when the server is
/// overloaded or the broker is unreachable.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

impl ApiError {
    /// An error of `kind` answered with `status`.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            members: Map::new(),
            retry_after: None,
        }
    }

    /// Adds a kind-specific member to the error object.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.members.insert(name.to_owned(), value.into());
        self
    }

    /// Asks the client to retry after `delay`.
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// 400 `MalformedRequest`: the body is not the JSON the route expects.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "MalformedRequest", message)
    }

    /// 415 `UnsupportedMediaType`: a `content-type` the route does not read.
    pub fn unsupported_media_type(found: Option<&str>, expected: &[&str]) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "content-type {} is not one of {}",
                found.unwrap_or("(none)"),
                expected.join(", ")
            ),
        )
        .with("expected", expected.to_vec())
    }

    /// 413 `PayloadTooLarge`: the request body is over the limit.
    pub fn body_too_large(max: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("the request body exceeds the limit of {max} bytes"),
        )
        .with("max", max)
    }

    /// 503 `Overloaded`: every request slot is taken.
    pub fn overloaded() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Overloaded",
            "the server is at its request limit; retry later",
        )
        .retry_after(RETRY_AFTER)
    }

    /// 400 `InvalidQuery`: query parameters the route does not take.
    pub fn invalid_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidQuery", message)
    }

    /// 404 `NotFound`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    /// 404 `UnknownReadModel`: this server does not run read model `name`.
    pub fn unknown_read_model(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "UnknownReadModel",
            format!("this server does not run the read model {name}"),
        )
        .with("model", name)
    }

    /// Where in a batch the error is (0-based).
    pub fn at(self, index: usize) -> Self {
        self.with("index", index)
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        let kind = e.kind().clone();
        let error = Self::new(StatusCode::BAD_REQUEST, kind.name(), e.to_string());
        match kind {
            DecodeErrorKind::MissingHeader(name) => error.with("header", name),
            DecodeErrorKind::InvalidHeader { name, .. } => error.with("header", name),
            DecodeErrorKind::UnknownType(t) => error.with("type", t),
            DecodeErrorKind::TypeMismatch { expected, found }
            | DecodeErrorKind::KeyMismatch { expected, found } => {
                error.with("expected", expected).with("found", found)
            }
            DecodeErrorKind::InvalidSubject | DecodeErrorKind::PayloadNotDecodable => error,
        }
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        let kind = e.kind();
        let status = match kind {
            PublishErrorKind::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            PublishErrorKind::WrongLastSequence { .. } => StatusCode::CONFLICT,
            PublishErrorKind::BrokerUnavailable | PublishErrorKind::TimedOut => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            PublishErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
            PublishErrorKind::InvalidSubject => StatusCode::BAD_REQUEST,
            PublishErrorKind::NoStream | PublishErrorKind::StorageFailure => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            PublishErrorKind::Rejected => StatusCode::BAD_GATEWAY,
        };
        let error = Self::new(status, kind.name(), e.to_string());
        match kind {
            PublishErrorKind::PayloadTooLarge { size, max } => {
                error.with("size", *size).with("max", *max)
            }
            PublishErrorKind::WrongLastSequence { actual } => error.with("actual", *actual),
            _ if kind.is_transient() => error.retry_after(RETRY_AFTER),
            _ => error,
        }
    }
}

impl ApiError {
    /// The error object, without the status.
    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("kind".into(), self.kind.into());
        error.insert("message".into(), self.message.clone().into());
        error.extend(self.members.clone());
        Value::Object(error)
    }
}

impl ApiError {
    /// The response with `body` instead of `{"error": ...}`: the status and
    /// `Retry-After` of this error (a batch's first failure answers with
    /// every event's result).
    pub fn respond_with(self, body: Value) -> Response {
        let mut response = (self.status, Json(body)).into_response();
        if let Some(delay) = self.retry_after {
            let secs = delay.as_secs().max(1);
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&secs.to_string()).expect("digits are a valid header"),
            );
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.body() });
        self.respond_with(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_kinds_keep_their_names_and_members() {
        let e = ApiError::from(DecodeError::new(DecodeErrorKind::MissingHeader("ce-id")));
        assert_eq!(
            (e.status, e.kind),
            (StatusCode::BAD_REQUEST, "MissingHeader")
        );
        assert_eq!(e.body()["header"], "ce-id");
    }

    #[test]
    fn publish_kinds_map_to_their_statuses() {
        let cases = [
            (PublishErrorKind::WrongLastSequence { actual: 3 }, 409),
            (PublishErrorKind::PayloadTooLarge { size: 2, max: 1 }, 413),
            (PublishErrorKind::BrokerUnavailable, 503),
            (PublishErrorKind::TimedOut, 503),
        ];
        for (kind, status) in cases {
            let e = ApiError::from(PublishError::new(kind));
            assert_eq!(e.status.as_u16(), status, "{}", e.kind);
        }
        let e = ApiError::from(PublishError::new(PublishErrorKind::BrokerUnavailable));
        let response = e.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}

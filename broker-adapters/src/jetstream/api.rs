//! JetStream's JSON API over request/reply, with every failure classified.

use std::{sync::Arc, time::Duration};

use async_nats::{Client, connection::State};
use bytes::Bytes;
use serde::{Deserialize, de::DeserializeOwned};

use super::permissions::PermissionViolations;

/// The API subject prefix of the default JetStream domain.
pub(crate) const API_PREFIX: &str = "$JS.API";

/// Server error codes (`err_code`) the adapter branches on.
pub(crate) mod code {
    pub(crate) const CONSUMER_NOT_FOUND: u64 = 10014;
    pub(crate) const NOT_ENABLED_FOR_ACCOUNT: u64 = 10039;
    pub(crate) const NO_MESSAGE_FOUND: u64 = 10037;
    pub(crate) const STREAM_INVALID_CONFIG: u64 = 10052;
    pub(crate) const MESSAGE_TOO_LARGE: u64 = 10054;
    pub(crate) const STREAM_NAME_IN_USE: u64 = 10058;
    pub(crate) const STREAM_NOT_FOUND: u64 = 10059;
    pub(crate) const SUBJECTS_OVERLAP: u64 = 10065;
    pub(crate) const REPLICAS_NOT_SUPPORTED: u64 = 10074;
    pub(crate) const NOT_ENABLED: u64 = 10076;
    pub(crate) const BACKOFF_NEEDS_MAX_DELIVER: u64 = 10116;
}

/// Why an API request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiFailure {
    /// No answer within the request timeout while connected.
    TimedOut,
    /// The connection is down or closed.
    Unavailable,
    /// Nobody serves the subject: JetStream is off, or (for a publish) no
    /// stream captures the subject.
    NoResponders,
    /// The server answered with an error.
    Api {
        /// HTTP-like status.
        status: u16,
        /// JetStream's `err_code`.
        code: u64,
        /// The server's description.
        description: String,
    },
    /// The server refused the request subject to this user: it dropped the
    /// request and reported a permissions violation on the connection.
    PermissionDenied {
        /// The refused request subject.
        subject: String,
    },
    /// The answer was not the expected JSON.
    Malformed(String),
}

impl ApiFailure {
    /// The server's `err_code`, when the server answered with an error.
    pub(crate) fn code(&self) -> Option<u64> {
        match self {
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A one-line description for error details.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::TimedOut => "no answer within the request timeout".into(),
            Self::Unavailable => "not connected to the server".into(),
            Self::NoResponders => "no responders (JetStream unavailable)".into(),
            Self::Api {
                status,
                code,
                description,
            } => format!("{description} (status {status}, err_code {code})"),
            Self::PermissionDenied { subject } => {
                format!("permissions violation: this user may not publish to {subject}")
            }
            Self::Malformed(why) => format!("malformed answer: {why}"),
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
struct MaybeError {
    error: Option<ErrorBody>,
}

/// Sends JetStream API requests with a bounded wait.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    pub(crate) client: Client,
    pub(crate) timeout: Duration,
    /// Refusals of request subjects, which never get an answer.
    pub(crate) violations: Arc<PermissionViolations>,
}

impl Api {
    /// Requests `$JS.API.<subject>` with a JSON body and decodes the answer.
    pub(crate) async fn request<T: DeserializeOwned>(
        &self,
        subject: &str,
        body: &serde_json::Value,
    ) -> Result<T, ApiFailure> {
        let payload = if body.is_null() {
            Bytes::new()
        } else {
            Bytes::from(serde_json::to_vec(body).map_err(|e| ApiFailure::Malformed(e.to_string()))?)
        };
        let answer = self.raw(format!("{API_PREFIX}.{subject}"), payload).await?;
        decode(&answer)
    }

    /// A request/reply on any subject, bounded by the request timeout.
    pub(crate) async fn raw(&self, subject: String, payload: Bytes) -> Result<Bytes, ApiFailure> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        // A request made while disconnected would sit in the client's buffer
        // until the timeout; waiting for the reconnect instead lets a request
        // right after a server restart succeed.
        if !wait_connected(&self.client, deadline).await {
            return Err(ApiFailure::Unavailable);
        }
        // A refused request is dropped by the server, which reports the
        // violation only on the connection; watching for it turns a full
        // request timeout into an immediate, typed refusal.
        let sent_at = std::time::Instant::now();
        let reply = tokio::select! {
            biased;
            reply = tokio::time::timeout_at(
                deadline,
                self.client.request(subject.clone(), payload),
            ) => reply,
            () = self.violations.refused(&subject, sent_at) => {
                return Err(ApiFailure::PermissionDenied { subject });
            }
        };
        match reply {
            Ok(Ok(message)) => Ok(message.payload),
            Ok(Err(err)) => Err(match err.kind() {
                async_nats::RequestErrorKind::NoResponders => ApiFailure::NoResponders,
                async_nats::RequestErrorKind::TimedOut => self.timed_out(),
                _ => ApiFailure::Unavailable,
            }),
            Err(_) => Err(self.timed_out()),
        }
    }

    fn timed_out(&self) -> ApiFailure {
        if self.client.connection_state() == State::Connected {
            ApiFailure::TimedOut
        } else {
            ApiFailure::Unavailable
        }
    }
}

/// Waits until the client is connected or `deadline` passes.
pub(crate) async fn wait_connected(client: &Client, deadline: tokio::time::Instant) -> bool {
    loop {
        if client.connection_state() == State::Connected {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Decodes an API answer: the server's error when it carries one, else `T`.
pub(crate) fn decode<T: DeserializeOwned>(answer: &[u8]) -> Result<T, ApiFailure> {
    let probe: MaybeError =
        serde_json::from_slice(answer).map_err(|e| ApiFailure::Malformed(e.to_string()))?;
    if let Some(error) = probe.error {
        return Err(ApiFailure::Api {
            status: error.code,
            code: error.err_code,
            description: error.description,
        });
    }
    serde_json::from_slice(answer).map_err(|e| ApiFailure::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_server_errors_with_their_codes() {
        let body = br#"{"type":"x","error":{"code":404,"err_code":10059,"description":"stream not found"}}"#;
        let failure = decode::<serde_json::Value>(body).unwrap_err();
        assert_eq!(failure.code(), Some(code::STREAM_NOT_FOUND));
    }

    #[test]
    fn malformed_answers_are_reported() {
        assert!(matches!(
            decode::<serde_json::Value>(b"not json"),
            Err(ApiFailure::Malformed(_))
        ));
    }
}

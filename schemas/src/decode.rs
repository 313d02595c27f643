//! Strict decoding of a received message into an [`Envelope`].
//!
//! Every check failure maps to exactly one [`DecodeErrorKind`], so consumers
//! can dead-letter by kind. The checks run in this order and the first
//! failure is reported, so a message that breaks several rules gets the
//! kind of the earliest (`docs/wire-contract.md` repeats this order for
//! other languages):
//!
//! 1. the subject is `events.<domain>.<name>.<key>` → `InvalidSubject`;
//! 2. the required headers, one at a time in the order `ce-specversion`,
//!    `ce-id`, `ce-source`, `ce-type`, `ce-time`, `ce-subject`,
//!    `ce-dataschema`, `content-type`, `Nats-Msg-Id`: absent →
//!    `MissingHeader`; repeated, or not percent-decodable → `InvalidHeader`;
//! 3. values, in this order (all `InvalidHeader`): `ce-specversion` is
//!    `1.0`; `content-type` is `application/protobuf`; `ce-id` is a
//!    hyphenated UUID (36 characters, either case); `Nats-Msg-Id` is a
//!    hyphenated UUID equal to `ce-id` (compared as UUIDs, so case does not
//!    matter); `ce-source` is non-empty without control characters;
//!    `ce-time` is RFC 3339;
//! 4. `ce-type` equals the subject's type → `TypeMismatch`, and is
//!    registered → `UnknownType`;
//! 5. `ce-subject` equals the subject's key → `KeyMismatch`;
//! 6. `ce-dataschema` is `proto:<full name>` → `InvalidHeader`, naming the
//!    registered message → `TypeMismatch`;
//! 7. optional headers, in this order: `ce-correlationid`, `ce-causationid`
//!    (once, percent-decodable, non-empty, no control characters), then
//!    `traceparent` (once, percent-decodable, a W3C trace context) →
//!    `InvalidHeader`;
//! 8. the payload decodes as the message → `PayloadNotDecodable`;
//! 9. the payload's key field equals the subject's key → `KeyMismatch`.
//!
//! Every header value read is percent-decoded before it is checked,
//! including `content-type`, `traceparent` and `Nats-Msg-Id`. "Control
//! characters" are Unicode category Cc (U+0000..=U+001F, U+007F..=U+009F),
//! checked after percent-decoding.
//!
//! Header names are matched ASCII-case-insensitively; unknown headers are
//! ignored.

use std::fmt;

use bytes::Bytes;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::envelope::{Envelope, is_valid_text};
use crate::error::Error;
use crate::header_value;
use crate::headers::Headers;
use crate::registry::Registry;
use crate::subject;
use crate::wire;

/// A received message that is not a valid event.
pub type DecodeError = Error<DecodeErrorKind>;

/// Why a received message is not a valid event. One kind per failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// The subject is not `events.<domain>.<name>.<key>`.
    InvalidSubject,
    /// A required header is absent.
    MissingHeader(&'static str),
    /// A header is repeated or its value is malformed.
    InvalidHeader {
        /// The header name.
        name: &'static str,
        /// The value as received.
        value: String,
    },
    /// The event type is not in the registry.
    UnknownType(String),
    /// The type (or schema) in the headers differs from the subject's (or
    /// the registry's), or a typed read asked for another type.
    TypeMismatch {
        /// What the subject, registry or caller says.
        expected: String,
        /// What the message says.
        found: String,
    },
    /// `ce-subject` or the payload's key field differs from the subject key.
    KeyMismatch {
        /// The subject's key.
        expected: String,
        /// The key in `ce-subject` or in the payload.
        found: String,
    },
    /// The payload is not a protobuf encoding of the event message.
    PayloadNotDecodable,
}

impl DecodeErrorKind {
    /// The kind's name, e.g. `"MissingHeader"`: how the server's HTTP
    /// errors and other languages name it (`docs/wire-contract.md`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::InvalidSubject => "InvalidSubject",
            Self::MissingHeader(_) => "MissingHeader",
            Self::InvalidHeader { .. } => "InvalidHeader",
            Self::UnknownType(_) => "UnknownType",
            Self::TypeMismatch { .. } => "TypeMismatch",
            Self::KeyMismatch { .. } => "KeyMismatch",
            Self::PayloadNotDecodable => "PayloadNotDecodable",
        }
    }
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidSubject => f.write_str("invalid event subject"),
            Self::MissingHeader(name) => write!(f, "missing header {name}"),
            Self::InvalidHeader { name, value } => write!(f, "invalid header {name}: {value:?}"),
            Self::UnknownType(t) => write!(f, "unknown event type {t:?}"),
            Self::TypeMismatch { expected, found } => {
                write!(f, "type mismatch: expected {expected:?}, found {found:?}")
            }
            Self::KeyMismatch { expected, found } => {
                write!(f, "key mismatch: subject key {expected:?}, found {found:?}")
            }
            Self::PayloadNotDecodable => {
                f.write_str("payload does not decode as the event message")
            }
        }
    }
}

/// A registry failure to decode a payload as a `PayloadNotDecodable` error.
/// The registry's own kind says the same words, so only its cause is kept
/// and the text names the failure once.
pub(crate) fn payload_error(e: crate::registry::RegistryError) -> DecodeError {
    match e.into_source() {
        Some(cause) => DecodeError::with_source(DecodeErrorKind::PayloadNotDecodable, cause),
        None => DecodeError::new(DecodeErrorKind::PayloadNotDecodable),
    }
}

fn invalid(name: &'static str, value: &str, detail: impl Into<String>) -> DecodeError {
    DecodeError::with_detail(
        DecodeErrorKind::InvalidHeader {
            name,
            value: value.to_owned(),
        },
        detail,
    )
}

/// The single, percent-decoded value of header `name`, if present.
fn optional(headers: &Headers, name: &'static str) -> Result<Option<String>, DecodeError> {
    let mut values = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v);
    let Some(raw) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid(name, raw, "header is repeated"));
    }
    header_value::decode(raw)
        .map(|v| Some(v.into_owned()))
        .map_err(|e| invalid(name, raw, e))
}

fn required(headers: &Headers, name: &'static str) -> Result<String, DecodeError> {
    optional(headers, name)?.ok_or_else(|| DecodeError::new(DecodeErrorKind::MissingHeader(name)))
}

fn optional_text(headers: &Headers, name: &'static str) -> Result<Option<String>, DecodeError> {
    match optional(headers, name)? {
        Some(v) if !is_valid_text(&v) => Err(invalid(name, &v, "empty or has control characters")),
        other => Ok(other),
    }
}

impl Envelope {
    /// Decodes and validates a received message using the
    /// [global registry](Registry::global). See the module docs for every
    /// check and its error kind.
    pub fn decode(
        subject: &str,
        headers: &Headers,
        payload: &[u8],
    ) -> Result<Envelope, DecodeError> {
        Self::decode_with(Registry::global(), subject, headers, payload)
    }

    /// [`decode`](Self::decode) with an explicit registry.
    pub fn decode_with(
        registry: &Registry,
        subject: &str,
        headers: &Headers,
        payload: &[u8],
    ) -> Result<Envelope, DecodeError> {
        let (subject_type, subject_key) = subject::parse_event_subject(subject)
            .map_err(|e| DecodeError::with_source(DecodeErrorKind::InvalidSubject, e))?;

        let spec_version = required(headers, wire::CE_SPECVERSION)?;
        let id = required(headers, wire::CE_ID)?;
        let source = required(headers, wire::CE_SOURCE)?;
        let event_type = required(headers, wire::CE_TYPE)?;
        let time = required(headers, wire::CE_TIME)?;
        let key = required(headers, wire::CE_SUBJECT)?;
        let data_schema = required(headers, wire::CE_DATASCHEMA)?;
        let content_type = required(headers, wire::CONTENT_TYPE)?;
        let msg_id = required(headers, wire::NATS_MSG_ID)?;

        if spec_version != wire::SPEC_VERSION {
            return Err(invalid(wire::CE_SPECVERSION, &spec_version, "expected 1.0"));
        }
        if content_type != wire::CONTENT_TYPE_PROTOBUF {
            return Err(invalid(
                wire::CONTENT_TYPE,
                &content_type,
                "expected application/protobuf",
            ));
        }
        let id = match Uuid::try_parse(&id) {
            Ok(uuid) if id.len() == 36 => uuid,
            _ => return Err(invalid(wire::CE_ID, &id, "expected a hyphenated UUID")),
        };
        if msg_id.len() != 36 || Uuid::try_parse(&msg_id).ok() != Some(id) {
            return Err(invalid(wire::NATS_MSG_ID, &msg_id, "must equal ce-id"));
        }
        if !is_valid_text(&source) {
            return Err(invalid(
                wire::CE_SOURCE,
                &source,
                "empty or has control characters",
            ));
        }
        let time = OffsetDateTime::parse(&time, &Rfc3339)
            .map_err(|e| invalid(wire::CE_TIME, &time, e.to_string()))?
            .to_offset(time::UtcOffset::UTC);

        if event_type != subject_type {
            return Err(DecodeError::with_detail(
                DecodeErrorKind::TypeMismatch {
                    expected: subject_type.to_owned(),
                    found: event_type,
                },
                "ce-type differs from the subject's type",
            ));
        }
        let registered = registry
            .by_type_name(&event_type)
            .ok_or_else(|| DecodeError::new(DecodeErrorKind::UnknownType(event_type.clone())))?;
        if key != subject_key {
            return Err(DecodeError::with_detail(
                DecodeErrorKind::KeyMismatch {
                    expected: subject_key.to_owned(),
                    found: key,
                },
                "ce-subject differs from the subject's key",
            ));
        }
        let full_name = data_schema
            .strip_prefix(wire::DATASCHEMA_PREFIX)
            .ok_or_else(|| {
                invalid(
                    wire::CE_DATASCHEMA,
                    &data_schema,
                    "expected proto:<full name>",
                )
            })?;
        if full_name != registered.full_name {
            return Err(DecodeError::with_detail(
                DecodeErrorKind::TypeMismatch {
                    expected: registered.full_name.clone(),
                    found: full_name.to_owned(),
                },
                "ce-dataschema names another message than the registry",
            ));
        }

        let correlation_id = optional_text(headers, wire::CE_CORRELATIONID)?;
        let causation_id = optional_text(headers, wire::CE_CAUSATIONID)?;
        let traceparent = optional(headers, wire::TRACEPARENT)?;
        if let Some(tp) = &traceparent
            && !wire::is_valid_traceparent(tp)
        {
            return Err(invalid(wire::TRACEPARENT, tp, "not a W3C traceparent"));
        }

        let message = registered.decode(payload).map_err(payload_error)?;
        let payload_key = registered.key_of(&message);
        if payload_key != subject_key {
            return Err(DecodeError::with_detail(
                DecodeErrorKind::KeyMismatch {
                    expected: subject_key.to_owned(),
                    found: payload_key,
                },
                format!(
                    "payload field `{}` differs from the subject's key",
                    registered.key_field
                ),
            ));
        }

        Ok(Envelope {
            id,
            source,
            event_type,
            time,
            key,
            data_schema: registered.full_name.clone(),
            correlation_id,
            causation_id,
            traceparent,
            payload: Bytes::copy_from_slice(payload),
        })
    }
}

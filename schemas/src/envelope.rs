//! [`Envelope`]: one event as it travels on NATS, and how it is encoded.
//!
//! An envelope is the CloudEvents 1.0 binary-mode form of an event: context
//! attributes in `ce-*` headers, the protobuf payload as the message body,
//! published on `events.<type>.<key>`. Decoding is in `decode.rs`.

use std::fmt;

use bytes::Bytes;
use prost::Message as _;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::context::EventContext;
use crate::decode::{DecodeError, DecodeErrorKind};
use crate::error::Error;
use crate::event::Event;
use crate::header_value;
use crate::headers::Headers;
use crate::registry::{Registry, RegistryErrorKind};
use crate::subject::{self, SubjectErrorKind};
use crate::wire;

/// An event with its CloudEvents context, ready to publish or just received.
///
/// ```
/// use backbone_schemas::{Envelope, EventContext, payment::v1::PaymentReceived};
///
/// let payment = PaymentReceived {
///     payment_id: "pay-1".into(),
///     user_id: "u-42".into(),
///     amount_minor: 1299,
///     currency: "USD".into(),
///     ..Default::default()
/// };
/// let envelope = Envelope::from_event(&payment, EventContext::new("payment-service")).unwrap();
/// assert_eq!(envelope.subject(), "events.payment.received.u-42");
///
/// // ...publish subject, envelope.headers(), envelope.payload; then on receipt:
/// let received = Envelope::decode(&envelope.subject(), &envelope.headers(), &envelope.payload).unwrap();
/// assert_eq!(received, envelope);
/// assert_eq!(received.event::<PaymentReceived>().unwrap(), payment);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `ce-id` and `Nats-Msg-Id`.
    pub id: Uuid,
    /// `ce-source`: the publishing service.
    pub source: String,
    /// `ce-type`: the event type name, e.g. `payment.received`.
    pub event_type: String,
    /// `ce-time`, in UTC.
    pub time: OffsetDateTime,
    /// `ce-subject` and the last subject token: the key field's value.
    pub key: String,
    /// The protobuf full name of the payload message, e.g.
    /// `backbone.payment.v1.PaymentReceived`. On the wire `ce-dataschema`
    /// carries it as a URI: `proto:backbone.payment.v1.PaymentReceived`.
    pub data_schema: String,
    /// `ce-correlationid`.
    pub correlation_id: Option<String>,
    /// `ce-causationid`.
    pub causation_id: Option<String>,
    /// `traceparent`.
    pub traceparent: Option<String>,
    /// The protobuf binary encoding of the event message.
    pub payload: Bytes,
}

/// An event that cannot be put in an envelope.
pub type EncodeError = Error<EncodeErrorKind>;

/// Why an event cannot be put in an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeErrorKind {
    /// The key field's value is not a valid subject token.
    InvalidKey(SubjectErrorKind),
    /// The source is empty or contains control characters.
    InvalidSource,
    /// The time cannot be written as RFC 3339 (year outside 0..=9999).
    InvalidTime,
    /// The correlation id is empty or contains control characters.
    InvalidCorrelationId,
    /// The causation id is empty or contains control characters.
    InvalidCausationId,
    /// The traceparent is not a W3C `traceparent`.
    InvalidTraceparent,
    /// No event has this type name.
    UnknownType(String),
    /// The JSON does not match the event message.
    InvalidJson,
}

impl fmt::Display for EncodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidKey(kind) => write!(f, "invalid event key: {kind}"),
            Self::InvalidSource => {
                f.write_str("source must be non-empty without control characters")
            }
            Self::InvalidTime => f.write_str("time is not representable in RFC 3339"),
            Self::InvalidCorrelationId => {
                f.write_str("correlation id must be non-empty without control characters")
            }
            Self::InvalidCausationId => {
                f.write_str("causation id must be non-empty without control characters")
            }
            Self::InvalidTraceparent => f.write_str("traceparent is not a W3C trace context"),
            Self::UnknownType(t) => write!(f, "unknown event type {t:?}"),
            Self::InvalidJson => f.write_str("JSON does not match the event message"),
        }
    }
}

/// True for a non-empty text without control characters.
pub(crate) fn is_valid_text(text: &str) -> bool {
    !text.is_empty() && !text.chars().any(char::is_control)
}

impl Envelope {
    /// Wraps a typed event.
    ///
    /// Validates the key (the event's key field) as a subject token and the
    /// context; fills in a UUIDv7 id and the current time when the context
    /// has none.
    pub fn from_event<E: Event>(event: &E, ctx: EventContext) -> Result<Envelope, EncodeError> {
        Self::build(
            E::TYPE,
            E::FULL_NAME,
            event.key(),
            Bytes::from(event.encode_to_vec()),
            ctx,
        )
    }

    /// Builds an event of type `type_name` from its proto3 JSON form, using
    /// the [global registry](Registry::global).
    ///
    /// ```
    /// use backbone_schemas::{Envelope, EventContext};
    /// use serde_json::json;
    ///
    /// let json = json!({"followerId": "u-42", "followeeId": "u-7"});
    /// let envelope = Envelope::from_json("user.followed", &json, EventContext::new("cli")).unwrap();
    /// assert_eq!(envelope.subject(), "events.user.followed.u-42");
    /// assert_eq!(envelope.payload_json().unwrap(), json);
    /// ```
    pub fn from_json(
        type_name: &str,
        json: &serde_json::Value,
        ctx: EventContext,
    ) -> Result<Envelope, EncodeError> {
        Self::from_json_with(Registry::global(), type_name, json, ctx)
    }

    /// [`from_json`](Self::from_json) with an explicit registry.
    pub fn from_json_with(
        registry: &Registry,
        type_name: &str,
        json: &serde_json::Value,
        ctx: EventContext,
    ) -> Result<Envelope, EncodeError> {
        let event_type = registry
            .by_type_name(type_name)
            .ok_or_else(|| EncodeError::new(EncodeErrorKind::UnknownType(type_name.to_owned())))?;
        let message = event_type.from_json(json).map_err(|e| {
            debug_assert_eq!(e.kind(), &RegistryErrorKind::InvalidJson);
            EncodeError::with_source(EncodeErrorKind::InvalidJson, e)
        })?;
        let key = event_type.key_of(&message);
        Self::build(
            &event_type.type_name,
            &event_type.full_name,
            &key,
            Bytes::from(message.encode_to_vec()),
            ctx,
        )
    }

    fn build(
        type_name: &str,
        full_name: &str,
        key: &str,
        payload: Bytes,
        ctx: EventContext,
    ) -> Result<Envelope, EncodeError> {
        subject::validate_key(key)
            .map_err(|e| EncodeError::new(EncodeErrorKind::InvalidKey(e.kind().clone())))?;
        if !is_valid_text(&ctx.source) {
            return Err(EncodeError::new(EncodeErrorKind::InvalidSource));
        }
        let checks = [
            (&ctx.correlation_id, EncodeErrorKind::InvalidCorrelationId),
            (&ctx.causation_id, EncodeErrorKind::InvalidCausationId),
        ];
        for (value, kind) in checks {
            if value.as_deref().is_some_and(|v| !is_valid_text(v)) {
                return Err(EncodeError::new(kind));
            }
        }
        if let Some(tp) = &ctx.traceparent
            && !wire::is_valid_traceparent(tp)
        {
            return Err(EncodeError::with_detail(
                EncodeErrorKind::InvalidTraceparent,
                tp,
            ));
        }
        let time = match ctx.time {
            Some(t) => t.to_offset(time::UtcOffset::UTC),
            None => {
                let now = OffsetDateTime::now_utc();
                now.replace_millisecond(now.millisecond()).unwrap_or(now)
            }
        };
        time.format(&Rfc3339)
            .map_err(|e| EncodeError::with_source(EncodeErrorKind::InvalidTime, e))?;
        Ok(Envelope {
            id: ctx.id.unwrap_or_else(Uuid::now_v7),
            source: ctx.source,
            event_type: type_name.to_owned(),
            time,
            key: key.to_owned(),
            data_schema: full_name.to_owned(),
            correlation_id: ctx.correlation_id,
            causation_id: ctx.causation_id,
            traceparent: ctx.traceparent,
            payload,
        })
    }

    /// The subject to publish on: `events.<type>.<key>`.
    ///
    /// Not re-validated: envelopes from [`from_event`](Self::from_event),
    /// [`from_json`](Self::from_json) and [`decode`](Self::decode) always
    /// have a valid type and key.
    pub fn subject(&self) -> String {
        format!(
            "{}.{}.{}",
            subject::EVENT_SUBJECT_PREFIX,
            self.event_type,
            self.key
        )
    }

    /// The `ce-time` value: RFC 3339 in UTC (`Z`), with as many fractional
    /// digits as needed.
    pub fn time_rfc3339(&self) -> String {
        self.time.format(&Rfc3339).unwrap_or_default()
    }

    /// The headers to publish with, in this order: `ce-specversion`, `ce-id`,
    /// `ce-source`, `ce-type`, `ce-time`, `ce-subject`, `ce-dataschema`,
    /// `content-type`, then `ce-correlationid`, `ce-causationid`,
    /// `traceparent` when set, and `Nats-Msg-Id`. Values are
    /// percent-encoded (see [`header_value`]).
    pub fn headers(&self) -> Headers {
        let id = self.id.to_string();
        let mut headers = Headers::new();
        let mut put = |name: &str, value: &str| {
            headers.append(name, header_value::encode(value).into_owned());
        };
        put(wire::CE_SPECVERSION, wire::SPEC_VERSION);
        put(wire::CE_ID, &id);
        put(wire::CE_SOURCE, &self.source);
        put(wire::CE_TYPE, &self.event_type);
        put(wire::CE_TIME, &self.time_rfc3339());
        put(wire::CE_SUBJECT, &self.key);
        put(
            wire::CE_DATASCHEMA,
            &wire::data_schema_uri(&self.data_schema),
        );
        put(wire::CONTENT_TYPE, wire::CONTENT_TYPE_PROTOBUF);
        if let Some(v) = &self.correlation_id {
            put(wire::CE_CORRELATIONID, v);
        }
        if let Some(v) = &self.causation_id {
            put(wire::CE_CAUSATIONID, v);
        }
        if let Some(v) = &self.traceparent {
            put(wire::TRACEPARENT, v);
        }
        put(wire::NATS_MSG_ID, &id);
        headers
    }

    /// The payload as the typed event `E`.
    ///
    /// Fails with `TypeMismatch` when the envelope holds another event type,
    /// or `PayloadNotDecodable`.
    pub fn event<E: Event>(&self) -> Result<E, DecodeError> {
        if self.event_type != E::TYPE || self.data_schema != E::FULL_NAME {
            return Err(DecodeError::new(DecodeErrorKind::TypeMismatch {
                expected: E::TYPE.to_owned(),
                found: self.event_type.clone(),
            }));
        }
        E::decode(self.payload.as_ref())
            .map_err(|e| DecodeError::with_source(DecodeErrorKind::PayloadNotDecodable, e))
    }

    /// The payload as proto3 JSON, via the global registry.
    pub fn payload_json(&self) -> Result<serde_json::Value, DecodeError> {
        let registry = Registry::global();
        let event_type = registry.by_type_name(&self.event_type).ok_or_else(|| {
            DecodeError::new(DecodeErrorKind::UnknownType(self.event_type.clone()))
        })?;
        event_type
            .payload_to_json(&self.payload)
            .map_err(crate::decode::payload_error)
    }
}

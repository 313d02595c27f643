//! Events that arrive from outside as CloudEvents, whatever carried them:
//! an HTTP request, an AMQP message, a Redis stream entry.
//!
//! A transport hands over the attributes (as `ce-*` headers, values
//! percent-encoded as [`crate::header_value`] does) and the data, or a
//! structured-mode JSON object; this module fills in what a producer may
//! leave out and validates the result with the one strict validator,
//! [`Envelope::decode`], so an event from any transport is refused for
//! exactly the reasons (and [`DecodeErrorKind`] names) a consumer would
//! dead-letter it for.
//!
//! What may be left out: `time` (the current time), `subject` (the
//! payload's key field) and `dataschema` (the registered message name).
//! `specversion`, `id`, `source` and `type` are required, as CloudEvents
//! requires them; `id` becomes the broker's deduplication id, so a
//! retried delivery is a duplicate instead of a second event.
//!
//! The structured form written out ([`to_structured`]) carries the data
//! as `data_base64` (the protobuf payload as stored), so a round trip
//! keeps the payload byte for byte.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{DecodeError, DecodeErrorKind, Envelope, Headers, Registry, header_value, wire};

/// The attributes carried as headers: CloudEvents name, header name.
pub const ATTRIBUTES: [(&str, &str); 10] = [
    ("specversion", wire::CE_SPECVERSION),
    ("id", wire::CE_ID),
    ("source", wire::CE_SOURCE),
    ("type", wire::CE_TYPE),
    ("time", wire::CE_TIME),
    ("subject", wire::CE_SUBJECT),
    ("dataschema", wire::CE_DATASCHEMA),
    ("correlationid", wire::CE_CORRELATIONID),
    ("causationid", wire::CE_CAUSATIONID),
    ("traceparent", wire::TRACEPARENT),
];

/// The media type of one structured-mode event.
pub const STRUCTURED: &str = "application/cloudevents+json";

/// An event's data as it arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// The protobuf payload, as stored.
    Protobuf(Bytes),
    /// The message's proto3 JSON form.
    Json(Value),
}

/// Why a structured-mode event was refused.
#[derive(Debug)]
pub enum StructuredError {
    /// Not the shape of a structured-mode event (not an object; both
    /// `data` and `data_base64`).
    Malformed(String),
    /// A well-formed event that is not a valid Backbone event.
    Invalid(DecodeError),
}

impl From<DecodeError> for StructuredError {
    fn from(e: DecodeError) -> Self {
        Self::Invalid(e)
    }
}

impl std::fmt::Display for StructuredError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "not a structured CloudEvent: {why}"),
            Self::Invalid(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StructuredError {}

/// A structured-mode event: attributes as members, data in `data` (proto3
/// JSON) or `data_base64` (protobuf).
pub fn from_structured(event: Value) -> Result<Envelope, StructuredError> {
    let Value::Object(mut event) = event else {
        return Err(StructuredError::Malformed(
            "a CloudEvent is a JSON object".into(),
        ));
    };
    let mut headers = Headers::new();
    for (attribute, name) in ATTRIBUTES {
        match event.get(attribute) {
            None | Some(Value::Null) => {}
            Some(Value::String(value)) => headers.insert(name, header_value::encode(value)),
            Some(other) => {
                return Err(DecodeError::with_detail(
                    DecodeErrorKind::InvalidHeader {
                        name,
                        value: other.to_string(),
                    },
                    "CloudEvents attributes are strings",
                )
                .into());
            }
        }
    }
    let data = match (event.remove("data"), event.remove("data_base64")) {
        (Some(json), None) => Data::Json(json),
        (None, Some(Value::String(b64))) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(|bytes| Data::Protobuf(bytes.into()))
            .map_err(|e| {
                DecodeError::with_detail(DecodeErrorKind::PayloadNotDecodable, e.to_string())
            })?,
        (None, None) => Data::Json(Value::Object(Map::new())),
        _ => {
            return Err(StructuredError::Malformed(
                "give data (proto3 JSON) or data_base64 (protobuf), not both".into(),
            ));
        }
    };
    Ok(from_attributes(headers, data)?)
}

/// An event from its attributes (`ce-*` headers, percent-encoded) and
/// data: fills in what may be left out, then validates with
/// [`Envelope::decode`].
pub fn from_attributes(mut headers: Headers, data: Data) -> Result<Envelope, DecodeError> {
    let type_name = single(&headers, wire::CE_TYPE)?
        .ok_or_else(|| DecodeError::new(DecodeErrorKind::MissingHeader(wire::CE_TYPE)))?;
    let event_type = Registry::global()
        .by_type_name(&type_name)
        .ok_or_else(|| DecodeError::new(DecodeErrorKind::UnknownType(type_name.clone())))?;
    let payload = match data {
        Data::Protobuf(bytes) => bytes,
        Data::Json(json) => event_type
            .json_to_payload(&json)
            .map(Bytes::from)
            .map_err(|e| DecodeError::with_source(DecodeErrorKind::PayloadNotDecodable, e))?,
    };
    let key = match single(&headers, wire::CE_SUBJECT)? {
        Some(key) => key,
        None => {
            let message = event_type
                .decode(&payload)
                .map_err(|e| DecodeError::with_source(DecodeErrorKind::PayloadNotDecodable, e))?;
            let key = event_type.key_of(&message);
            headers.insert(wire::CE_SUBJECT, header_value::encode(&key));
            key
        }
    };
    if headers.get(wire::CE_TIME).is_none() {
        let now = OffsetDateTime::now_utc();
        let now = now
            .replace_nanosecond(now.millisecond() as u32 * 1_000_000)
            .unwrap_or(now);
        headers.insert(wire::CE_TIME, now.format(&Rfc3339).unwrap_or_default());
    }
    if headers.get(wire::CE_DATASCHEMA).is_none() {
        headers.insert(
            wire::CE_DATASCHEMA,
            wire::data_schema_uri(&event_type.full_name),
        );
    }
    if let Some(id) = headers.get(wire::CE_ID) {
        let id = id.to_owned();
        headers.insert(wire::NATS_MSG_ID, id);
    }
    headers.insert(wire::CONTENT_TYPE, wire::CONTENT_TYPE_PROTOBUF);
    let subject = format!("events.{type_name}.{key}");
    Envelope::decode(&subject, &headers, &payload)
}

/// The structured-mode JSON of a stored event's `headers` and protobuf
/// `payload`: every CloudEvents attribute present (percent-decoded), the
/// data as `data_base64` with `datacontenttype: application/protobuf`.
pub fn to_structured(headers: &Headers, payload: &[u8]) -> Value {
    let mut event = Map::new();
    for (attribute, name) in ATTRIBUTES {
        if let Some(raw) = headers.get(name) {
            let value = header_value::decode(raw).map_or_else(|_| raw.to_owned(), |v| v.into());
            event.insert(attribute.to_owned(), Value::String(value));
        }
    }
    event.insert(
        "datacontenttype".to_owned(),
        Value::String(wire::CONTENT_TYPE_PROTOBUF.to_owned()),
    );
    event.insert(
        "data_base64".to_owned(),
        Value::String(base64::engine::general_purpose::STANDARD.encode(payload)),
    );
    Value::Object(event)
}

/// The one percent-decoded value of `name`; a repeated or undecodable
/// value is `InvalidHeader`, as [`Envelope::decode`] would say.
fn single(headers: &Headers, name: &'static str) -> Result<Option<String>, DecodeError> {
    let mut values = headers.get_all(name);
    let Some(raw) = values.next() else {
        return Ok(None);
    };
    let invalid = |detail: String| {
        DecodeError::with_detail(
            DecodeErrorKind::InvalidHeader {
                name,
                value: raw.to_owned(),
            },
            detail,
        )
    };
    if values.next().is_some() {
        return Err(invalid("header is repeated".into()));
    }
    header_value::decode(raw)
        .map(|v| Some(v.into_owned()))
        .map_err(invalid)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ID: &str = "0190c2a4-7e1f-7c3a-9d55-4b8e2f6a1c00";

    #[test]
    fn structured_round_trips_the_payload_byte_for_byte() {
        let event = json!({
            "specversion": "1.0", "id": ID, "source": "social-api", "type": "user.followed",
            "data": {"followerId": "u-1", "followeeId": "u-2"},
        });
        let envelope = from_structured(event).unwrap();
        let message = envelope.headers();
        let written = to_structured(&message, &envelope.payload);
        assert!(written["data_base64"].is_string());
        let again = from_structured(written).unwrap();
        assert_eq!(again.payload, envelope.payload);
        assert_eq!(again.id, envelope.id);
        assert_eq!(again.subject(), "events.user.followed.u-1");
    }

    #[test]
    fn malformed_and_invalid_are_told_apart() {
        assert!(matches!(
            from_structured(json!([1])),
            Err(StructuredError::Malformed(_))
        ));
        let both = json!({"type": "user.followed", "data": {}, "data_base64": ""});
        assert!(matches!(
            from_structured(both),
            Err(StructuredError::Malformed(_))
        ));
        let unknown = json!({"specversion": "1.0", "id": ID, "source": "s", "type": "user.nope"});
        match from_structured(unknown) {
            Err(StructuredError::Invalid(e)) => {
                assert_eq!(e.kind(), &DecodeErrorKind::UnknownType("user.nope".into()))
            }
            other => panic!("{other:?}"),
        }
    }
}

//! Events from HTTP requests, per the CloudEvents HTTP protocol binding.
//!
//! - **Binary mode**: the attributes are `ce-*` HTTP headers (and W3C
//!   `traceparent`), the body is the event data: `application/protobuf`
//!   (the payload as stored) or `application/json` (the message's proto3
//!   JSON form).
//! - **Structured mode**: `application/cloudevents+json`, one JSON object
//!   with the attributes as members and the data in `data` (proto3 JSON) or
//!   `data_base64` (protobuf).
//! - **Batch**: `application/cloudevents-batch+json`, a JSON array of
//!   structured events.
//!
//! Over HTTP `ce-time`, `ce-subject` and `ce-dataschema` may be left out:
//! the server fills in the current time, the payload's key field and the
//! registered message name. `ce-specversion`, `ce-id`, `ce-source` and
//! `ce-type` are required, as CloudEvents requires them; `ce-id` is what
//! makes a retried request a duplicate instead of a second event.
//!
//! Every event then goes through the one strict validator,
//! [`Envelope::decode`], so an HTTP publish is refused for exactly the
//! reasons (and with exactly the [`DecodeErrorKind`] names) a consumer
//! would dead-letter it for.

use axum::http::{HeaderMap, header};
use backbone_schemas::{
    DecodeError, DecodeErrorKind, Envelope, Headers, Registry, header_value, wire,
};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::api_error::ApiError;

/// The media types `POST /v1/events` reads.
pub const MEDIA_TYPES: [&str; 4] = [
    wire::CONTENT_TYPE_PROTOBUF,
    "application/json",
    STRUCTURED,
    BATCH,
];
const STRUCTURED: &str = "application/cloudevents+json";
const BATCH: &str = "application/cloudevents-batch+json";

/// The attributes carried as headers: CloudEvents name, header name.
const ATTRIBUTES: [(&str, &str); 10] = [
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

/// An event's data as it arrived.
enum Data {
    Protobuf(Bytes),
    Json(Value),
}

/// The validated events of one request.
#[derive(Debug)]
pub struct Incoming {
    /// The events, in request order.
    pub events: Vec<Envelope>,
    /// Whether they came as a batch (answered with `results`), even of one.
    pub batch: bool,
}

/// The events of a `POST /v1/events` request, each validated, or the first
/// error (with its batch `index`). A batch is all or nothing: one invalid
/// event refuses the request before anything is published.
pub fn events(headers: &HeaderMap, body: Bytes) -> Result<Incoming, ApiError> {
    let batch = media_type(headers).as_deref() == Some(BATCH);
    read(headers, body).map(|events| Incoming { events, batch })
}

fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
}

fn read(headers: &HeaderMap, body: Bytes) -> Result<Vec<Envelope>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    match media_type(headers).as_deref() {
        Some(wire::CONTENT_TYPE_PROTOBUF) => Ok(vec![envelope(
            binary_attributes(headers)?,
            Data::Protobuf(body),
        )?]),
        Some("application/json") => {
            let json = serde_json::from_slice(&body).map_err(|e| {
                DecodeError::with_detail(DecodeErrorKind::PayloadNotDecodable, e.to_string())
            })?;
            Ok(vec![envelope(
                binary_attributes(headers)?,
                Data::Json(json),
            )?])
        }
        Some(STRUCTURED) => {
            let event = serde_json::from_slice(&body)
                .map_err(|e| ApiError::malformed(format!("not a CloudEvents JSON object: {e}")))?;
            Ok(vec![structured(event)?])
        }
        Some(BATCH) => {
            let Value::Array(batch) = serde_json::from_slice(&body)
                .map_err(|e| ApiError::malformed(format!("not a CloudEvents JSON batch: {e}")))?
            else {
                return Err(ApiError::malformed("a CloudEvents batch is a JSON array"));
            };
            if batch.is_empty() {
                return Err(ApiError::malformed("the batch is empty"));
            }
            batch
                .into_iter()
                .enumerate()
                .map(|(i, event)| structured(event).map_err(|e| e.at(i)))
                .collect()
        }
        _ => Err(ApiError::unsupported_media_type(content_type, &MEDIA_TYPES)),
    }
}

/// The `ce-*` and `traceparent` headers of a binary-mode request, as
/// received (percent-encoded where the client encoded them).
fn binary_attributes(headers: &HeaderMap) -> Result<Headers, DecodeError> {
    let mut out = Headers::new();
    for (_, name) in ATTRIBUTES {
        for value in headers.get_all(name) {
            let value = value.to_str().map_err(|_| {
                DecodeError::with_detail(
                    DecodeErrorKind::InvalidHeader {
                        name,
                        value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    },
                    "not visible ASCII; percent-encode it",
                )
            })?;
            out.append(name, value);
        }
    }
    Ok(out)
}

/// A structured-mode event: attributes as members, data in `data` or
/// `data_base64`.
pub(crate) fn structured(event: Value) -> Result<Envelope, ApiError> {
    let Value::Object(mut event) = event else {
        return Err(ApiError::malformed("a CloudEvent is a JSON object"));
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
            return Err(ApiError::malformed(
                "give data (proto3 JSON) or data_base64 (protobuf), not both",
            ));
        }
    };
    Ok(envelope(headers, data)?)
}

/// Fills in what HTTP may leave out, then validates with
/// [`Envelope::decode`].
fn envelope(mut headers: Headers, data: Data) -> Result<Envelope, DecodeError> {
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
    use axum::http::HeaderValue;
    use serde_json::json;

    use super::*;

    fn binary(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    const ID: &str = "0190c2a4-7e1f-7c3a-9d55-4b8e2f6a1c00";

    fn followed(extra: &[(&'static str, &str)]) -> HeaderMap {
        let mut pairs = vec![
            ("content-type", "application/json"),
            ("ce-specversion", "1.0"),
            ("ce-id", ID),
            ("ce-source", "social-api"),
            ("ce-type", "user.followed"),
        ];
        pairs.extend_from_slice(extra);
        binary(&pairs)
    }

    fn kind(result: Result<Incoming, ApiError>) -> &'static str {
        result.unwrap_err().kind
    }

    #[test]
    fn binary_json_fills_in_time_subject_and_schema() {
        let body = json!({"followerId": "u-1", "followeeId": "u-2"}).to_string();
        let events = events(&followed(&[]), body.into()).unwrap().events;
        assert_eq!(events[0].subject(), "events.user.followed.u-1");
        assert_eq!(events[0].id.to_string(), ID);
        assert_eq!(events[0].data_schema, "backbone.user.v1.UserFollowed");
    }

    #[test]
    fn every_bad_input_class_has_its_kind() {
        let body = || Bytes::from(json!({"followerId": "u-1"}).to_string());
        assert_eq!(
            kind(events(&followed(&[("ce-type", "user.nope")]), body())),
            "InvalidHeader"
        );
        let unknown = binary(&[
            ("content-type", "application/json"),
            ("ce-type", "user.nope"),
        ]);
        assert_eq!(kind(events(&unknown, body())), "UnknownType");
        assert_eq!(
            kind(events(&followed(&[]), "{not json".into())),
            "PayloadNotDecodable"
        );
        let wrong_field = Bytes::from(json!({"nope": 1}).to_string());
        assert_eq!(
            kind(events(&followed(&[]), wrong_field)),
            "PayloadNotDecodable"
        );
        let bad_key = Bytes::from(json!({"followerId": "u 1"}).to_string());
        assert_eq!(kind(events(&followed(&[]), bad_key)), "InvalidSubject");
        let mismatch = followed(&[("ce-subject", "u-9")]);
        assert_eq!(kind(events(&mismatch, body())), "KeyMismatch");
        let mut no_id = followed(&[]);
        no_id.remove("ce-id");
        assert_eq!(kind(events(&no_id, body())), "MissingHeader");
        let mut text = followed(&[]);
        text.insert("content-type", HeaderValue::from_static("text/plain"));
        assert_eq!(kind(events(&text, body())), "UnsupportedMediaType");
    }

    #[test]
    fn structured_and_batch_modes_read_the_same_attributes() {
        let event = json!({
            "specversion": "1.0", "id": ID, "source": "social-api", "type": "user.followed",
            "data": {"followerId": "u-1", "followeeId": "u-2"},
        });
        let headers = binary(&[("content-type", STRUCTURED)]);
        let one = events(&headers, event.to_string().into()).unwrap().events;
        assert_eq!(one[0].key, "u-1");
        let mut second = event.clone();
        second["id"] = json!(7);
        let batch = json!([event, second]).to_string();
        let err = events(&binary(&[("content-type", BATCH)]), batch.into()).unwrap_err();
        assert_eq!(
            (err.kind, err.body()["index"].clone()),
            ("InvalidHeader", json!(1))
        );
        let not_array = events(&binary(&[("content-type", BATCH)]), "{}".into());
        assert_eq!(kind(not_array), "MalformedRequest");
    }
}

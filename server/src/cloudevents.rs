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
//! What may be left out and how every event is validated is
//! [`backbone_schemas::cloudevents`]'s, the same for every transport.

use axum::http::{HeaderMap, header};
use backbone_schemas::{
    DecodeError, DecodeErrorKind, Envelope, Headers,
    cloudevents::{self, ATTRIBUTES, Data, STRUCTURED, StructuredError},
    wire,
};
use bytes::Bytes;
use serde_json::Value;

use crate::api_error::ApiError;

/// The media types `POST /v1/events` reads.
pub const MEDIA_TYPES: [&str; 4] = [
    wire::CONTENT_TYPE_PROTOBUF,
    "application/json",
    STRUCTURED,
    BATCH,
];
const BATCH: &str = "application/cloudevents-batch+json";

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
        Some(wire::CONTENT_TYPE_PROTOBUF) => Ok(vec![cloudevents::from_attributes(
            binary_attributes(headers)?,
            Data::Protobuf(body),
        )?]),
        Some("application/json") => {
            let json = serde_json::from_slice(&body).map_err(|e| {
                DecodeError::with_detail(DecodeErrorKind::PayloadNotDecodable, e.to_string())
            })?;
            Ok(vec![cloudevents::from_attributes(
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

/// A structured-mode event, as [`cloudevents::from_structured`] reads it.
pub(crate) fn structured(event: Value) -> Result<Envelope, ApiError> {
    cloudevents::from_structured(event).map_err(|e| match e {
        StructuredError::Malformed(why) => ApiError::malformed(why),
        StructuredError::Invalid(e) => e.into(),
    })
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

//! Events on their way across: [`Outgoing`] (from the log, to a broker)
//! and [`Received`] (from a broker, to the log), with the mapping rules
//! every broker shares.
//!
//! The message id on every broker is the event's `ce-id`, so a copy sent
//! again after a crash is recognisable downstream, and a message taken in
//! twice is dropped by the log's deduplication.

use std::{collections::HashMap, time::SystemTime};

use backbone_broker::{OutboundMessage, StoredMessage};
use backbone_consumers::dead_letter::{
    DLQ_CONSUMER, DLQ_DELIVERIES, DLQ_ERROR, DLQ_MSG_ID, DLQ_SEQUENCE, DLQ_STREAM, DLQ_SUBJECT,
    DLQ_TIME,
};
use backbone_schemas::{DecodeError, Envelope, Headers, cloudevents, header_value, mapping, wire};
use bytes::Bytes;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::config::BridgeConfig;

/// The prefix of CloudEvents attributes among AMQP application properties
/// (RabbitMQ headers), per the CloudEvents AMQP binding.
pub const AMQP_PREFIX: &str = "cloudEvents:";
/// The binding's alternative prefix (for JMS-era clients), read inbound.
pub const AMQP_PREFIX_ALT: &str = "cloudEvents_";
/// The header of an inbound dead letter holding the external message's
/// properties and headers, as JSON.
pub const DLQ_SOURCE_PROPERTIES: &str = "Backbone-Dlq-Source-Properties";
/// The header of an inbound dead letter whose body the log refused (over
/// its size limit): the body's size and the refusal.
pub const DLQ_BODY_DROPPED: &str = "Backbone-Dlq-Body-Dropped";

/// An event from the log, mapped for a broker.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Its stream sequence.
    pub seq: u64,
    /// `ce-id`: the message id on the broker.
    pub id: String,
    /// `ce-type`.
    pub event_type: String,
    /// Where it goes: routing key, stream key or channel.
    pub address: String,
    /// Every CloudEvents attribute present, percent-decoded: (name, value).
    pub attributes: Vec<(&'static str, String)>,
    /// The stored headers, as stored.
    pub headers: Headers,
    /// The protobuf payload, byte for byte.
    pub payload: Bytes,
    /// When it was stored, milliseconds since the Unix epoch.
    pub stored_ms: u64,
}

impl Outgoing {
    /// The event in `message` mapped by `config`; `Ok(None)` when the
    /// bridge does not send its type, `Err` when it is not a valid event
    /// (it is then dead-lettered, as a consumer would).
    pub fn from_stored(
        message: &StoredMessage,
        config: &BridgeConfig,
    ) -> Result<Option<Self>, DecodeError> {
        let envelope = Envelope::decode(&message.subject, &message.headers, &message.payload)?;
        if !config.sends(&envelope.event_type) {
            return Ok(None);
        }
        let attributes = Self::attributes_of(&message.headers);
        let stored_ms = message
            .time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Ok(Some(Self {
            seq: message.seq,
            id: envelope.id.to_string(),
            address: config.address_of(&envelope.event_type, &envelope.key),
            event_type: envelope.event_type,
            attributes,
            headers: message.headers.clone(),
            payload: message.payload.clone(),
            stored_ms,
        }))
    }

    /// Every CloudEvents attribute among `headers`, percent-decoded:
    /// (name, value).
    pub fn attributes_of(headers: &Headers) -> Vec<(&'static str, String)> {
        cloudevents::ATTRIBUTES
            .iter()
            .filter_map(|(attribute, name)| {
                let raw = headers.get(name)?;
                let value = header_value::decode(raw).map_or_else(|_| raw.to_owned(), Into::into);
                Some((*attribute, value))
            })
            .collect()
    }

    /// The structured-mode JSON form (the Redis form in
    /// `docs/bridges.md`).
    pub fn structured(&self) -> String {
        cloudevents::to_structured(&self.headers, &self.payload).to_string()
    }
}

/// A message taken from a broker, not yet an event.
#[derive(Debug, Clone)]
pub struct Received<A> {
    /// What acknowledges it upstream.
    pub ack: A,
    /// Where it came from, e.g. `rabbitmq:orders-in` (queue), `redis:chat`.
    pub source: String,
    /// Its routing key or stream key.
    pub address: String,
    /// The broker's message id, when it has one.
    pub message_id: Option<String>,
    /// Its content type, when it has one.
    pub content_type: Option<String>,
    /// CloudEvents attributes found in its properties, as `ce-*` headers
    /// (percent-encoded).
    pub attributes: Headers,
    /// Every property and header as received, for a dead letter.
    pub properties: Map<String, Value>,
    /// What a mapping's `query` sources read: the routing key (or stream
    /// key) as `routing_key`, `message_id`, and every string header (or
    /// stream entry field) by name.
    pub params: HashMap<String, String>,
    /// The body, byte for byte.
    pub body: Bytes,
}

/// Why a received message is not an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The kind's name: a `DecodeErrorKind` name, `MalformedEvent`,
    /// `NotACloudEvent`, `UnsupportedMediaType`, or the publish error's.
    pub kind: String,
    /// Why, for the dead letter.
    pub reason: String,
}

impl Rejection {
    fn new(kind: &str, reason: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            reason: reason.into(),
        }
    }
}

impl From<DecodeError> for Rejection {
    fn from(e: DecodeError) -> Self {
        Self::new(e.kind().name(), e.to_string())
    }
}

impl<A> Received<A> {
    /// The events it carries: one in structured mode (by content type
    /// `application/cloudevents+json`) or binary mode (CloudEvents
    /// attributes in its properties; data `application/protobuf`, the
    /// default, or `application/json`); else what `config`'s mapping makes
    /// of its JSON (none when nothing matches); else `NotACloudEvent`.
    pub fn events(&self, config: &BridgeConfig) -> Result<Vec<Envelope>, Rejection> {
        let media = self
            .content_type
            .as_deref()
            .and_then(|c| c.split(';').next())
            .map(|c| c.trim().to_ascii_lowercase());
        if media.as_deref() == Some(cloudevents::STRUCTURED) {
            let json = serde_json::from_slice(&self.body)
                .map_err(|e| Rejection::new("MalformedEvent", format!("not JSON: {e}")))?;
            return structured(json).map(|e| vec![e]);
        }
        if !self.attributes.is_empty() {
            return self.binary(media.as_deref()).map(|e| vec![e]);
        }
        let Some(mapping) = &config.mapping else {
            return Err(Rejection::new(
                "NotACloudEvent",
                "no CloudEvents attributes (cloudEvents:type, ...), not application/cloudevents+json, and the bridge has no mapping",
            ));
        };
        let body: Value = serde_json::from_slice(&self.body)
            .map_err(|e| Rejection::new("MalformedEvent", format!("not JSON: {e}")))?;
        let delivery = mapping::Delivery {
            body: &body,
            query: &self.params,
        };
        let namespace = format!("backbone-bridge/{}", config.name);
        mapping
            .events(&namespace, &config.mapped_source(), &delivery)
            .map_err(|e| Rejection::new("Unmappable", format!("{}: {}", e.event_type, e.reason)))?
            .into_iter()
            .map(structured)
            .collect()
    }

    fn binary(&self, media: Option<&str>) -> Result<Envelope, Rejection> {
        let data = match media {
            None | Some(wire::CONTENT_TYPE_PROTOBUF) => {
                cloudevents::Data::Protobuf(self.body.clone())
            }
            Some("application/json") => cloudevents::Data::Json(
                serde_json::from_slice(&self.body)
                    .map_err(|e| Rejection::new("PayloadNotDecodable", e.to_string()))?,
            ),
            Some(other) => {
                return Err(Rejection::new(
                    "UnsupportedMediaType",
                    format!("content type {other} is not application/protobuf or application/json"),
                ));
            }
        };
        Ok(cloudevents::from_attributes(self.attributes.clone(), data)?)
    }

    /// The dead letter of this message: its body byte for byte on
    /// `deadletter.<consumer>.inbound`, with the reason and its properties.
    /// Its id is a digest of the message, so taking the same message in
    /// again stores one letter.
    pub fn dead_letter(&self, config: &BridgeConfig, rejection: &Rejection) -> OutboundMessage {
        let consumer = config.consumer_name();
        let properties = Value::Object(self.properties.clone()).to_string();
        let mut digest = Sha256::new();
        digest.update(self.address.as_bytes());
        digest.update([0]);
        digest.update(properties.as_bytes());
        digest.update([0]);
        digest.update(&self.body);
        let id = format!("{consumer}:{}", &hex::encode(digest.finalize())[..32]);
        let time = time_rfc3339(SystemTime::now());
        let mut headers = Headers::new();
        headers.append(wire::NATS_MSG_ID, id.clone());
        headers.append(DLQ_CONSUMER, consumer.clone());
        headers.append(DLQ_STREAM, self.source.clone());
        headers.append(DLQ_SUBJECT, one_line(&self.address));
        headers.append(DLQ_SEQUENCE, "0");
        headers.append(DLQ_DELIVERIES, "1");
        headers.append(
            DLQ_ERROR,
            one_line(&format!("{}: {}", rejection.kind, rejection.reason)),
        );
        headers.append(DLQ_TIME, time);
        if let Some(original) = &self.message_id {
            headers.append(DLQ_MSG_ID, one_line(original));
        }
        headers.append(DLQ_SOURCE_PROPERTIES, one_line(&properties));
        OutboundMessage {
            subject: format!("deadletter.{consumer}.inbound"),
            headers,
            payload: self.body.clone(),
            msg_id: Some(id),
            expected_last_subject_seq: None,
        }
    }
}

/// A structured-mode event, or why it is not one.
fn structured(json: Value) -> Result<Envelope, Rejection> {
    cloudevents::from_structured(json).map_err(|e| match e {
        cloudevents::StructuredError::Malformed(why) => Rejection::new("MalformedEvent", why),
        cloudevents::StructuredError::Invalid(e) => e.into(),
    })
}

/// Header values are one line: control characters become spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn time_rfc3339(time: SystemTime) -> String {
    use time::{OffsetDateTime, format_description::well_known::Rfc3339};
    OffsetDateTime::from(time)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// An AMQP timestamp (milliseconds since the Unix epoch, signed) as RFC
/// 3339, for a `time` attribute given as one; `None` out of range.
pub(crate) fn unix_millis_rfc3339(millis: i64) -> Option<String> {
    use time::{OffsetDateTime, format_description::well_known::Rfc3339};
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

/// The `ce-*` header of a CloudEvents attribute name, when it is one
/// Backbone carries.
pub fn attribute_header(attribute: &str) -> Option<&'static str> {
    cloudevents::ATTRIBUTES
        .iter()
        .find(|(name, _)| *name == attribute)
        .map(|(_, header)| *header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BrokerKind, Direction};

    fn received(attributes: Headers, content_type: Option<&str>, body: &[u8]) -> Received<()> {
        Received {
            ack: (),
            source: "rabbitmq:in".into(),
            address: "user.followed".into(),
            message_id: None,
            content_type: content_type.map(str::to_owned),
            attributes,
            properties: Map::new(),
            params: HashMap::new(),
            body: Bytes::copy_from_slice(body),
        }
    }

    #[test]
    fn every_rejection_has_its_kind() {
        let config = BridgeConfig::new("in", Direction::Inbound, BrokerKind::Rabbitmq, "amqp://h");
        let kind = |r: Received<()>| r.events(&config).unwrap_err().kind;
        assert_eq!(kind(received(Headers::new(), None, b"x")), "NotACloudEvent");
        assert_eq!(
            kind(received(
                Headers::new(),
                Some(cloudevents::STRUCTURED),
                b"{"
            )),
            "MalformedEvent"
        );
        let mut attributes = Headers::new();
        attributes.insert(wire::CE_TYPE, "user.nope");
        assert_eq!(kind(received(attributes.clone(), None, b"")), "UnknownType");
        assert_eq!(
            kind(received(attributes, Some("text/plain"), b"")),
            "UnsupportedMediaType"
        );
    }

    #[test]
    fn a_letter_keeps_the_body_and_the_same_message_gives_the_same_id() {
        let config = BridgeConfig::new("in", Direction::Inbound, BrokerKind::Rabbitmq, "amqp://h");
        let message = received(Headers::new(), None, b"\xff\x00 raw");
        let rejection = message.events(&config).unwrap_err();
        let letter = message.dead_letter(&config, &rejection);
        assert_eq!(letter.subject, "deadletter.bridge-in.inbound");
        assert_eq!(&letter.payload[..], b"\xff\x00 raw");
        assert_eq!(
            letter.msg_id,
            message.dead_letter(&config, &rejection).msg_id
        );
        assert_eq!(letter.headers.get(DLQ_STREAM), Some("rabbitmq:in"));
    }
}

//! Stored messages decoded for people: envelope fields plus the payload as
//! proto3 JSON, or the decode error for messages that are not valid events.

use std::time::SystemTime;

use backbone_broker::StoredMessage;
use backbone_schemas::Envelope;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::output::Records;

/// Columns of [`EventView::push_to`], in order.
pub(crate) const EVENT_COLUMNS: &[&str] = &[
    "seq",
    "time",
    "type",
    "key",
    "source",
    "correlation_id",
    "id",
    "data",
];

/// One stored message, decoded as far as it goes.
#[derive(Debug, Clone)]
pub(crate) struct EventView {
    /// The stored message.
    pub(crate) message: StoredMessage,
    /// The decoded envelope, or why it is not a valid event.
    pub(crate) envelope: Result<Envelope, String>,
    /// The payload as proto3 JSON (null when not decodable).
    pub(crate) data: Value,
}

impl EventView {
    /// Decodes `message` through the schemas registry.
    pub(crate) fn decode(message: StoredMessage) -> Self {
        let envelope = match &message.malformed_headers {
            Some(malformed) => Err(format!("unreadable message: {}", malformed.reason)),
            None => Envelope::decode(&message.subject, &message.headers, &message.payload)
                .map_err(|e| e.to_string()),
        };
        let data = envelope
            .as_ref()
            .ok()
            .and_then(|e| e.payload_json().ok())
            .unwrap_or(Value::Null);
        Self {
            message,
            envelope,
            data,
        }
    }

    /// The event type, or `?` for an invalid message.
    pub(crate) fn event_type(&self) -> &str {
        self.envelope
            .as_ref()
            .map(|e| e.event_type.as_str())
            .unwrap_or("?")
    }

    /// The whole view as one JSON object (for `json`/`ndjson` output).
    pub(crate) fn to_json(&self) -> Value {
        let mut object = json!({
            "stream": self.message.stream,
            "seq": self.message.seq,
            "subject": self.message.subject,
            "stored_at": format_time(self.message.time),
        });
        match &self.envelope {
            Ok(e) => {
                object["id"] = json!(e.id.to_string());
                object["type"] = json!(e.event_type);
                object["key"] = json!(e.key);
                object["source"] = json!(e.source);
                object["time"] = json!(e.time_rfc3339());
                object["correlation_id"] = json!(e.correlation_id);
                object["causation_id"] = json!(e.causation_id);
                object["data"] = self.data.clone();
            }
            Err(error) => object["decode_error"] = json!(error),
        }
        object
    }

    /// Appends this view as a row under [`EVENT_COLUMNS`].
    pub(crate) fn push_to(&self, records: &mut Records) {
        let seq = json!(self.message.seq);
        match &self.envelope {
            Ok(e) => records.push(vec![
                seq,
                json!(e.time_rfc3339()),
                json!(e.event_type),
                json!(e.key),
                json!(e.source),
                json!(e.correlation_id),
                json!(e.id.to_string()),
                self.data.clone(),
            ]),
            Err(error) => records.push(vec![
                seq,
                json!(format_time(self.message.time)),
                json!("?"),
                json!(self.message.subject),
                Value::Null,
                Value::Null,
                Value::Null,
                json!({ "decode_error": error }),
            ]),
        }
    }
}

/// A system time as RFC 3339 in UTC.
pub(crate) fn format_time(time: SystemTime) -> String {
    OffsetDateTime::from(time)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// Parses an RFC 3339 time given on the command line.
pub(crate) fn parse_time(text: &str) -> Result<SystemTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(SystemTime::from)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time (e.g. 2025-06-01T12:00:00Z): {e}"))
}

#[cfg(test)]
mod tests {
    use backbone_schemas::sample;
    use bytes::Bytes;

    use super::*;

    #[test]
    fn valid_and_invalid_messages_both_render() {
        let envelope = sample::sample_event("payment.received");
        let good = StoredMessage {
            stream: "EVENTS".into(),
            seq: 7,
            subject: envelope.subject(),
            headers: envelope.headers(),
            payload: envelope.payload.clone(),
            time: SystemTime::UNIX_EPOCH,
            malformed_headers: None,
        };
        let view = EventView::decode(good.clone());
        assert_eq!(view.event_type(), "payment.received");
        assert_eq!(view.to_json()["data"]["amountMinor"], "1299");
        let bad = EventView::decode(StoredMessage {
            payload: Bytes::from_static(b"\xff"),
            ..good
        });
        assert_eq!(bad.event_type(), "?");
        assert!(bad.to_json()["decode_error"].is_string());
    }

    #[test]
    fn times_must_be_rfc3339() {
        assert!(parse_time("2025-06-01T12:00:00Z").is_ok());
        assert!(parse_time("yesterday").is_err());
    }
}

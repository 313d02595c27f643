//! [`MessageRecord`]: a stored message as JSON, byte for byte, for tools
//! that read the log through a server (`GET /v1/admin/streams/{stream}/
//! messages` of `backbone-server`, read back by `replay-tool`).
//!
//! The payload (and a malformed header block) are base64 (standard, with
//! padding), so the bytes survive exactly; `time_ns` is the store time in
//! nanoseconds since the Unix epoch, `time` the same in RFC 3339 for
//! people.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backbone_core::Headers;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{MalformedHeaders, StoredMessage};

/// A stored message as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// The stream holding it.
    pub stream: String,
    /// Its stream sequence.
    pub seq: u64,
    /// The subject it was published to.
    pub subject: String,
    /// When the stream stored it, RFC 3339.
    pub time: String,
    /// The same, in nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// Its headers, in order.
    pub headers: Headers,
    /// Its body, base64.
    pub payload: String,
    /// The header block as stored (base64) and why it is not headers.
    pub malformed_headers: Option<MalformedRecord>,
}

/// [`MalformedHeaders`] as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MalformedRecord {
    /// The block exactly as stored, base64.
    pub raw: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Why a [`MessageRecord`] is not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a stored message: {0}")]
pub struct RecordError(String);

impl From<&StoredMessage> for MessageRecord {
    fn from(m: &StoredMessage) -> Self {
        let since_epoch = m.time.duration_since(UNIX_EPOCH).unwrap_or_default();
        Self {
            stream: m.stream.clone(),
            seq: m.seq,
            subject: m.subject.clone(),
            time: OffsetDateTime::from(m.time)
                .format(&Rfc3339)
                .unwrap_or_default(),
            time_ns: u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX),
            headers: m.headers.clone(),
            payload: STANDARD.encode(&m.payload),
            malformed_headers: m.malformed_headers.as_ref().map(|h| MalformedRecord {
                raw: STANDARD.encode(&h.raw),
                reason: h.reason.clone(),
            }),
        }
    }
}

impl TryFrom<MessageRecord> for StoredMessage {
    type Error = RecordError;

    fn try_from(r: MessageRecord) -> Result<Self, RecordError> {
        let decode = |what: &str, text: &str| {
            STANDARD
                .decode(text)
                .map_err(|e| RecordError(format!("{what} is not base64: {e}")))
        };
        let malformed_headers = match r.malformed_headers {
            None => None,
            Some(h) => Some(MalformedHeaders {
                raw: decode("malformed_headers.raw", &h.raw)?.into(),
                reason: h.reason,
            }),
        };
        Ok(Self {
            payload: decode("payload", &r.payload)?.into(),
            stream: r.stream,
            seq: r.seq,
            subject: r.subject,
            headers: r.headers,
            time: SystemTime::UNIX_EPOCH + Duration::from_nanos(r.time_ns),
            malformed_headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_gives_back_the_message_byte_for_byte() {
        let mut headers = Headers::new();
        headers.append("ce-type", "payment.received");
        headers.append("x-multi", "a");
        headers.append("x-multi", "b");
        let message = StoredMessage {
            stream: "EVENTS".into(),
            seq: 42,
            subject: "events.payment.received.u-1".into(),
            headers,
            payload: bytes::Bytes::from_static(&[0, 159, 146, 150, 255]),
            time: UNIX_EPOCH + Duration::new(1_790_000_000, 123_456_789),
            malformed_headers: Some(MalformedHeaders {
                raw: bytes::Bytes::from_static(b"NATS/1.0\r\nx: \xff\r\n\r\n"),
                reason: "not UTF-8".into(),
            }),
        };
        let json = serde_json::to_string(&MessageRecord::from(&message)).unwrap();
        let record: MessageRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(StoredMessage::try_from(record).unwrap(), message);
    }

    #[test]
    fn a_payload_that_is_not_base64_is_refused() {
        let mut record = MessageRecord::from(&StoredMessage {
            stream: "EVENTS".into(),
            seq: 1,
            subject: "s".into(),
            headers: Headers::new(),
            payload: bytes::Bytes::new(),
            time: UNIX_EPOCH,
            malformed_headers: None,
        });
        record.payload = "%%%".into();
        assert!(StoredMessage::try_from(record).is_err());
    }
}

//! Dead letters: events a consumer gave up on, kept with the reason.
//!
//! A dead letter is the original message, payload and headers untouched,
//! published on `deadletter.<consumer>.<original subject>` (stream
//! `DEADLETTER`) with these headers appended:
//!
//! | header                   | value                                         |
//! |--------------------------|-----------------------------------------------|
//! | `Backbone-Dlq-Consumer`  | the durable consumer that gave up             |
//! | `Backbone-Dlq-Stream`    | the original stream                           |
//! | `Backbone-Dlq-Subject`   | the original subject                          |
//! | `Backbone-Dlq-Sequence`  | the original stream sequence                  |
//! | `Backbone-Dlq-Deliveries`| deliveries made before giving up              |
//! | `Backbone-Dlq-Error`     | why (the handler's reason)                    |
//! | `Backbone-Dlq-Time`      | when, RFC 3339 UTC                            |
//! | `Backbone-Dlq-Msg-Id`    | the original `Nats-Msg-Id`, when it had one   |
//! | `Backbone-Dlq-Raw-Headers` | base64 of the original header block, byte for byte, when it was unreadable ([`backbone_broker::MalformedHeaders`]; the letter then carries no other original header) |
//!
//! The one header not kept as is, `Nats-Msg-Id`, is transport metadata: it
//! becomes `<consumer>:<seq>` so a dead letter re-published after a crash
//! is deduplicated by the broker, while two consumers giving up on the same
//! event each keep their letter. [`crate::redrive::redrive_message`]
//! restores it from `Backbone-Dlq-Msg-Id` when redriving a letter.

use std::time::SystemTime;

use backbone_broker::{
    Broker, OutboundMessage, PublishError, PublishReceipt, StoredMessage, message::MSG_ID_HEADER,
    stream::StreamConfig,
};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// Header: the durable consumer that gave up.
pub const DLQ_CONSUMER: &str = "Backbone-Dlq-Consumer";
/// Header: the original stream.
pub const DLQ_STREAM: &str = "Backbone-Dlq-Stream";
/// Header: the original subject.
pub const DLQ_SUBJECT: &str = "Backbone-Dlq-Subject";
/// Header: the original stream sequence.
pub const DLQ_SEQUENCE: &str = "Backbone-Dlq-Sequence";
/// Header: deliveries made before giving up.
pub const DLQ_DELIVERIES: &str = "Backbone-Dlq-Deliveries";
/// Header: why the consumer gave up.
pub const DLQ_ERROR: &str = "Backbone-Dlq-Error";
/// Header: when, RFC 3339 UTC.
pub const DLQ_TIME: &str = "Backbone-Dlq-Time";
/// Header: the original message id.
pub const DLQ_MSG_ID: &str = "Backbone-Dlq-Msg-Id";
/// Header: base64 (standard alphabet, padded) of an unreadable original
/// header block, exactly as stored.
pub const DLQ_RAW_HEADERS: &str = "Backbone-Dlq-Raw-Headers";

/// Why and by whom a message was given up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterReason {
    /// The durable consumer giving up.
    pub consumer: String,
    /// Deliveries made.
    pub deliveries: u32,
    /// Why.
    pub error: String,
}

/// The dead letter of `message`.
pub fn dead_letter_message(
    message: &StoredMessage,
    reason: &DeadLetterReason,
    now: SystemTime,
) -> OutboundMessage {
    let mut headers = message.headers.clone();
    let original_id = headers.remove(MSG_ID_HEADER);
    let id = format!("{}:{}", reason.consumer, message.seq);
    headers.append(MSG_ID_HEADER, id.clone());
    headers.append(DLQ_CONSUMER, reason.consumer.clone());
    headers.append(DLQ_STREAM, message.stream.clone());
    headers.append(DLQ_SUBJECT, message.subject.clone());
    headers.append(DLQ_SEQUENCE, message.seq.to_string());
    headers.append(DLQ_DELIVERIES, reason.deliveries.to_string());
    headers.append(DLQ_ERROR, header_safe(&reason.error));
    let time = OffsetDateTime::from(now)
        .format(&Rfc3339)
        .unwrap_or_default();
    headers.append(DLQ_TIME, time);
    if let Some(original) = original_id {
        headers.append(DLQ_MSG_ID, original);
    }
    if let Some(malformed) = &message.malformed_headers {
        headers.append(DLQ_RAW_HEADERS, STANDARD.encode(&malformed.raw));
    }
    OutboundMessage {
        subject: format!("deadletter.{}.{}", reason.consumer, message.subject),
        headers,
        payload: message.payload.clone(),
        msg_id: Some(id),
        expected_last_subject_seq: None,
    }
}

/// Header values are one line: control characters become spaces.
fn header_safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Creates the dead-letter stream if needed.
pub async fn ensure_dead_letter_stream(
    broker: &dyn Broker,
) -> Result<(), backbone_broker::StreamError> {
    broker
        .ensure_stream(&StreamConfig::dead_letters())
        .await
        .map(|_| ())
}

/// Publishes the dead letter of `message` (deduplicated by `<consumer>:<seq>`).
pub async fn publish_dead_letter(
    broker: &dyn Broker,
    message: &StoredMessage,
    reason: &DeadLetterReason,
) -> Result<PublishReceipt, PublishError> {
    tracing::warn!(
        seq = message.seq,
        subject = %message.subject,
        consumer = %reason.consumer,
        error = %reason.error,
        "dead-lettering event"
    );
    broker
        .publish(dead_letter_message(message, reason, SystemTime::now()))
        .await
}

/// The subject pattern of `consumer`'s dead letters
/// (`deadletter.<consumer>.>`), to list or purge them.
pub fn letters_of(consumer: &str) -> String {
    format!("deadletter.{consumer}.>")
}

/// A dead letter at a glance, as `replay-tool dlq list` prints it and the
/// server's `GET /v1/admin/dead-letters` answers it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LetterSummary {
    /// The letter's sequence in the dead-letter stream.
    pub seq: u64,
    /// The durable consumer that gave up.
    pub consumer: Option<String>,
    /// The original subject.
    pub subject: Option<String>,
    /// The original stream sequence.
    pub original_seq: Option<String>,
    /// Deliveries made before giving up.
    pub deliveries: Option<String>,
    /// Why the consumer gave up.
    pub error: Option<String>,
    /// When, RFC 3339 UTC.
    pub time: Option<String>,
}

impl LetterSummary {
    /// The summary of the dead letter `letter`.
    pub fn of(letter: &StoredMessage) -> Self {
        let header = |name| letter.headers.get(name).map(str::to_owned);
        Self {
            seq: letter.seq,
            consumer: header(DLQ_CONSUMER),
            subject: header(DLQ_SUBJECT),
            original_seq: header(DLQ_SEQUENCE),
            deliveries: header(DLQ_DELIVERIES),
            error: header(DLQ_ERROR),
            time: header(DLQ_TIME),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backbone_schemas::Headers;

    #[test]
    fn letter_keeps_payload_and_headers_and_adds_the_reason() {
        let headers: Headers = [("ce-id", "abc"), (MSG_ID_HEADER, "abc")]
            .into_iter()
            .collect();
        let message = StoredMessage {
            stream: "EVENTS".into(),
            seq: 42,
            subject: "events.payment.refunded.u-1".into(),
            headers,
            payload: bytes::Bytes::from_static(b"\x01\x02"),
            time: SystemTime::UNIX_EPOCH,
            malformed_headers: None,
        };
        let reason = DeadLetterReason {
            consumer: "billing".into(),
            deliveries: 3,
            error: "refund\nabove payment".into(),
        };
        let letter = dead_letter_message(&message, &reason, SystemTime::UNIX_EPOCH);
        assert_eq!(
            letter.subject,
            "deadletter.billing.events.payment.refunded.u-1"
        );
        assert_eq!(letter.msg_id.as_deref(), Some("billing:42"));
        assert_eq!(letter.payload, message.payload);
        assert_eq!(letter.headers.get("ce-id"), Some("abc"));
        assert_eq!(letter.headers.get(DLQ_MSG_ID), Some("abc"));
        assert_eq!(letter.headers.get(MSG_ID_HEADER), Some("billing:42"));
        assert_eq!(letter.headers.get(DLQ_SEQUENCE), Some("42"));
        assert_eq!(letter.headers.get(DLQ_DELIVERIES), Some("3"));
        assert_eq!(letter.headers.get(DLQ_ERROR), Some("refund above payment"));
        assert_eq!(letter.headers.get(DLQ_TIME), Some("1970-01-01T00:00:00Z"));
    }
}

//! Redriving dead letters: putting an event one consumer gave up on back
//! into the event log, for that consumer only.
//!
//! A consumer skips every sequence at or below its checkpoint, so a redrive
//! appends the event again as a new entry ([`redrive_message`]): the
//! original subject, payload and CloudEvents headers untouched (same
//! `ce-id`, `Nats-Msg-Id` = `ce-id` as the wire contract requires), the
//! `Backbone-Dlq-*` headers removed, plus two routing headers:
//!
//! | header                      | value                                             |
//! |-----------------------------|---------------------------------------------------|
//! | `Backbone-Redrive-Consumer` | the durable name of the consumer that dead-lettered it |
//! | `Backbone-Redrive-Of`       | the dead letter's sequence in `DEADLETTER`        |
//!
//! Every consumer sees the new entry; [`route`] tells each what to do with
//! it. A consumer named by `Backbone-Redrive-Consumer` applies it, but only
//! while it holds a *fence* for the event id: the record, committed with
//! the dead-lettering, that it never applied the event. Any other consumer
//! skips it (acks it and moves its checkpoint past it): it saw the original
//! already. So every consumer applies the event exactly once, live and in a
//! rebuild alike: a rebuild whose handler still rejects the original fences
//! it (without publishing a dead letter) and applies the redrive; one whose
//! handler now accepts the original applies it there and skips the redrive.

use std::fmt;

use backbone_broker::{OutboundMessage, StoredMessage, message::MSG_ID_HEADER};
use backbone_schemas::wire::CE_ID;

use crate::{
    dead_letter::{
        DLQ_CONSUMER, DLQ_DELIVERIES, DLQ_ERROR, DLQ_MSG_ID, DLQ_SEQUENCE, DLQ_STREAM, DLQ_SUBJECT,
        DLQ_TIME,
    },
    error::Error,
};

/// Header: the durable consumer a redriven entry is meant for.
pub const REDRIVE_CONSUMER: &str = "Backbone-Redrive-Consumer";
/// Header: the sequence of the dead letter a redriven entry came from.
pub const REDRIVE_OF: &str = "Backbone-Redrive-Of";

/// Why a message cannot be redriven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedriveErrorKind {
    /// It lacks the `Backbone-Dlq-Consumer` or `-Subject` header: it is not
    /// a dead letter written by this runtime.
    NotADeadLetter,
}

impl fmt::Display for RedriveErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotADeadLetter => "not a dead letter",
        })
    }
}

/// Error of [`redrive_message`].
pub type RedriveError = Error<RedriveErrorKind>;

/// The event-log entry that redrives dead letter `letter` (read from the
/// `DEADLETTER` stream) to the consumer that wrote it.
pub fn redrive_message(letter: &StoredMessage) -> Result<OutboundMessage, RedriveError> {
    let missing = |name: &str| {
        RedriveError::with_detail(
            RedriveErrorKind::NotADeadLetter,
            format!("dead letter {} has no {name} header", letter.seq),
        )
    };
    let subject = letter
        .headers
        .get(DLQ_SUBJECT)
        .ok_or_else(|| missing(DLQ_SUBJECT))?
        .to_owned();
    let consumer = letter
        .headers
        .get(DLQ_CONSUMER)
        .ok_or_else(|| missing(DLQ_CONSUMER))?
        .to_owned();
    let mut headers = letter.headers.clone();
    for name in [
        DLQ_CONSUMER,
        DLQ_STREAM,
        DLQ_SUBJECT,
        DLQ_SEQUENCE,
        DLQ_DELIVERIES,
        DLQ_ERROR,
        DLQ_TIME,
        MSG_ID_HEADER,
        REDRIVE_CONSUMER,
        REDRIVE_OF,
    ] {
        headers.remove(name);
    }
    let original_id = headers
        .remove(DLQ_MSG_ID)
        .or_else(|| headers.get(CE_ID).map(str::to_owned));
    if let Some(id) = &original_id {
        headers.append(MSG_ID_HEADER, id.clone());
    }
    headers.append(REDRIVE_CONSUMER, consumer);
    headers.append(REDRIVE_OF, letter.seq.to_string());
    Ok(OutboundMessage {
        subject,
        headers,
        payload: letter.payload.clone(),
        msg_id: original_id,
        expected_last_subject_seq: None,
    })
}

/// What a consumer does with an entry of the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// An ordinary event: apply it.
    Ordinary,
    /// A redrive meant for this consumer: apply it if it is fenced (the
    /// consumer dead-lettered event `event_id` and has not applied it).
    Own {
        /// The event's `ce-id`, when it has one.
        event_id: Option<&'a str>,
    },
    /// A redrive meant for another consumer: skip it.
    Other,
}

/// How the consumer with durable name `consumer` treats `message`.
pub fn route<'a>(message: &'a StoredMessage, consumer: &str) -> Route<'a> {
    match message.headers.get(REDRIVE_CONSUMER) {
        None => Route::Ordinary,
        Some(target) if target == consumer => Route::Own {
            event_id: event_id(message),
        },
        Some(_) => Route::Other,
    }
}

/// The event id (`ce-id`) of `message`, which fences are keyed by.
pub fn event_id(message: &StoredMessage) -> Option<&str> {
    message.headers.get(CE_ID)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use backbone_schemas::Headers;

    use super::*;
    use crate::dead_letter::{DeadLetterReason, dead_letter_message};

    fn stored(stream: &str, seq: u64, message: OutboundMessage) -> StoredMessage {
        StoredMessage {
            stream: stream.into(),
            seq,
            subject: message.subject,
            headers: message.headers,
            payload: message.payload,
            time: SystemTime::UNIX_EPOCH,
            malformed_headers: None,
        }
    }

    fn original() -> StoredMessage {
        let headers: Headers = [
            (CE_ID, "ev-1"),
            ("ce-type", "payment.refunded"),
            (MSG_ID_HEADER, "ev-1"),
        ]
        .into_iter()
        .collect();
        StoredMessage {
            stream: "EVENTS".into(),
            seq: 7,
            subject: "events.payment.refunded.u-1".into(),
            headers,
            payload: bytes::Bytes::from_static(b"\x08\x01"),
            time: SystemTime::UNIX_EPOCH,
            malformed_headers: None,
        }
    }

    fn letter_of(message: &StoredMessage, consumer: &str, seq: u64) -> StoredMessage {
        let reason = DeadLetterReason {
            consumer: consumer.into(),
            deliveries: 1,
            error: "refund of an unknown payment".into(),
        };
        let letter = dead_letter_message(message, &reason, SystemTime::UNIX_EPOCH);
        stored("DEADLETTER", seq, letter)
    }

    #[test]
    fn a_redrive_keeps_the_event_and_names_its_consumer() {
        let letter = letter_of(&original(), "billing", 3);
        let redrive = redrive_message(&letter).unwrap();
        assert_eq!(redrive.subject, "events.payment.refunded.u-1");
        assert_eq!(redrive.payload, original().payload);
        assert_eq!(redrive.msg_id.as_deref(), Some("ev-1"));
        let h = &redrive.headers;
        assert_eq!(h.get(MSG_ID_HEADER), Some("ev-1"));
        assert_eq!(h.get(CE_ID), Some("ev-1"));
        assert_eq!(h.get("ce-type"), Some("payment.refunded"));
        assert_eq!(h.get(REDRIVE_CONSUMER), Some("billing"));
        assert_eq!(h.get(REDRIVE_OF), Some("3"));
        assert!(h.iter().all(|(name, _)| !name.starts_with("Backbone-Dlq-")));
    }

    #[test]
    fn redriving_a_redrive_again_replaces_its_routing_headers() {
        let first = stored(
            "EVENTS",
            9,
            redrive_message(&letter_of(&original(), "billing", 3)).unwrap(),
        );
        let again = redrive_message(&letter_of(&first, "billing", 5)).unwrap();
        assert_eq!(again.headers.get_all(REDRIVE_CONSUMER).count(), 1);
        assert_eq!(again.headers.get(REDRIVE_OF), Some("5"));
        assert_eq!(again.headers.get_all(MSG_ID_HEADER).count(), 1);
    }

    #[test]
    fn a_message_without_dead_letter_headers_is_not_a_dead_letter() {
        let err = redrive_message(&original()).unwrap_err();
        assert_eq!(err.kind(), &RedriveErrorKind::NotADeadLetter);
    }

    #[test]
    fn routes_follow_the_redrive_consumer_header() {
        let plain = original();
        assert_eq!(route(&plain, "billing"), Route::Ordinary);
        let redriven = stored(
            "EVENTS",
            9,
            redrive_message(&letter_of(&plain, "billing", 3)).unwrap(),
        );
        assert_eq!(
            route(&redriven, "billing"),
            Route::Own {
                event_id: Some("ev-1")
            }
        );
        assert_eq!(route(&redriven, "audit"), Route::Other);
    }
}

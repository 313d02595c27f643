//! Messages going into and coming out of the log.

use std::time::SystemTime;

use backbone_core::Headers;
use bytes::Bytes;

/// The header JetStream deduplicates on. Adapters store it with the message
/// when [`OutboundMessage::msg_id`] is set, so a message reads back the same
/// from every adapter.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// The header JetStream checks for optimistic append.
pub const EXPECTED_LAST_SUBJECT_SEQ_HEADER: &str = "Nats-Expected-Last-Subject-Sequence";

/// A message to publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundMessage {
    /// A concrete subject (no wildcards) captured by exactly one stream.
    pub subject: String,
    /// Headers stored with the message, in order.
    pub headers: Headers,
    /// The message body.
    pub payload: Bytes,
    /// Deduplication id: a second publish with the same id within the
    /// stream's duplicate window is acknowledged as a duplicate and not stored.
    pub msg_id: Option<String>,
    /// Optimistic append: store only if the last message on `subject` has
    /// this stream sequence (`0` means "the subject has no message yet").
    pub expected_last_subject_seq: Option<u64>,
}

impl OutboundMessage {
    /// A message with no headers and no id.
    pub fn new(subject: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self {
            subject: subject.into(),
            payload: payload.into(),
            ..Default::default()
        }
    }

    /// Sets the deduplication id.
    pub fn with_msg_id(mut self, id: impl Into<String>) -> Self {
        self.msg_id = Some(id.into());
        self
    }

    /// Sets the headers.
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }

    /// Requires the subject's last sequence to be `seq` (0: no message yet).
    pub fn expecting_last_subject_seq(mut self, seq: u64) -> Self {
        self.expected_last_subject_seq = Some(seq);
        self
    }

    /// Headers as stored: the message's own, plus [`MSG_ID_HEADER`] when an id
    /// is set and the headers do not carry it already.
    pub fn stored_headers(&self) -> Headers {
        let mut headers = self.headers.clone();
        if let Some(id) = self.added_id() {
            headers.append(MSG_ID_HEADER, id.to_owned());
        }
        headers
    }

    /// [`Self::stored_headers`] as borrowed `(name, value)` pairs, copying
    /// nothing.
    pub fn stored_header_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .chain(self.added_id().map(|id| (MSG_ID_HEADER, id)))
    }

    /// The id stored as an extra [`MSG_ID_HEADER`]: [`Self::msg_id`] when the
    /// headers do not carry one already.
    fn added_id(&self) -> Option<&str> {
        self.msg_id
            .as_deref()
            .filter(|_| self.headers.get(MSG_ID_HEADER).is_none())
    }

    /// The deduplication id: [`Self::msg_id`], else the [`MSG_ID_HEADER`] header.
    pub fn dedup_id(&self) -> Option<&str> {
        self.msg_id
            .as_deref()
            .or_else(|| self.headers.get(MSG_ID_HEADER))
    }

    /// Size as the broker counts it against its payload limit: subject,
    /// headers and payload.
    pub fn wire_size(&self) -> usize {
        counted_size(
            &self.subject,
            self.stored_header_pairs(),
            self.payload.len(),
        )
    }
}

/// A message as stored in a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The stream holding it.
    pub stream: String,
    /// Its stream sequence: 1 for the first message, strictly increasing.
    pub seq: u64,
    /// The subject it was published to.
    pub subject: String,
    /// Its headers, as published (plus [`MSG_ID_HEADER`] when it had an id).
    pub headers: Headers,
    /// Its body, byte for byte as published.
    pub payload: Bytes,
    /// When the stream stored it.
    pub time: SystemTime,
    /// Set when the stored header block cannot be read as headers (any
    /// NATS client can store, say, a header value that is not UTF-8): then
    /// `headers` is empty and this keeps the block byte for byte with the
    /// reason. Adapters hand such a message out in its place, never skip it;
    /// the consumer runtime dead-letters it with the block preserved.
    pub malformed_headers: Option<MalformedHeaders>,
}

/// A header block as stored that is not a valid header block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedHeaders {
    /// The block exactly as stored (`NATS/1.0\r\n...`).
    pub raw: Bytes,
    /// What is wrong with it, e.g. "not valid UTF-8 at byte 23".
    pub reason: String,
}

/// The broker's acknowledgement of a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReceipt {
    /// The stream that stored the message.
    pub stream: String,
    /// The message's stream sequence. For a duplicate, the sequence of the
    /// original message where the broker reports it.
    pub seq: u64,
    /// True when the message id was seen within the duplicate window and the
    /// message was not stored again.
    pub duplicate: bool,
}

/// Bytes a message counts for, against payload limits and in stream byte
/// totals: subject, each header pair plus 4, and payload.
pub(crate) fn counted_size<'a>(
    subject: &str,
    headers: impl Iterator<Item = (&'a str, &'a str)>,
    payload_len: usize,
) -> usize {
    let headers: usize = headers.map(|(n, v)| n.len() + v.len() + 4).sum();
    subject.len() + headers + payload_len
}

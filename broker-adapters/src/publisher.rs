//! Typed publishing: events in, wire-contract messages out.
//!
//! [`EventPublisher`] is what a service holds. It wraps each event in an
//! [`Envelope`] (CloudEvents headers, `events.<type>.<key>` subject, protobuf
//! payload) and publishes it with `Nats-Msg-Id` = `ce-id`, so a retry of the
//! same envelope is deduplicated by the broker.

use std::{fmt, sync::Arc};

use backbone_schemas::{DecodeError, EncodeErrorKind, Envelope, Event, EventContext, error::Error};

use crate::{
    broker::Broker,
    error::PublishErrorKind,
    message::{OutboundMessage, PublishReceipt, StoredMessage},
};

/// Why publishing an event failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventPublishErrorKind {
    /// The event or its context is invalid; nothing was sent.
    InvalidEvent(EncodeErrorKind),
    /// The broker refused or did not acknowledge the message.
    Publish(PublishErrorKind),
}

impl fmt::Display for EventPublishErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidEvent(kind) => write!(f, "invalid event: {kind}"),
            Self::Publish(kind) => write!(f, "{kind}"),
        }
    }
}

/// Error publishing a typed event.
pub type EventPublishError = Error<EventPublishErrorKind>;

impl From<&Envelope> for OutboundMessage {
    fn from(envelope: &Envelope) -> Self {
        OutboundMessage {
            subject: envelope.subject(),
            headers: envelope.headers(),
            payload: envelope.payload.clone(),
            msg_id: Some(envelope.id.to_string()),
            expected_last_subject_seq: None,
        }
    }
}

impl StoredMessage {
    /// Decodes and validates the message as an event envelope.
    pub fn envelope(&self) -> Result<Envelope, DecodeError> {
        Envelope::decode(&self.subject, &self.headers, &self.payload)
    }
}

/// Publishes typed events on behalf of one service (the `ce-source`).
#[derive(Debug, Clone)]
pub struct EventPublisher {
    broker: Arc<dyn Broker>,
    source: String,
}

impl EventPublisher {
    /// A publisher for the service named `source`, e.g. `payment-service`.
    pub fn new(broker: Arc<dyn Broker>, source: impl Into<String>) -> Self {
        Self {
            broker,
            source: source.into(),
        }
    }

    /// The broker this publisher writes to.
    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    /// A fresh context for this service: new id, current time.
    pub fn context(&self) -> EventContext {
        EventContext::new(self.source.clone())
    }

    /// Wraps `event` in an envelope with a fresh context of this service.
    pub fn envelope<E: Event>(&self, event: &E) -> Result<Envelope, EventPublishError> {
        self.envelope_with(event, self.context())
    }

    /// Wraps `event` in an envelope with `context` (for correlation,
    /// causation, trace context or a fixed id).
    pub fn envelope_with<E: Event>(
        &self,
        event: &E,
        context: EventContext,
    ) -> Result<Envelope, EventPublishError> {
        Envelope::from_event(event, context).map_err(invalid_event)
    }

    /// Publishes `event` and waits for the acknowledgement.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<PublishReceipt, EventPublishError> {
        let envelope = self.envelope(event)?;
        self.publish_envelope(&envelope).await
    }

    /// Publishes a prepared envelope. Publishing the same envelope again is
    /// safe: the broker deduplicates on its id.
    pub async fn publish_envelope(
        &self,
        envelope: &Envelope,
    ) -> Result<PublishReceipt, EventPublishError> {
        self.broker
            .publish(OutboundMessage::from(envelope))
            .await
            .map_err(|e| e.map_kind(EventPublishErrorKind::Publish))
    }

    /// Event-sourcing append: publishes `envelope` only if its key's subject
    /// is at `expected_last_seq` (0: no event for this key yet). A conflict
    /// fails with `Publish(WrongLastSequence { actual })`.
    pub async fn append(
        &self,
        envelope: &Envelope,
        expected_last_seq: u64,
    ) -> Result<PublishReceipt, EventPublishError> {
        let message = OutboundMessage::from(envelope).expecting_last_subject_seq(expected_last_seq);
        self.broker
            .publish(message)
            .await
            .map_err(|e| e.map_kind(EventPublishErrorKind::Publish))
    }

    /// Publishes envelopes with pipelined acknowledgements; results in order.
    pub async fn publish_batch(
        &self,
        envelopes: &[Envelope],
    ) -> Vec<Result<PublishReceipt, EventPublishError>> {
        let messages = envelopes.iter().map(OutboundMessage::from).collect();
        self.broker
            .publish_batch(messages)
            .await
            .into_iter()
            .map(|r| r.map_err(|e| e.map_kind(EventPublishErrorKind::Publish)))
            .collect()
    }
}

fn invalid_event(error: backbone_schemas::EncodeError) -> EventPublishError {
    let kind = error.kind().clone();
    let detail = error.to_string();
    EventPublishError::with_detail(EventPublishErrorKind::InvalidEvent(kind), detail)
}

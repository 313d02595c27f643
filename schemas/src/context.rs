//! [`EventContext`]: what a publisher says about an event besides its payload.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::envelope::Envelope;

/// Publisher-side metadata for one event.
///
/// Only `source` is required; [`Envelope::from_event`] generates a UUIDv7
/// `id` and the current `time` when they are `None`.
///
/// ```
/// use backbone_schemas::EventContext;
///
/// let ctx = EventContext::new("payment-service")
///     .with_correlation_id("checkout-81f2")
///     .with_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// assert_eq!(ctx.source, "payment-service");
/// assert!(ctx.id.is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventContext {
    /// The publishing service, e.g. `"payment-service"` (`ce-source`).
    pub source: String,
    /// The event id (`ce-id`, `Nats-Msg-Id`); a new UUIDv7 when `None`.
    /// Set it when retrying a publish, so JetStream drops the duplicate.
    pub id: Option<Uuid>,
    /// The publish time (`ce-time`); now, at millisecond precision, when
    /// `None`. Stored in UTC.
    pub time: Option<OffsetDateTime>,
    /// The workflow this event belongs to (`ce-correlationid`).
    pub correlation_id: Option<String>,
    /// The id of the event that caused this one (`ce-causationid`).
    pub causation_id: Option<String>,
    /// A W3C trace context (`traceparent`).
    pub traceparent: Option<String>,
}

impl EventContext {
    /// A context for events published by `source`.
    pub fn new(source: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            ..Self::default()
        }
    }

    /// Uses `id` as the event id instead of a fresh UUIDv7.
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = Some(id);
        self
    }

    /// Uses `time` as the event time instead of now.
    pub fn with_time(mut self, time: OffsetDateTime) -> Self {
        self.time = Some(time);
        self
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the causation id.
    pub fn with_causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// Sets the W3C `traceparent`.
    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// Marks the event as caused by `cause`: the causation id becomes
    /// `cause.id`, the correlation id is inherited (or starts at `cause.id`)
    /// and so is the trace context, unless already set.
    pub fn caused_by(mut self, cause: &Envelope) -> Self {
        let cause_id = cause.id.to_string();
        self.causation_id = Some(cause_id.clone());
        if self.correlation_id.is_none() {
            self.correlation_id = Some(cause.correlation_id.clone().unwrap_or(cause_id));
        }
        if self.traceparent.is_none() {
            self.traceparent.clone_from(&cause.traceparent);
        }
        self
    }
}

//! The [`ReadModel`] trait and how one stored message is applied to it.

use std::{fmt, time::Duration};

use backbone_broker::StoredMessage;
use backbone_schemas::{Envelope, Event, subject::parse_event_subject};

use crate::{
    error::HandlerError,
    redrive::{Route, event_id, route},
    transaction::Transaction,
};

/// A projection: deterministic state built from events, with no side
/// effects, so it can be replayed and rebuilt at will.
///
/// The runtime decodes each message into an [`Envelope`] (strictly: an
/// invalid message is a permanent failure and is dead-lettered) and calls
/// [`apply`](Self::apply) with a transaction; the writes of a batch commit
/// together with the checkpoint.
pub trait ReadModel: Send + Sync + fmt::Debug {
    /// The model's name, e.g. `billing`: its store directory and the
    /// default durable consumer name derive from it.
    fn name(&self) -> &'static str;

    /// The event types the model consumes; empty means every type.
    fn event_types(&self) -> &'static [&'static str];

    /// The version of the model's key layout. Bump it when keys or values
    /// change meaning: a store built with another layout is then refused
    /// ([`crate::StoreErrorKind::ModelLayout`]) until the model is rebuilt,
    /// instead of mixing two layouts.
    fn layout(&self) -> u8 {
        1
    }

    /// Applies one event. `seq` is its stream sequence, unique and
    /// increasing, usable as a deterministic ordering key.
    fn apply(
        &self,
        seq: u64,
        event: &Envelope,
        tx: &mut Transaction<'_>,
    ) -> Result<(), HandlerError>;

    /// Called instead of [`apply`](Self::apply) for the entry `seq` that
    /// repeats an event id the model applied from entry `first_seq` within
    /// its dedup horizon ([`crate::dedup`]). The default records nothing;
    /// whatever it writes commits like an applied event's writes.
    fn duplicate(
        &self,
        seq: u64,
        first_seq: u64,
        event: &Envelope,
        tx: &mut Transaction<'_>,
    ) -> Result<(), HandlerError> {
        let _ = (seq, first_seq, event, tx);
        Ok(())
    }
}

/// The permanent failure of a read-model counter or balance that would leave
/// its range: the event is dead-lettered with this reason instead of
/// wrapping (release builds) or panicking (debug builds).
pub fn overflow(what: &str, current: impl fmt::Display, change: impl fmt::Display) -> HandlerError {
    HandlerError::permanent(format!(
        "{what} would overflow: {current} changed by {change}"
    ))
}

/// The event in a log entry, strictly decoded; an entry that is not a valid
/// event (its header block unreadable, a header missing or invalid, the
/// payload not the event's message) is a permanent failure naming why.
pub fn decode_entry(message: &StoredMessage) -> Result<Envelope, HandlerError> {
    if let Some(malformed) = &message.malformed_headers {
        return Err(HandlerError::permanent(format!(
            "unreadable message: {}",
            malformed.reason
        )));
    }
    Ok(Envelope::decode(
        &message.subject,
        &message.headers,
        &message.payload,
    )?)
}

/// The typed event inside `envelope`; a mismatch is a permanent failure.
pub fn typed<E: Event>(envelope: &Envelope) -> Result<E, HandlerError> {
    Ok(envelope.event::<E>()?)
}

/// The subject filters a consumer of `model` uses: one per event type, or
/// the whole event log when the model takes every type.
pub fn filter_subjects(model: &dyn ReadModel) -> Vec<String> {
    let types = model.event_types();
    if types.is_empty() {
        vec![backbone_broker::stream::EVENT_SUBJECTS.to_owned()]
    } else {
        types.iter().map(|t| format!("events.{t}.*")).collect()
    }
}

/// Whether a consumer of `event_types` (empty: every type) owns the message
/// on `subject`.
///
/// A consumer of named types owns only valid event subjects of those types:
/// a broad filter (nats-server 2.9 allows one filter per consumer, so typed
/// models filter on `events.>`) also delivers other types and subjects that
/// are not event subjects at all, which it skips. Invalid input is owned,
/// and dead-lettered, by the consumers of every type (the bundled `audit`
/// model), so it is dead-lettered once per such consumer, not once per model.
pub fn is_for(event_types: &[&str], subject: &str) -> bool {
    event_types.is_empty()
        || parse_event_subject(subject)
            .is_ok_and(|(event_type, _)| event_types.contains(&event_type))
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The model applied it.
    Applied,
    /// The model does not consume its type (a broad filter delivered it).
    NotForModel,
    /// A redrive meant for another consumer, or one of an event this
    /// consumer already applied (see [`crate::redrive`]): skipped.
    NotForConsumer,
    /// A copy of an event the model applied from entry `first_seq` within
    /// its dedup horizon ([`crate::dedup`]): nothing applied.
    Duplicate {
        /// The entry that applied the event.
        first_seq: u64,
    },
    /// The handler failed; its writes were discarded.
    Failed(HandlerError),
}

/// Applies one entry of the log to `model`, run as the durable consumer
/// `consumer`, within `tx`: redrives are routed first ([`crate::redrive`]),
/// then a copy of an event the model applied within `dedup_horizon` is
/// skipped ([`crate::dedup`]), then the event is applied as by
/// [`apply_message`]. The live runtime and rebuilds apply every entry
/// through this; a caller that dead-letters (or, in a rebuild, rejects) the
/// entry fences it with [`fence_rejected`].
pub fn apply_entry(
    model: &dyn ReadModel,
    consumer: &str,
    message: &StoredMessage,
    dedup_horizon: Duration,
    tx: &mut Transaction<'_>,
) -> Outcome {
    match route(message, consumer) {
        Route::Ordinary | Route::Own { event_id: None } => {
            apply_once(model, message, dedup_horizon, tx)
        }
        Route::Other => Outcome::NotForConsumer,
        Route::Own { event_id: Some(id) } => match tx.take_fence(id) {
            Ok(true) => apply_once(model, message, dedup_horizon, tx),
            Ok(false) => Outcome::NotForConsumer,
            Err(e) => Outcome::Failed(e.into()),
        },
    }
}

/// [`apply_message`], unless the model applied the entry's event id within
/// `horizon`; records the id when it applies.
fn apply_once(
    model: &dyn ReadModel,
    message: &StoredMessage,
    horizon: Duration,
    tx: &mut Transaction<'_>,
) -> Outcome {
    let Some(id) = event_id(message) else {
        return apply_message(model, message, tx);
    };
    if !is_for(model.event_types(), &message.subject) {
        return Outcome::NotForModel;
    }
    match tx.first_application(id, message.time, horizon) {
        Err(e) => Outcome::Failed(e.into()),
        Ok(Some(first_seq)) => {
            let recorded = decode_entry(message)
                .and_then(|envelope| model.duplicate(message.seq, first_seq, &envelope, tx));
            match recorded {
                Ok(()) => {
                    tx.keep_event();
                    Outcome::Duplicate { first_seq }
                }
                Err(e) => {
                    tx.discard_event();
                    Outcome::Failed(e)
                }
            }
        }
        Ok(None) => {
            let outcome = apply_owned(model, message, tx);
            if outcome == Outcome::Applied {
                tx.record_application(id, message.seq, message.time, horizon);
            }
            outcome
        }
    }
}

/// Records that the consumer gave up on `message`, so that a redrive of it
/// addressed to this consumer applies.
pub fn fence_rejected(message: &StoredMessage, tx: &mut Transaction<'_>) {
    if let Some(id) = event_id(message) {
        tx.fence(id);
    }
}

/// Applies one stored message to `model` within `tx`: the event's writes are
/// kept on success and discarded on failure. Redrive headers are ignored:
/// consumers apply log entries with [`apply_entry`].
pub fn apply_message(
    model: &dyn ReadModel,
    message: &StoredMessage,
    tx: &mut Transaction<'_>,
) -> Outcome {
    if !is_for(model.event_types(), &message.subject) {
        return Outcome::NotForModel;
    }
    apply_owned(model, message, tx)
}

/// [`apply_message`] for a message already known to be for `model`.
fn apply_owned(
    model: &dyn ReadModel,
    message: &StoredMessage,
    tx: &mut Transaction<'_>,
) -> Outcome {
    let envelope = match decode_entry(message) {
        Ok(envelope) => envelope,
        Err(e) => return Outcome::Failed(e),
    };
    match model.apply(message.seq, &envelope, tx) {
        Ok(()) => {
            tx.keep_event();
            Outcome::Applied
        }
        Err(e) => {
            tx.discard_event();
            Outcome::Failed(e)
        }
    }
}

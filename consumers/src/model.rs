//! The [`ReadModel`] trait and how one stored message is applied to it.

use std::fmt;

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

    /// Applies one event. `seq` is its stream sequence, unique and
    /// increasing, usable as a deterministic ordering key.
    fn apply(
        &self,
        seq: u64,
        event: &Envelope,
        tx: &mut Transaction<'_>,
    ) -> Result<(), HandlerError>;
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
    /// The handler failed; its writes were discarded.
    Failed(HandlerError),
}

/// Applies one entry of the log to `model`, run as the durable consumer
/// `consumer`, within `tx`: redrives are routed first ([`crate::redrive`]),
/// then the event is applied as by [`apply_message`]. The live runtime and
/// rebuilds apply every entry through this; a caller that dead-letters (or,
/// in a rebuild, rejects) the entry fences it with [`fence_rejected`].
pub fn apply_entry(
    model: &dyn ReadModel,
    consumer: &str,
    message: &StoredMessage,
    tx: &mut Transaction<'_>,
) -> Outcome {
    match route(message, consumer) {
        Route::Ordinary | Route::Own { event_id: None } => apply_message(model, message, tx),
        Route::Other => Outcome::NotForConsumer,
        Route::Own { event_id: Some(id) } => match tx.take_fence(id) {
            Ok(true) => apply_message(model, message, tx),
            Ok(false) => Outcome::NotForConsumer,
            Err(e) => Outcome::Failed(e.into()),
        },
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
    let types = model.event_types();
    if !types.is_empty()
        && let Ok((event_type, _)) = parse_event_subject(&message.subject)
        && !types.contains(&event_type)
    {
        return Outcome::NotForModel;
    }
    let envelope = match Envelope::decode(&message.subject, &message.headers, &message.payload) {
        Ok(envelope) => envelope,
        Err(e) => return Outcome::Failed(e.into()),
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

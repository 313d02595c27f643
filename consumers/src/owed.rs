//! Exhausted events still owed a dead letter.
//!
//! When the broker reports that an event ran out of deliveries
//! ([`Consumer::take_exhausted`]), it will not deliver it again: the
//! consumer's only copy of the duty is in hand. So an exhausted event stays
//! *owed* until its dead letter is stored. Both runners keep the list across
//! loop turns and retry it before anything else; a projection applies
//! nothing past the lowest owed event meanwhile, and a reactor's ack floor
//! stays below it, so neither checkpoint passes an event that is neither
//! applied nor dead-lettered.

use std::collections::BTreeMap;

use backbone_broker::{Broker, Consumer, ReadErrorKind, StoredMessage};

use crate::{
    config::RuntimeConfig,
    dead_letter::{DeadLetterReason, publish_dead_letter},
    health::Health,
};

/// Exhausted events (sequence → deliveries made) not dead-lettered yet.
#[derive(Debug, Default)]
pub(crate) struct Owed {
    events: BTreeMap<u64, u32>,
}

/// What became of one attempt to dead-letter an owed event.
pub(crate) enum Settled {
    /// The letter is stored; the message it was made of.
    Stored(StoredMessage),
    /// The event is no longer in the stream: nothing left to dead-letter.
    Gone,
}

impl Owed {
    /// Adds what `consumer` reports exhausted since the last call, above
    /// `checkpoint`, recording the outcome in `health`. False, after a
    /// backoff pause, when the report could not be read: the runner must
    /// then apply nothing, since an exhausted event could be passed.
    pub(crate) async fn refresh(
        &mut self,
        consumer: &dyn Consumer,
        checkpoint: u64,
        config: &RuntimeConfig,
        health: &Health,
    ) -> bool {
        match consumer.take_exhausted().await {
            Ok(exhausted) => {
                for e in exhausted {
                    if e.stream_seq > checkpoint {
                        self.events.insert(e.stream_seq, e.deliveries);
                    }
                }
                health.recovered(&config.durable_name, "exhausted");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read exhausted deliveries; retrying");
                health.failing(&config.durable_name, "exhausted", e.to_string());
                tokio::time::sleep(config.backoff(2)).await;
                false
            }
        }
    }

    /// The lowest owed sequence.
    pub(crate) fn lowest(&self) -> Option<(u64, u32)> {
        self.events.first_key_value().map(|(s, d)| (*s, *d))
    }

    /// Every owed sequence, lowest first.
    pub(crate) fn all(&self) -> Vec<(u64, u32)> {
        self.events.iter().map(|(s, d)| (*s, *d)).collect()
    }

    /// `seq` is dead-lettered (or gone).
    pub(crate) fn paid(&mut self, seq: u64) {
        self.events.remove(&seq);
    }

    /// True when nothing is owed.
    pub(crate) fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// Reads exhausted event `seq` and publishes its dead letter as the
/// consumer of `config`. `None` when it could not (the log unreadable, the
/// letter unpublishable): the event stays owed, and `health` reports the
/// runner failing until a letter is stored.
pub(crate) async fn dead_letter_exhausted(
    broker: &dyn Broker,
    config: &RuntimeConfig,
    health: &Health,
    seq: u64,
    deliveries: u32,
) -> Option<Settled> {
    match publish_letter(broker, config, seq, deliveries).await {
        Ok(settled) => Some(settled),
        Err(why) => {
            tracing::error!(seq, error = %why, "exhausted event still owed a dead letter");
            health.failing(&config.durable_name, "dead-letter", why);
            None
        }
    }
}

async fn publish_letter(
    broker: &dyn Broker,
    config: &RuntimeConfig,
    seq: u64,
    deliveries: u32,
) -> Result<Settled, String> {
    let message = match broker.get(&config.stream, seq).await {
        Ok(message) => message,
        Err(e) if e.kind() == &ReadErrorKind::MessageNotFound => {
            tracing::warn!(seq, "exhausted event no longer in the stream");
            return Ok(Settled::Gone);
        }
        Err(e) => return Err(format!("reading exhausted event {seq}: {e}")),
    };
    let reason = DeadLetterReason {
        consumer: config.durable_name.clone(),
        deliveries,
        error: format!("max deliveries ({deliveries}) exhausted"),
    };
    match publish_dead_letter(broker, &message, &reason).await {
        Ok(_) => Ok(Settled::Stored(message)),
        Err(e) => Err(format!("dead-lettering exhausted event {seq}: {e}")),
    }
}

//! Reactors: handlers with side effects (send a notification, call an API).
//!
//! A reactor's idempotency key is the event id: ids of events it reacted to
//! are persisted in its store, and a redelivery of a fired id is acked
//! without reacting again. A reactor only fires in [`RunMode::Live`]; in
//! [`RunMode::Rebuild`] (a replay) events are recorded as seen without
//! firing, so replaying history never re-sends anything. The remaining
//! window (the effect happened, the process died before recording it) is
//! why a reactor passes the event id to the outside system as its
//! idempotency key.
//!
//! The checkpoint (where the durable consumer is recreated after it was
//! deleted) is the *ack floor*: the highest sequence below which every
//! delivery was settled (fired, skipped or dead-lettered). An event handed
//! back for a retry holds it down, so recreating the durable never skips
//! it; redeliveries above it are absorbed by the fired ids. Like read
//! models, a reactor waits before its first batch for deliveries made to a
//! previous process ([`crate::startup`]). A redrive addressed to another
//! consumer is skipped ([`crate::redrive`]).

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use backbone_broker::{AckKind, Broker, ConsumerConfig, DeliverPolicy, Delivery};
use backbone_schemas::Envelope;
use tracing::Instrument as _;

use crate::{
    ack_floor::AckFloor,
    config::RuntimeConfig,
    error::{HandlerError, RunError},
    metrics::{ConsumerMetrics, Metrics},
    model::{decode_entry, is_for},
    owed::Owed,
    projection::{RunReport, event_span},
    redrive::{Route, route},
    runner::{Core, Handler, Held, Verdict},
    shutdown::Shutdown,
    store::ProjectionStore,
    transaction::key,
};

/// Whether side effects may fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Consuming new events: reactors fire.
    Live,
    /// Replaying or rebuilding: reactors are fenced off.
    Rebuild,
}

/// A handler with side effects.
#[async_trait]
pub trait Reactor: Send + Sync + fmt::Debug {
    /// The reactor's name.
    fn name(&self) -> &'static str;

    /// The event types it reacts to; empty means every type.
    fn event_types(&self) -> &'static [&'static str];

    /// Performs the side effect for `event`.
    async fn react(&self, event: &Envelope) -> Result<(), HandlerError>;
}

/// Runs one reactor as a durable consumer until shutdown.
#[derive(Debug)]
pub struct ReactorRunner {
    core: Core,
    reactor: Arc<dyn Reactor>,
    mode: RunMode,
}

fn fired_key(id: &str) -> Vec<u8> {
    key(&[b"fired", id.as_bytes()])
}

impl ReactorRunner {
    /// A runner of `reactor` recording fired ids in `store`.
    pub fn new(
        broker: Arc<dyn Broker>,
        reactor: Arc<dyn Reactor>,
        store: ProjectionStore,
        config: RuntimeConfig,
        mode: RunMode,
        metrics: &Metrics,
    ) -> Self {
        let core = Core::new(broker, store, config, metrics, reactor.name());
        Self {
            core,
            reactor,
            mode,
        }
    }

    /// True when the reactor already fired for event `id`.
    pub fn has_fired(store: &ProjectionStore, id: &str) -> bool {
        matches!(store.get(&fired_key(id)), Ok(Some(_)))
    }

    /// Consumes until `shutdown` triggers. The run's end (and its error) is
    /// recorded in the [`crate::Health`] of the metrics it was created with.
    pub async fn run(self, shutdown: Shutdown) -> Result<RunReport, RunError> {
        let Self {
            core,
            reactor,
            mode,
        } = self;
        core.run(shutdown, |core| {
            let checkpoint = core.stored_checkpoint()?;
            Ok(Reaction {
                reactor,
                mode,
                floor: AckFloor::new(checkpoint),
            })
        })
        .await
    }
}

/// A reactor's side of the loop: fire each delivery and settle it at once.
struct Reaction {
    reactor: Arc<dyn Reactor>,
    mode: RunMode,
    floor: AckFloor,
}

impl Handler for Reaction {
    fn consumer_config(&self, core: &Core, checkpoint: u64) -> ConsumerConfig {
        ConsumerConfig {
            durable_name: core.config.durable_name.clone(),
            description: Some(format!("reactor {}", self.reactor.name())),
            deliver_policy: DeliverPolicy::ByStartSequence(checkpoint + 1),
            ack_wait: core.config.ack_wait,
            max_deliver: Some(core.config.max_deliver),
            max_ack_pending: core.config.batch_size.max(1),
            ..Default::default()
        }
    }

    fn checkpoint(&self) -> u64 {
        self.floor.checkpoint()
    }

    /// An owed event holds the ack floor (the checkpoint) below it until
    /// its letter is stored; the others fire meanwhile.
    async fn pay_owed(
        &mut self,
        core: &Core,
        owed: &mut Owed,
        held: &mut Held,
        report: &mut RunReport,
    ) -> Result<bool, RunError> {
        for (seq, deliveries) in owed.all() {
            held.remove(&seq);
            if core
                .dead_letter_exhausted(seq, deliveries, report)
                .await
                .is_some()
            {
                owed.paid(seq);
                self.floor.settled(seq);
            } else {
                self.floor.outstanding(seq);
            }
        }
        Ok(true)
    }

    async fn process(
        &mut self,
        core: &Core,
        held: Held,
        report: &mut RunReport,
    ) -> Result<Held, RunError> {
        for (_, delivery) in held {
            self.process_one(core, delivery, report).await?;
        }
        if self.floor.checkpoint() > self.floor.committed {
            core.commit(core.store.transaction(), self.floor.checkpoint())?;
            self.floor.committed = self.floor.checkpoint();
        }
        Ok(Held::new())
    }

    async fn finish(&mut self) -> u64 {
        self.floor.committed
    }
}

impl Reaction {
    /// Handles one delivery: fires (recording the id with the ack floor as
    /// checkpoint), skips, retries or dead-letters it.
    async fn process_one(
        &mut self,
        core: &Core,
        delivery: Delivery,
        report: &mut RunReport,
    ) -> Result<(), RunError> {
        let seq = delivery.message.seq;
        let metrics = &core.metrics;
        match self.handle(core, &delivery).await {
            Ok(true) => {
                report.applied += 1;
                ConsumerMetrics::add(&metrics.applied, 1);
                self.floor.settled(seq);
                let mut tx = core.store.transaction();
                if let Ok(envelope) = decode_entry(&delivery.message) {
                    tx.put(&fired_key(&envelope.id.to_string()), Vec::new());
                }
                core.commit(tx, self.floor.checkpoint())?;
                self.floor.committed = self.floor.checkpoint();
                metrics.settle(&delivery, AckKind::Ack).await;
            }
            Ok(false) => {
                report.skipped += 1;
                ConsumerMetrics::add(&metrics.skipped, 1);
                self.floor.settled(seq);
                metrics.settle(&delivery, AckKind::Ack).await;
            }
            Err(error) => match core.verdict(&delivery, error) {
                Verdict::Retry(delay) => {
                    self.floor.outstanding(seq);
                    let delay = Some(delay);
                    metrics.settle(&delivery, AckKind::Nak { delay }).await;
                }
                Verdict::DeadLetter(reason) => {
                    if core.dead_letter(&delivery, &reason, report).await {
                        self.floor.settled(seq);
                        let reason = Some(reason);
                        metrics.settle(&delivery, AckKind::Term { reason }).await;
                    } else {
                        self.floor.outstanding(seq);
                        let delay = Some(core.config.backoff(1));
                        metrics.settle(&delivery, AckKind::Nak { delay }).await;
                    }
                }
            },
        }
        Ok(())
    }

    /// Reacts to one delivery; `Ok(true)` when it is to be recorded as fired.
    async fn handle(&self, core: &Core, delivery: &Delivery) -> Result<bool, HandlerError> {
        if !is_for(self.reactor.event_types(), &delivery.message.subject) {
            return Ok(false);
        }
        if route(&delivery.message, &core.config.durable_name) == Route::Other {
            return Ok(false);
        }
        let envelope = decode_entry(&delivery.message)?;
        if ReactorRunner::has_fired(&core.store, &envelope.id.to_string()) {
            return Ok(false);
        }
        if self.mode == RunMode::Live {
            self.reactor
                .react(&envelope)
                .instrument(event_span(delivery, &core.config.durable_name))
                .await?;
        }
        Ok(true)
    }
}

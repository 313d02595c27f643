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

use std::{collections::BTreeMap, fmt, sync::Arc};

use async_trait::async_trait;
use backbone_broker::{
    AckKind, Broker, Consumer, ConsumerConfig, ConsumerError, ConsumerErrorKind, DeliverPolicy,
    Delivery,
};
use backbone_schemas::Envelope;
use tracing::Instrument as _;

use crate::{
    ack_floor::AckFloor,
    config::RuntimeConfig,
    dead_letter::{DeadLetterReason, ensure_dead_letter_stream, publish_dead_letter},
    error::{HandlerError, RunError, RunErrorKind},
    health::Health,
    metrics::{ConsumerMetrics, Metrics},
    model::{decode_entry, is_for},
    owed::{Owed, Settled, dead_letter_exhausted},
    projection::{RunReport, event_span},
    redrive::{Route, route},
    shutdown::Shutdown,
    startup::{StrayCheck, StrayWait, bind_when_ready},
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
    broker: Arc<dyn Broker>,
    reactor: Arc<dyn Reactor>,
    store: ProjectionStore,
    config: RuntimeConfig,
    mode: RunMode,
    metrics: Arc<ConsumerMetrics>,
    health: Health,
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
        let health = metrics.health().clone();
        health.register(&config.durable_name, reactor.name());
        let metrics = metrics.consumer(&config.durable_name);
        Self {
            broker,
            reactor,
            store,
            config,
            mode,
            metrics,
            health,
        }
    }

    /// True when the reactor already fired for event `id`.
    pub fn has_fired(store: &ProjectionStore, id: &str) -> bool {
        matches!(store.get(&fired_key(id)), Ok(Some(_)))
    }

    /// Consumes until `shutdown` triggers. The run's end (and its error) is
    /// recorded in the [`Health`] of the metrics it was created with.
    pub async fn run(self, shutdown: Shutdown) -> Result<RunReport, RunError> {
        let guard = self.health.guard(&self.config.durable_name);
        let result = self.consume(shutdown).await;
        guard.finish(&result);
        result
    }

    async fn bind(&self, checkpoint: u64) -> Result<Box<dyn Consumer>, RunError> {
        self.bind_consumer(checkpoint)
            .await
            .map_err(|e| RunError::with_source(RunErrorKind::Consumer, e))
    }

    async fn bind_consumer(&self, checkpoint: u64) -> Result<Box<dyn Consumer>, ConsumerError> {
        self.broker
            .consumer(
                &self.config.stream,
                ConsumerConfig {
                    durable_name: self.config.durable_name.clone(),
                    description: Some(format!("reactor {}", self.reactor.name())),
                    deliver_policy: DeliverPolicy::ByStartSequence(checkpoint + 1),
                    ack_wait: self.config.ack_wait,
                    max_deliver: Some(self.config.max_deliver),
                    max_ack_pending: self.config.batch_size.max(1),
                    ..Default::default()
                },
            )
            .await
    }

    /// Deletes the durable consumer and creates it again at checkpoint + 1
    /// (see [`crate::startup`]).
    async fn rebind(&self, checkpoint: u64) -> Result<Box<dyn Consumer>, RunError> {
        match self
            .broker
            .delete_consumer(&self.config.stream, &self.config.durable_name)
            .await
        {
            Ok(()) => {}
            Err(e) if e.kind() == &ConsumerErrorKind::ConsumerNotFound => {}
            Err(e) => return Err(RunError::with_source(RunErrorKind::Consumer, e)),
        }
        self.bind(checkpoint).await
    }

    async fn consume(self, shutdown: Shutdown) -> Result<RunReport, RunError> {
        ensure_dead_letter_stream(self.broker.as_ref())
            .await
            .map_err(|e| RunError::with_source(RunErrorKind::DeadLetterStream, e))?;
        let store_err = |e| RunError::with_source(RunErrorKind::Store, e);
        let mut floor = AckFloor::new(self.store.checkpoint().map_err(store_err)?);
        let mut report = RunReport {
            checkpoint: floor.committed,
            ..Default::default()
        };
        let bound = bind_when_ready(&self.config, &self.health, &shutdown, || {
            self.bind_consumer(floor.checkpoint())
        })
        .await
        .map_err(|e| RunError::with_source(RunErrorKind::Consumer, e))?;
        let Some(mut consumer) = bound else {
            return Ok(report);
        };
        self.health.running(&self.config.durable_name);
        let mut held: BTreeMap<u64, Delivery> = BTreeMap::new();
        let mut strays_resolved = false;
        let mut stray_wait = StrayWait::new(&self.config);
        let mut fetch_failures = 0u32;
        let mut owed = Owed::default();
        while !shutdown.is_triggered() {
            if !owed
                .refresh(
                    consumer.as_ref(),
                    floor.checkpoint(),
                    &self.config,
                    &self.health,
                )
                .await
            {
                continue;
            }
            // An owed event holds the ack floor (the checkpoint) below it
            // until its letter is stored; the others fire meanwhile.
            for (seq, deliveries) in owed.all() {
                held.remove(&seq);
                if self
                    .dead_letter_exhausted(seq, deliveries, &mut report)
                    .await
                {
                    owed.paid(seq);
                    floor.settled(seq);
                } else {
                    floor.outstanding(seq);
                }
            }
            let want = self.config.batch_size.saturating_sub(held.len()).max(1);
            match consumer.fetch(want, self.config.fetch_wait).await {
                Ok(deliveries) => {
                    fetch_failures = 0;
                    self.health.recovered(&self.config.durable_name, "fetch");
                    held.extend(deliveries.into_iter().map(|d| (d.message.seq, d)));
                }
                Err(e) => {
                    fetch_failures += 1;
                    tracing::warn!(error = %e, "fetch failed; retrying");
                    self.health
                        .failing(&self.config.durable_name, "fetch", e.to_string());
                    tokio::time::sleep(self.config.backoff(fetch_failures)).await;
                    continue;
                }
            }
            if held.is_empty() {
                continue;
            }
            if !strays_resolved {
                match stray_wait.check(consumer.as_ref(), held.len()).await {
                    StrayCheck::Clear => strays_resolved = true,
                    StrayCheck::Wait => continue,
                    StrayCheck::Expired => {
                        held.clear();
                        consumer = self.rebind(floor.checkpoint()).await?;
                        strays_resolved = true;
                        continue;
                    }
                }
            }
            for (_, delivery) in std::mem::take(&mut held) {
                self.process(delivery, &mut floor, &mut report).await?;
            }
            if floor.checkpoint() > floor.committed {
                self.store
                    .commit(self.store.transaction(), floor.checkpoint())
                    .map_err(store_err)?;
                floor.committed = floor.checkpoint();
            }
        }
        report.checkpoint = floor.committed;
        Ok(report)
    }

    /// Handles one delivery: fires (recording the id with the ack floor as
    /// checkpoint), skips, retries or dead-letters it.
    async fn process(
        &self,
        delivery: Delivery,
        floor: &mut AckFloor,
        report: &mut RunReport,
    ) -> Result<(), RunError> {
        let seq = delivery.message.seq;
        match self.handle(&delivery).await {
            Ok(true) => {
                report.applied += 1;
                ConsumerMetrics::add(&self.metrics.applied, 1);
                floor.settled(seq);
                let mut tx = self.store.transaction();
                if let Ok(envelope) = decode(&delivery) {
                    tx.put(&fired_key(&envelope.id.to_string()), Vec::new());
                }
                self.store
                    .commit(tx, floor.checkpoint())
                    .map_err(|e| RunError::with_source(RunErrorKind::Store, e))?;
                floor.committed = floor.checkpoint();
                self.metrics.settle(&delivery, AckKind::Ack).await;
            }
            Ok(false) => {
                report.skipped += 1;
                ConsumerMetrics::add(&self.metrics.skipped, 1);
                floor.settled(seq);
                self.metrics.settle(&delivery, AckKind::Ack).await;
            }
            Err(HandlerError::Transient(reason))
                if delivery.delivery_count < self.config.max_deliver =>
            {
                tracing::warn!(seq, %reason, "reactor failed transiently; retrying");
                ConsumerMetrics::add(&self.metrics.retries, 1);
                floor.outstanding(seq);
                let delay = self.config.backoff(delivery.delivery_count);
                self.metrics
                    .settle(&delivery, AckKind::Nak { delay: Some(delay) })
                    .await;
            }
            Err(e) => {
                let reason = DeadLetterReason {
                    consumer: self.config.durable_name.clone(),
                    deliveries: delivery.delivery_count,
                    error: e.reason().to_owned(),
                };
                let published =
                    publish_dead_letter(self.broker.as_ref(), &delivery.message, &reason);
                if let Err(e) = published.await {
                    self.health
                        .failing(&self.config.durable_name, "dead-letter", e.to_string());
                    floor.outstanding(seq);
                    let delay = Some(self.config.backoff(1));
                    self.metrics.settle(&delivery, AckKind::Nak { delay }).await;
                } else {
                    self.health
                        .recovered(&self.config.durable_name, "dead-letter");
                    report.dead_lettered += 1;
                    ConsumerMetrics::add(&self.metrics.dead_letters, 1);
                    floor.settled(seq);
                    let reason = Some(e.reason().to_owned());
                    self.metrics
                        .settle(&delivery, AckKind::Term { reason })
                        .await;
                }
            }
        }
        Ok(())
    }

    /// Dead-letters an exhausted event; false when it stays owed.
    async fn dead_letter_exhausted(
        &self,
        seq: u64,
        deliveries: u32,
        report: &mut RunReport,
    ) -> bool {
        let settled = dead_letter_exhausted(
            self.broker.as_ref(),
            &self.config,
            &self.health,
            seq,
            deliveries,
        )
        .await;
        match settled {
            Some(Settled::Stored(_)) => {
                self.health
                    .recovered(&self.config.durable_name, "dead-letter");
                report.dead_lettered += 1;
                ConsumerMetrics::add(&self.metrics.dead_letters, 1);
                true
            }
            Some(Settled::Gone) => true,
            None => false,
        }
    }

    /// Reacts to one delivery; `Ok(true)` when it is to be recorded as fired.
    async fn handle(&self, delivery: &Delivery) -> Result<bool, HandlerError> {
        if !is_for(self.reactor.event_types(), &delivery.message.subject) {
            return Ok(false);
        }
        if route(&delivery.message, &self.config.durable_name) == Route::Other {
            return Ok(false);
        }
        let envelope = decode(delivery)?;
        if Self::has_fired(&self.store, &envelope.id.to_string()) {
            return Ok(false);
        }
        if self.mode == RunMode::Live {
            self.reactor
                .react(&envelope)
                .instrument(event_span(delivery))
                .await?;
        }
        Ok(true)
    }
}

fn decode(delivery: &Delivery) -> Result<Envelope, HandlerError> {
    decode_entry(&delivery.message)
}

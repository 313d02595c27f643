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

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use backbone_broker::{Broker, ConsumerConfig, DeliverPolicy, Delivery};
use backbone_schemas::{Envelope, subject::parse_event_subject};
use tracing::Instrument as _;

use crate::{
    config::RuntimeConfig,
    dead_letter::{DeadLetterReason, ensure_dead_letter_stream, publish_dead_letter},
    error::{HandlerError, RunError, RunErrorKind},
    health::Health,
    metrics::{ConsumerMetrics, Metrics},
    projection::{RunReport, event_span},
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

    async fn consume(self, shutdown: Shutdown) -> Result<RunReport, RunError> {
        ensure_dead_letter_stream(self.broker.as_ref())
            .await
            .map_err(|e| RunError::with_source(RunErrorKind::DeadLetterStream, e))?;
        let store_err = |e| RunError::with_source(RunErrorKind::Store, e);
        let mut checkpoint = self.store.checkpoint().map_err(store_err)?;
        let consumer = self
            .broker
            .consumer(
                &self.config.stream,
                ConsumerConfig {
                    durable_name: self.config.durable_name.clone(),
                    deliver_policy: DeliverPolicy::ByStartSequence(checkpoint + 1),
                    ack_wait: self.config.ack_wait,
                    max_deliver: Some(self.config.max_deliver),
                    max_ack_pending: self.config.batch_size.max(1),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| RunError::with_source(RunErrorKind::Consumer, e))?;
        self.health.running(&self.config.durable_name);
        let mut report = RunReport::default();
        while !shutdown.is_triggered() {
            let deliveries = match consumer
                .fetch(self.config.batch_size, self.config.fetch_wait)
                .await
            {
                Ok(d) => {
                    self.health.recovered(&self.config.durable_name, "fetch");
                    d
                }
                Err(e) => {
                    tracing::warn!(error = %e, "fetch failed; retrying");
                    self.health
                        .failing(&self.config.durable_name, "fetch", e.to_string());
                    tokio::time::sleep(self.config.backoff(1)).await;
                    continue;
                }
            };
            for delivery in deliveries {
                let seq = delivery.message.seq;
                match self.handle(&delivery).await {
                    Ok(true) => {
                        report.applied += 1;
                        ConsumerMetrics::add(&self.metrics.applied, 1);
                        let mut tx = self.store.transaction();
                        if let Ok(envelope) = decode(&delivery) {
                            tx.put(&fired_key(&envelope.id.to_string()), Vec::new());
                        }
                        checkpoint = checkpoint.max(seq);
                        self.store.commit(tx, checkpoint).map_err(store_err)?;
                        let _ = delivery.ack().await;
                    }
                    Ok(false) => {
                        report.skipped += 1;
                        let _ = delivery.ack().await;
                    }
                    Err(HandlerError::Transient(reason))
                        if delivery.delivery_count < self.config.max_deliver =>
                    {
                        tracing::warn!(seq, %reason, "reactor failed transiently; retrying");
                        ConsumerMetrics::add(&self.metrics.retries, 1);
                        let delay = self.config.backoff(delivery.delivery_count);
                        let _ = delivery.nak(Some(delay)).await;
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
                            self.health.failing(
                                &self.config.durable_name,
                                "dead-letter",
                                e.to_string(),
                            );
                            let _ = delivery.nak(Some(self.config.backoff(1))).await;
                        } else {
                            self.health
                                .recovered(&self.config.durable_name, "dead-letter");
                            report.dead_lettered += 1;
                            ConsumerMetrics::add(&self.metrics.dead_letters, 1);
                            let _ = delivery.term(e.reason()).await;
                        }
                    }
                }
            }
        }
        report.checkpoint = checkpoint;
        Ok(report)
    }

    /// Reacts to one delivery; `Ok(true)` when it is to be recorded as fired.
    async fn handle(&self, delivery: &Delivery) -> Result<bool, HandlerError> {
        let types = self.reactor.event_types();
        if let Ok((event_type, _)) = parse_event_subject(&delivery.message.subject) {
            if !types.is_empty() && !types.contains(&event_type) {
                return Ok(false);
            }
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
    let m = &delivery.message;
    Ok(Envelope::decode(&m.subject, &m.headers, &m.payload)?)
}

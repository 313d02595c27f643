//! The loop every runner shares.
//!
//! A projection and a reactor differ in what they do with a batch and in
//! what their checkpoint means (the last committed sequence, or the ack
//! floor); everything around that is the same and lives here, once: the
//! dead-letter stream check, binding while the broker comes up, collecting
//! exhausted events ([`crate::owed`]), fetching with backoff, the wait for a
//! previous process's strays ([`crate::startup`]), keeping held deliveries
//! alive, and the verdict on a failed handler. A runner supplies a
//! [`Handler`]; [`Core::run`] drives it until shutdown.

use std::{collections::BTreeMap, sync::Arc, time::Instant};

use backbone_broker::{
    AckKind, Broker, Consumer, ConsumerConfig, ConsumerErrorKind, Delivery, StoredMessage,
};
use futures::StreamExt as _;

use crate::{
    config::RuntimeConfig,
    dead_letter::{DeadLetterReason, ensure_dead_letter_stream, publish_dead_letter},
    error::{HandlerError, RunError, RunErrorKind},
    health::Health,
    metrics::{ConsumerMetrics, Metrics},
    owed::{Owed, Settled, dead_letter_exhausted},
    projection::RunReport,
    shutdown::Shutdown,
    startup::{StrayCheck, StrayWait, bind_when_ready},
    store::ProjectionStore,
};

/// Progress acks of held deliveries in flight at once.
const SETTLE_CONCURRENCY: usize = 64;

/// Deliveries fetched and not yet handled, by stream sequence.
pub(crate) type Held = BTreeMap<u64, Delivery>;

/// What a runner does with its deliveries; [`Core::run`] does the rest.
pub(crate) trait Handler: Send {
    /// The durable consumer's settings, delivering from `checkpoint + 1`.
    fn consumer_config(&self, core: &Core, checkpoint: u64) -> ConsumerConfig;

    /// Where the durable consumer may be (re)created after.
    fn checkpoint(&self) -> u64;

    /// Dead-letters what `owed` holds, removing each paid event from
    /// `held`. False while the loop must not fetch or apply anything until
    /// the rest is paid (it backs off and keeps `held` alive meanwhile).
    async fn pay_owed(
        &mut self,
        core: &Core,
        owed: &mut Owed,
        held: &mut Held,
        report: &mut RunReport,
    ) -> Result<bool, RunError>;

    /// False while `held` must wait for a redelivery before it is handled.
    fn ready(&mut self, _held: &Held) -> bool {
        true
    }

    /// Handles `held` (not empty, in sequence order); returns what is still
    /// held for a later turn.
    async fn process(
        &mut self,
        core: &Core,
        held: Held,
        report: &mut RunReport,
    ) -> Result<Held, RunError>;

    /// The run ends: settles what is in flight; the committed checkpoint.
    async fn finish(&mut self) -> u64;
}

/// What to do with a delivery whose handler failed.
pub(crate) enum Verdict {
    /// Hand it back for a redelivery after this delay.
    Retry(std::time::Duration),
    /// Dead-letter it with this reason.
    DeadLetter(String),
}

/// The parts of a runner every handler uses.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) store: ProjectionStore,
    pub(crate) config: RuntimeConfig,
    pub(crate) metrics: Arc<ConsumerMetrics>,
    pub(crate) health: Health,
}

impl Core {
    /// The core of a runner called `name`, registered in `metrics`' health.
    pub(crate) fn new(
        broker: Arc<dyn Broker>,
        store: ProjectionStore,
        config: RuntimeConfig,
        metrics: &Metrics,
        name: &str,
    ) -> Self {
        let health = metrics.health().clone();
        health.register(&config.durable_name, name);
        let metrics = metrics.consumer(&config.durable_name);
        Self {
            broker,
            store,
            config,
            metrics,
            health,
        }
    }

    /// Consumes with the handler `open` makes until `shutdown` triggers.
    /// The run's end (and its error) is recorded in the [`Health`].
    pub(crate) async fn run<H: Handler>(
        self,
        shutdown: Shutdown,
        open: impl FnOnce(&Core) -> Result<H, RunError>,
    ) -> Result<RunReport, RunError> {
        let guard = self.health.guard(&self.config.durable_name);
        let result = self.consume(shutdown, open).await;
        guard.finish(&result);
        result
    }

    async fn consume<H: Handler>(
        &self,
        shutdown: Shutdown,
        open: impl FnOnce(&Core) -> Result<H, RunError>,
    ) -> Result<RunReport, RunError> {
        ensure_dead_letter_stream(self.broker.as_ref())
            .await
            .map_err(|e| RunError::with_source(RunErrorKind::DeadLetterStream, e))?;
        let mut handler = open(self)?;
        let mut report = RunReport {
            checkpoint: handler.checkpoint(),
            ..Default::default()
        };
        let bound = bind_when_ready(&self.config, &self.health, &shutdown, || {
            let config = handler.consumer_config(self, handler.checkpoint());
            self.broker.consumer(&self.config.stream, config)
        })
        .await
        .map_err(|e| RunError::with_source(RunErrorKind::Consumer, e))?;
        let Some(mut consumer) = bound else {
            return Ok(report);
        };
        self.health.running(&self.config.durable_name);
        let mut held = Held::new();
        let mut owed = Owed::default();
        let mut owed_failures = 0u32;
        let mut fetch_failures = 0u32;
        let mut strays_resolved = false;
        let mut stray_wait = StrayWait::new(&self.config);
        let mut last_keepalive = Instant::now();
        while !shutdown.is_triggered() {
            if !owed
                .refresh(
                    consumer.as_ref(),
                    handler.checkpoint(),
                    &self.config,
                    &self.health,
                )
                .await
            {
                continue;
            }
            if !handler
                .pay_owed(self, &mut owed, &mut held, &mut report)
                .await?
            {
                owed_failures += 1;
                self.keep_alive_due(&held, &mut last_keepalive).await;
                tokio::time::sleep(self.config.backoff(owed_failures)).await;
                continue;
            }
            owed_failures = 0;
            let want = self.config.batch_size.saturating_sub(held.len()).max(1);
            match consumer.fetch(want, self.config.fetch_wait).await {
                Ok(deliveries) => {
                    fetch_failures = 0;
                    self.health.recovered(&self.config.durable_name, "fetch");
                    for d in deliveries {
                        self.metrics
                            .lag
                            .store(d.pending, std::sync::atomic::Ordering::Relaxed);
                        held.insert(d.message.seq, d);
                    }
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
            if !handler.ready(&held) {
                self.keep_alive_due(&held, &mut last_keepalive).await;
                continue;
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
                        consumer = self.rebind(&handler).await?;
                        strays_resolved = true;
                        continue;
                    }
                }
            }
            held = handler
                .process(self, std::mem::take(&mut held), &mut report)
                .await?;
            last_keepalive = Instant::now();
        }
        report.checkpoint = handler.finish().await;
        Ok(report)
    }

    /// Deletes the durable consumer and creates it again after the
    /// handler's checkpoint, dropping every outstanding delivery (see
    /// [`crate::startup`]).
    async fn rebind(&self, handler: &impl Handler) -> Result<Box<dyn Consumer>, RunError> {
        let consumer_err = |e| RunError::with_source(RunErrorKind::Consumer, e);
        match self
            .broker
            .delete_consumer(&self.config.stream, &self.config.durable_name)
            .await
        {
            Ok(()) => {}
            Err(e) if e.kind() == &ConsumerErrorKind::ConsumerNotFound => {}
            Err(e) => return Err(consumer_err(e)),
        }
        let config = handler.consumer_config(self, handler.checkpoint());
        self.broker
            .consumer(&self.config.stream, config)
            .await
            .map_err(consumer_err)
    }

    /// Restarts the ack wait of `held` once a third of it has passed.
    async fn keep_alive_due(&self, held: &Held, last: &mut Instant) {
        if last.elapsed() > self.config.ack_wait / 3 {
            futures::stream::iter(held.values())
                .for_each_concurrent(SETTLE_CONCURRENCY, |d| {
                    self.metrics.settle(d, AckKind::Progress)
                })
                .await;
            *last = Instant::now();
        }
    }

    /// Whether a delivery whose handler failed with `error` is retried or
    /// dead-lettered: a permanent failure, or a transient one on the last
    /// allowed delivery, is dead-lettered.
    pub(crate) fn verdict(&self, delivery: &Delivery, error: HandlerError) -> Verdict {
        match error {
            HandlerError::Permanent(reason) => Verdict::DeadLetter(reason),
            HandlerError::Transient(reason)
                if delivery.delivery_count >= self.config.max_deliver =>
            {
                Verdict::DeadLetter(format!(
                    "gave up after {} deliveries: {reason}",
                    delivery.delivery_count
                ))
            }
            HandlerError::Transient(reason) => {
                tracing::warn!(seq = delivery.message.seq, %reason, "transient failure; retrying");
                ConsumerMetrics::add(&self.metrics.retries, 1);
                Verdict::Retry(self.config.backoff(delivery.delivery_count))
            }
        }
    }

    /// Publishes the dead letter of `delivery`; false (the runner reported
    /// failing) when it could not be stored and the delivery must be
    /// handed back.
    pub(crate) async fn dead_letter(
        &self,
        delivery: &Delivery,
        error: &str,
        report: &mut RunReport,
    ) -> bool {
        let reason = DeadLetterReason {
            consumer: self.config.durable_name.clone(),
            deliveries: delivery.delivery_count,
            error: error.to_owned(),
        };
        match publish_dead_letter(self.broker.as_ref(), &delivery.message, &reason).await {
            Ok(_) => {
                self.dead_lettered(report);
                true
            }
            Err(e) => {
                let seq = delivery.message.seq;
                tracing::warn!(seq, error = %e, "dead-letter publish failed; retrying later");
                self.health
                    .failing(&self.config.durable_name, "dead-letter", e.to_string());
                false
            }
        }
    }

    /// Dead-letters exhausted event `seq`. `None` when it stays owed;
    /// `Some(None)` when it is gone from the stream; otherwise the message
    /// its letter was made of.
    pub(crate) async fn dead_letter_exhausted(
        &self,
        seq: u64,
        deliveries: u32,
        report: &mut RunReport,
    ) -> Option<Option<StoredMessage>> {
        let settled = dead_letter_exhausted(
            self.broker.as_ref(),
            &self.config,
            &self.health,
            seq,
            deliveries,
        )
        .await?;
        Some(match settled {
            Settled::Stored(message) => {
                self.dead_lettered(report);
                Some(message)
            }
            Settled::Gone => None,
        })
    }

    fn dead_lettered(&self, report: &mut RunReport) {
        self.health
            .recovered(&self.config.durable_name, "dead-letter");
        report.dead_lettered += 1;
        ConsumerMetrics::add(&self.metrics.dead_letters, 1);
    }

    /// The checkpoint in the store.
    pub(crate) fn stored_checkpoint(&self) -> Result<u64, RunError> {
        self.store
            .checkpoint()
            .map_err(|e| RunError::with_source(RunErrorKind::Store, e))
    }

    /// Commits `tx` with `checkpoint`.
    pub(crate) fn commit(
        &self,
        tx: crate::transaction::Transaction<'_>,
        checkpoint: u64,
    ) -> Result<(), RunError> {
        self.store
            .commit(tx, checkpoint)
            .map_err(|e| RunError::with_source(RunErrorKind::Store, e))
    }
}

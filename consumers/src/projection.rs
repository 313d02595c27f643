//! The live projection runtime: fetch a batch, apply it, commit it with the
//! checkpoint, then acknowledge.
//!
//! # Guarantees
//! - **Exactly-once effect.** Model writes and the checkpoint commit in one
//!   atomic, flushed sled batch *before* any delivery of the batch is acked;
//!   a redelivery at or below the checkpoint is acked without applying. A
//!   crash (even `kill -9`) at any point loses nothing and applies nothing
//!   twice.
//! - **Stream order.** Events apply in sequence order. When an event fails
//!   transiently it is nakked with exponential backoff and the events after
//!   it are held (unacked, kept alive with progress acks) until it succeeds
//!   or is dead-lettered, so a retry never reorders a model's input.
//! - **Nothing dropped silently.** Permanent failures, failures on the last
//!   allowed delivery, and messages reported by `take_exhausted` are
//!   published to the dead-letter stream before the original is termed; the
//!   checkpoint moves past them and later events keep applying.
//! - **Redrives** ([`crate::redrive`]) apply only to the consumer they name
//!   and only once; every other consumer acks them and moves past them.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use backbone_broker::{
    AckKind, Broker, Consumer, ConsumerConfig, ConsumerError, DeliverPolicy, Delivery,
};
use futures::StreamExt as _;
use tracing::Instrument as _;

use crate::{
    config::RuntimeConfig,
    dead_letter::{DeadLetterReason, ensure_dead_letter_stream, publish_dead_letter},
    error::{HandlerError, RunError, RunErrorKind},
    health::Health,
    metrics::{ConsumerMetrics, Metrics},
    model::{Outcome, ReadModel, apply_entry, fence_rejected, filter_subjects},
    owed::{Owed, Settled, dead_letter_exhausted},
    shutdown::Shutdown,
    startup::{StrayCheck, StrayWait, bind_when_ready},
    store::ProjectionStore,
};

/// Progress acks of held deliveries in flight at once.
const SETTLE_CONCURRENCY: usize = 64;

/// Totals of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Events applied.
    pub applied: u64,
    /// Redeliveries skipped by the checkpoint.
    pub skipped: u64,
    /// Events dead-lettered.
    pub dead_lettered: u64,
    /// Copies of events already applied, skipped ([`crate::dedup`]).
    pub duplicates: u64,
    /// The checkpoint committed last.
    pub checkpoint: u64,
}

/// Runs one read model as a durable consumer until shutdown.
#[derive(Debug)]
pub struct ProjectionRunner {
    broker: Arc<dyn Broker>,
    model: Arc<dyn ReadModel>,
    store: ProjectionStore,
    config: RuntimeConfig,
    metrics: Arc<ConsumerMetrics>,
    health: Health,
}

/// What the loop does with each delivery of a batch, after the commit.
enum Settle {
    Ack,
    Term(String),
}

impl ProjectionRunner {
    /// A runner of `model` over `store`, reporting into `metrics`.
    pub fn new(
        broker: Arc<dyn Broker>,
        model: Arc<dyn ReadModel>,
        store: ProjectionStore,
        config: RuntimeConfig,
        metrics: &Metrics,
    ) -> Self {
        let health = metrics.health().clone();
        health.register(&config.durable_name, model.name());
        let metrics = metrics.consumer(&config.durable_name);
        Self {
            broker,
            model,
            store,
            config,
            metrics,
            health,
        }
    }

    /// The store the runner writes.
    pub fn store(&self) -> &ProjectionStore {
        &self.store
    }

    async fn bind(&self, checkpoint: u64) -> Result<Box<dyn Consumer>, RunError> {
        self.bind_consumer(checkpoint)
            .await
            .map_err(|e| RunError::with_source(RunErrorKind::Consumer, e))
    }

    async fn bind_consumer(&self, checkpoint: u64) -> Result<Box<dyn Consumer>, ConsumerError> {
        let mut filters = filter_subjects(self.model.as_ref());
        if filters.len() > 1 && !self.broker.features().multiple_filter_subjects {
            tracing::info!(
                model = self.model.name(),
                "server lacks multiple filter subjects; filtering events in process"
            );
            filters = vec![backbone_broker::stream::EVENT_SUBJECTS.to_owned()];
        }
        let config = ConsumerConfig {
            durable_name: self.config.durable_name.clone(),
            description: Some(format!("read model {}", self.model.name())),
            deliver_policy: DeliverPolicy::ByStartSequence(checkpoint + 1),
            filter_subjects: filters,
            ack_wait: self.config.ack_wait,
            max_deliver: Some(self.config.max_deliver),
            backoff: Vec::new(),
            // Room for the batch being applied while the previous batch's
            // settlements are still in flight (see `process_batch`).
            max_ack_pending: self.config.batch_size.max(1).saturating_mul(2),
        };
        self.broker.consumer(&self.config.stream, config).await
    }

    /// Deletes the durable consumer and creates it again at checkpoint + 1,
    /// dropping every outstanding delivery (see [`crate::startup`]).
    async fn rebind(&self, checkpoint: u64) -> Result<Box<dyn Consumer>, RunError> {
        match self
            .broker
            .delete_consumer(&self.config.stream, &self.config.durable_name)
            .await
        {
            Ok(()) => {}
            Err(e) if e.kind() == &backbone_broker::ConsumerErrorKind::ConsumerNotFound => {}
            Err(e) => return Err(RunError::with_source(RunErrorKind::Consumer, e)),
        }
        self.bind(checkpoint).await
    }

    /// Consumes until `shutdown` triggers; the batch in hand is finished and
    /// committed before returning. The run's end (and its error) is
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
        let mut checkpoint = self
            .store
            .checkpoint()
            .map_err(|e| RunError::with_source(RunErrorKind::Store, e))?;
        let mut report = RunReport {
            checkpoint,
            ..Default::default()
        };
        let bound = bind_when_ready(&self.config, &self.health, &shutdown, || {
            self.bind_consumer(checkpoint)
        })
        .await
        .map_err(|e| RunError::with_source(RunErrorKind::Consumer, e))?;
        let Some(mut consumer) = bound else {
            return Ok(report);
        };
        self.health.running(&self.config.durable_name);
        let mut held: BTreeMap<u64, Delivery> = BTreeMap::new();
        let mut blocked: Option<u64> = None;
        let mut last_keepalive = Instant::now();
        let mut fetch_failures = 0u32;
        let mut strays_resolved = false;
        let mut stray_wait = StrayWait::new(&self.config);
        let mut settling: Option<tokio::task::JoinHandle<()>> = None;
        let mut owed = Owed::default();
        let mut owed_failures = 0u32;
        while !shutdown.is_triggered() {
            if !owed
                .refresh(consumer.as_ref(), checkpoint, &self.config, &self.health)
                .await
            {
                continue;
            }
            while let Some((seq, deliveries)) = owed.lowest() {
                if !self
                    .dead_letter_exhausted(seq, deliveries, checkpoint, &mut report)
                    .await?
                {
                    break;
                }
                owed.paid(seq);
                held.remove(&seq);
                if blocked == Some(seq) {
                    blocked = None;
                }
            }
            if !owed.is_empty() {
                // Still owed: apply nothing (the checkpoint must not pass
                // it), keep what is held alive, retry with backoff.
                owed_failures += 1;
                if last_keepalive.elapsed() > self.config.ack_wait / 3 {
                    keep_alive(&self.metrics, held.values()).await;
                    last_keepalive = Instant::now();
                }
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
            if let Some(seq) = blocked
                && !held.contains_key(&seq)
            {
                if last_keepalive.elapsed() > self.config.ack_wait / 3 {
                    keep_alive(&self.metrics, held.values()).await;
                    last_keepalive = Instant::now();
                }
                continue;
            }
            blocked = None;
            if held.is_empty() {
                continue;
            }
            if !strays_resolved {
                match stray_wait.check(consumer.as_ref(), held.len()).await {
                    StrayCheck::Clear => strays_resolved = true,
                    StrayCheck::Wait => continue,
                    StrayCheck::Expired => {
                        held.clear();
                        consumer = self.rebind(checkpoint).await?;
                        strays_resolved = true;
                        continue;
                    }
                }
            }
            let batch: Vec<Delivery> = std::mem::take(&mut held).into_values().collect();
            let (rest, next_blocked) = self
                .process_batch(batch, &mut checkpoint, &mut report, &mut settling)
                .await?;
            held.extend(rest.into_iter().map(|d| (d.message.seq, d)));
            blocked = next_blocked;
            last_keepalive = Instant::now();
        }
        if let Some(previous) = settling.take() {
            let _ = previous.await;
        }
        report.checkpoint = checkpoint;
        Ok(report)
    }

    /// Dead-letters an event the broker gave up redelivering, and fences it
    /// (committed at the unchanged `checkpoint`) so that its redrive
    /// applies. False when the letter could not be stored: the event stays
    /// owed ([`crate::owed`]) and the runner reports itself failing.
    async fn dead_letter_exhausted(
        &self,
        seq: u64,
        deliveries: u32,
        checkpoint: u64,
        report: &mut RunReport,
    ) -> Result<bool, RunError> {
        let settled = dead_letter_exhausted(
            self.broker.as_ref(),
            &self.config,
            &self.health,
            seq,
            deliveries,
        )
        .await;
        let message = match settled {
            Some(Settled::Stored(message)) => message,
            Some(Settled::Gone) => return Ok(true),
            None => return Ok(false),
        };
        let mut tx = self.store.transaction();
        fence_rejected(&message, &mut tx);
        self.store
            .commit(tx, checkpoint)
            .map_err(|e| RunError::with_source(RunErrorKind::Store, e))?;
        self.health
            .recovered(&self.config.durable_name, "dead-letter");
        report.dead_lettered += 1;
        ConsumerMetrics::add(&self.metrics.dead_letters, 1);
        Ok(true)
    }

    /// Applies `batch` (in sequence order) and commits; returns the
    /// deliveries held back behind a transient failure and the blocking seq.
    ///
    /// The committed batch's settlements run in the background (`settling`)
    /// while the loop fetches and applies the next batch: they are only
    /// acknowledgements of what the checkpoint already records, so the
    /// round trips they cost need not delay the next commit. At most one
    /// batch settles at a time; the previous one is awaited first.
    async fn process_batch(
        &self,
        batch: Vec<Delivery>,
        checkpoint: &mut u64,
        report: &mut RunReport,
        settling: &mut Option<tokio::task::JoinHandle<()>>,
    ) -> Result<(Vec<Delivery>, Option<u64>), RunError> {
        let mut tx = self.store.transaction();
        let mut settles: Vec<(Delivery, Settle)> = Vec::with_capacity(batch.len());
        let mut new_checkpoint = *checkpoint;
        let mut retry: Option<(Delivery, Duration)> = None;
        let mut rest = Vec::new();
        let mut applied = 0u64;
        let mut iter = batch.into_iter();
        for delivery in iter.by_ref() {
            let seq = delivery.message.seq;
            if seq <= *checkpoint {
                report.skipped += 1;
                ConsumerMetrics::add(&self.metrics.skipped, 1);
                settles.push((delivery, Settle::Ack));
                continue;
            }
            let span = event_span(&delivery);
            let started = Instant::now();
            let outcome = span.in_scope(|| {
                apply_entry(
                    self.model.as_ref(),
                    &self.config.durable_name,
                    &delivery.message,
                    self.config.dedup_horizon,
                    &mut tx,
                )
            });
            self.metrics.observe_apply(started.elapsed());
            let failure = match outcome {
                Outcome::Applied => {
                    applied += 1;
                    None
                }
                Outcome::NotForModel => None,
                Outcome::NotForConsumer => {
                    report.skipped += 1;
                    ConsumerMetrics::add(&self.metrics.skipped, 1);
                    None
                }
                Outcome::Duplicate { first_seq } => {
                    tracing::debug!(parent: &span, seq, first_seq, "copy of an applied event; skipped");
                    report.duplicates += 1;
                    ConsumerMetrics::add(&self.metrics.duplicates, 1);
                    None
                }
                Outcome::Failed(HandlerError::Permanent(reason)) => Some(reason),
                Outcome::Failed(HandlerError::Transient(reason))
                    if delivery.delivery_count >= self.config.max_deliver =>
                {
                    Some(format!(
                        "gave up after {} deliveries: {reason}",
                        delivery.delivery_count
                    ))
                }
                Outcome::Failed(HandlerError::Transient(reason)) => {
                    tracing::warn!(parent: &span, seq, %reason, "transient failure; retrying");
                    ConsumerMetrics::add(&self.metrics.retries, 1);
                    let delay = self.config.backoff(delivery.delivery_count);
                    retry = Some((delivery, delay));
                    break;
                }
            };
            if let Some(error) = failure {
                let reason = DeadLetterReason {
                    consumer: self.config.durable_name.clone(),
                    deliveries: delivery.delivery_count,
                    error: error.clone(),
                };
                let published =
                    publish_dead_letter(self.broker.as_ref(), &delivery.message, &reason)
                        .instrument(span)
                        .await;
                if let Err(e) = published {
                    tracing::warn!(seq, error = %e, "dead-letter publish failed; retrying later");
                    self.health
                        .failing(&self.config.durable_name, "dead-letter", e.to_string());
                    retry = Some((delivery, self.config.backoff(1)));
                    break;
                }
                self.health
                    .recovered(&self.config.durable_name, "dead-letter");
                fence_rejected(&delivery.message, &mut tx);
                report.dead_lettered += 1;
                ConsumerMetrics::add(&self.metrics.dead_letters, 1);
                settles.push((delivery, Settle::Term(error)));
            } else {
                settles.push((delivery, Settle::Ack));
            }
            new_checkpoint = seq;
        }
        rest.extend(iter);
        if new_checkpoint > *checkpoint {
            self.store
                .commit(tx, new_checkpoint)
                .map_err(|e| RunError::with_source(RunErrorKind::Store, e))?;
            *checkpoint = new_checkpoint;
            self.metrics
                .checkpoint
                .store(new_checkpoint, std::sync::atomic::Ordering::Relaxed);
        }
        report.applied += applied;
        report.checkpoint = *checkpoint;
        ConsumerMetrics::add(&self.metrics.applied, applied);
        if let Some(previous) = settling.take() {
            let _ = previous.await;
        }
        if !settles.is_empty() {
            *settling = Some(tokio::spawn(settle_all(self.metrics.clone(), settles)));
        }
        let blocked = match retry {
            Some((delivery, delay)) => {
                let seq = delivery.message.seq;
                self.metrics
                    .settle(&delivery, AckKind::Nak { delay: Some(delay) })
                    .await;
                Some(seq)
            }
            None => None,
        };
        Ok((rest, blocked))
    }
}

/// Restarts the ack wait of deliveries held back, concurrently.
async fn keep_alive<'a>(metrics: &ConsumerMetrics, held: impl Iterator<Item = &'a Delivery>) {
    futures::stream::iter(held)
        .for_each_concurrent(SETTLE_CONCURRENCY, |d| metrics.settle(d, AckKind::Progress))
        .await;
}

/// Settles a committed batch's deliveries concurrently.
///
/// The JetStream adapter waits for the server to confirm each settlement
/// (double ack), so settling one after another would cost one round trip per
/// delivery on the critical path. Order does not matter here: the batch's
/// checkpoint is already committed, so a lost or late acknowledgement only
/// causes a redelivery that the checkpoint skips.
async fn settle_all(metrics: Arc<ConsumerMetrics>, settles: Vec<(Delivery, Settle)>) {
    let metrics = &metrics;
    futures::stream::iter(settles)
        .for_each_concurrent(None, |(delivery, settle)| async move {
            let kind = match settle {
                Settle::Ack => AckKind::Ack,
                Settle::Term(reason) => AckKind::Term {
                    reason: Some(reason),
                },
            };
            metrics.settle(&delivery, kind).await;
        })
        .await;
}

/// A span per event carrying its id and correlation id.
pub(crate) fn event_span(delivery: &Delivery) -> tracing::Span {
    let headers = &delivery.message.headers;
    tracing::info_span!(
        "event",
        seq = delivery.message.seq,
        subject = %delivery.message.subject,
        event_id = headers.get(backbone_schemas::wire::CE_ID).unwrap_or(""),
        correlation_id = headers.get(backbone_schemas::wire::CE_CORRELATIONID).unwrap_or(""),
        delivery = delivery.delivery_count,
    )
}

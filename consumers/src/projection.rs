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

use std::{sync::Arc, time::Instant};

use backbone_broker::{AckKind, Broker, ConsumerConfig, DeliverPolicy, Delivery};
use futures::StreamExt as _;
use tracing::Instrument as _;

use crate::{
    config::RuntimeConfig,
    error::{RunError, RunErrorKind},
    metrics::{ConsumerMetrics, Metrics},
    model::{Outcome, ReadModel, apply_entry, fence_rejected, filter_subjects},
    owed::Owed,
    runner::{Core, Handler, Held, Verdict},
    shutdown::Shutdown,
    store::ProjectionStore,
};

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
    core: Core,
    model: Arc<dyn ReadModel>,
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
        let core = Core::new(broker, store, config, metrics, model.name());
        Self { core, model }
    }

    /// The store the runner writes.
    pub fn store(&self) -> &ProjectionStore {
        &self.core.store
    }

    /// Consumes until `shutdown` triggers; the batch in hand is finished and
    /// committed before returning. The run's end (and its error) is
    /// recorded in the [`crate::Health`] of the metrics it was created with.
    pub async fn run(self, shutdown: Shutdown) -> Result<RunReport, RunError> {
        let Self { core, model } = self;
        core.run(shutdown, |core| {
            core.store
                .claim_layout(model.layout())
                .map_err(|e| RunError::with_source(RunErrorKind::Store, e))?;
            let checkpoint = core.stored_checkpoint()?;
            Ok(Projection {
                model,
                checkpoint,
                blocked: None,
                settling: None,
            })
        })
        .await
    }
}

/// A read model's side of the loop: apply in order, commit, then settle.
struct Projection {
    model: Arc<dyn ReadModel>,
    /// The checkpoint committed last.
    checkpoint: u64,
    /// The delivery handed back for a retry; nothing after it applies until
    /// it is redelivered (or dead-lettered).
    blocked: Option<u64>,
    /// The settlements of the batch committed last, still in flight.
    settling: Option<tokio::task::JoinHandle<()>>,
}

/// What the loop does with each delivery of a batch, after the commit.
enum Settle {
    Ack,
    Term(String),
}

impl Handler for Projection {
    fn consumer_config(&self, core: &Core, checkpoint: u64) -> ConsumerConfig {
        let mut filters = filter_subjects(self.model.as_ref());
        if filters.len() > 1 && !core.broker.features().multiple_filter_subjects {
            tracing::info!(
                model = self.model.name(),
                "server lacks multiple filter subjects; filtering events in process"
            );
            filters = vec![backbone_broker::stream::EVENT_SUBJECTS.to_owned()];
        }
        ConsumerConfig {
            durable_name: core.config.durable_name.clone(),
            description: Some(format!("read model {}", self.model.name())),
            deliver_policy: DeliverPolicy::ByStartSequence(checkpoint + 1),
            filter_subjects: filters,
            ack_wait: core.config.ack_wait,
            max_deliver: Some(core.config.max_deliver),
            backoff: Vec::new(),
            // Room for the batch being applied while the previous batch's
            // settlements are still in flight (see `process`).
            max_ack_pending: core.config.batch_size.max(1).saturating_mul(2),
        }
    }

    fn checkpoint(&self) -> u64 {
        self.checkpoint
    }

    /// Dead-letters owed events lowest first, each fenced (committed at the
    /// unchanged checkpoint) so that its redrive applies. Nothing applies
    /// while any is still owed: the checkpoint must not pass it.
    async fn pay_owed(
        &mut self,
        core: &Core,
        owed: &mut Owed,
        held: &mut Held,
        report: &mut RunReport,
    ) -> Result<bool, RunError> {
        while let Some((seq, deliveries)) = owed.lowest() {
            let Some(stored) = core.dead_letter_exhausted(seq, deliveries, report).await else {
                break;
            };
            if let Some(message) = stored {
                let mut tx = core.store.transaction();
                fence_rejected(&message, &mut tx);
                core.commit(tx, self.checkpoint)?;
            }
            owed.paid(seq);
            held.remove(&seq);
            if self.blocked == Some(seq) {
                self.blocked = None;
            }
        }
        Ok(owed.is_empty())
    }

    fn ready(&mut self, held: &Held) -> bool {
        if let Some(seq) = self.blocked
            && !held.contains_key(&seq)
        {
            return false;
        }
        self.blocked = None;
        true
    }

    /// Applies `held` in sequence order and commits; the deliveries behind
    /// a transient failure stay held.
    ///
    /// The committed batch's settlements run in the background (`settling`)
    /// while the loop fetches and applies the next batch: they are only
    /// acknowledgements of what the checkpoint already records, so the
    /// round trips they cost need not delay the next commit. At most one
    /// batch settles at a time; the previous one is awaited first.
    async fn process(
        &mut self,
        core: &Core,
        held: Held,
        report: &mut RunReport,
    ) -> Result<Held, RunError> {
        let metrics = &core.metrics;
        let mut tx = core.store.transaction();
        let mut settles: Vec<(Delivery, Settle)> = Vec::with_capacity(held.len());
        let mut new_checkpoint = self.checkpoint;
        let mut retry: Option<(Delivery, std::time::Duration)> = None;
        let mut applied = 0u64;
        let mut iter = held.into_iter();
        for (seq, delivery) in iter.by_ref() {
            if seq <= self.checkpoint {
                report.skipped += 1;
                ConsumerMetrics::add(&metrics.skipped, 1);
                settles.push((delivery, Settle::Ack));
                continue;
            }
            let span = event_span(&delivery, &core.config.durable_name);
            let started = Instant::now();
            let outcome = span.in_scope(|| {
                apply_entry(
                    self.model.as_ref(),
                    &core.config.durable_name,
                    &delivery.message,
                    core.config.dedup_horizon,
                    &mut tx,
                )
            });
            metrics.observe_apply(started.elapsed());
            let failure = match outcome {
                Outcome::Applied => {
                    applied += 1;
                    None
                }
                Outcome::NotForModel => None,
                Outcome::NotForConsumer => {
                    report.skipped += 1;
                    ConsumerMetrics::add(&metrics.skipped, 1);
                    None
                }
                Outcome::Duplicate { first_seq } => {
                    tracing::debug!(parent: &span, seq, first_seq, "copy of an applied event; skipped");
                    report.duplicates += 1;
                    ConsumerMetrics::add(&metrics.duplicates, 1);
                    None
                }
                Outcome::Failed(error) => match span.in_scope(|| core.verdict(&delivery, error)) {
                    Verdict::Retry(delay) => {
                        retry = Some((delivery, delay));
                        break;
                    }
                    Verdict::DeadLetter(reason) => Some(reason),
                },
            };
            if let Some(error) = failure {
                if !core
                    .dead_letter(&delivery, &error, report)
                    .instrument(span)
                    .await
                {
                    retry = Some((delivery, core.config.backoff(1)));
                    break;
                }
                fence_rejected(&delivery.message, &mut tx);
                settles.push((delivery, Settle::Term(error)));
            } else {
                settles.push((delivery, Settle::Ack));
            }
            new_checkpoint = seq;
        }
        let rest: Held = iter.collect();
        if new_checkpoint > self.checkpoint {
            core.commit(tx, new_checkpoint)?;
            self.checkpoint = new_checkpoint;
            metrics
                .checkpoint
                .store(new_checkpoint, std::sync::atomic::Ordering::Relaxed);
        }
        report.applied += applied;
        report.checkpoint = self.checkpoint;
        ConsumerMetrics::add(&metrics.applied, applied);
        if let Some(previous) = self.settling.take() {
            let _ = previous.await;
        }
        if !settles.is_empty() {
            self.settling = Some(tokio::spawn(settle_all(metrics.clone(), settles)));
        }
        self.blocked = match retry {
            Some((delivery, delay)) => {
                metrics
                    .settle(&delivery, AckKind::Nak { delay: Some(delay) })
                    .await;
                Some(delivery.message.seq)
            }
            None => None,
        };
        Ok(rest)
    }

    async fn finish(&mut self) -> u64 {
        if let Some(previous) = self.settling.take() {
            let _ = previous.await;
        }
        self.checkpoint
    }
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

/// A span per event carrying its id and correlation id, and the
/// OpenTelemetry messaging attributes of a `process` span; with the `otel`
/// feature it continues the trace in the event's `traceparent`.
pub(crate) fn event_span(delivery: &Delivery, consumer: &str) -> tracing::Span {
    let headers = &delivery.message.headers;
    let event_id = headers.get(backbone_schemas::wire::CE_ID).unwrap_or("");
    let span = tracing::info_span!(
        "event",
        otel.name = "process",
        otel.kind = "consumer",
        seq = delivery.message.seq,
        subject = %delivery.message.subject,
        event_id,
        correlation_id = headers.get(backbone_schemas::wire::CE_CORRELATIONID).unwrap_or(""),
        delivery = delivery.delivery_count,
        messaging.system = "backbone",
        messaging.operation.type = "process",
        messaging.destination.name = %delivery.message.stream,
        messaging.consumer.group.name = consumer,
        messaging.message.id = event_id,
        cloudevents.event_id = event_id,
    );
    #[cfg(feature = "otel")]
    crate::otel::continue_trace(&span, headers.get(backbone_schemas::wire::TRACEPARENT));
    span
}

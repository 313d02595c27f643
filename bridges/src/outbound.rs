//! Outbound: Backbone's log -> an external broker.
//!
//! A durable consumer (`bridge-<name>`) reads the log; each batch is sent
//! to the broker, and its deliveries are acknowledged in the log only once
//! the broker confirmed every message of it (RabbitMQ publisher confirms,
//! the Redis reply). While the broker is down the batch is held and sent
//! again after a backoff, the deliveries kept alive meanwhile, so nothing
//! is skipped; a copy that arrived before a failure arrives again with the
//! same message id (`ce-id`). A stored message that is not a valid event
//! is dead-lettered, as a consumer would.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use async_trait::async_trait;
use backbone_broker::{Broker, ConsumerConfig, DeliverPolicy, Delivery};
use backbone_consumers::{
    Shutdown,
    dead_letter::{DeadLetterReason, ensure_dead_letter_stream, publish_dead_letter},
};
use std::time::Duration;

use crate::{
    config::{BridgeConfig, StartAt},
    error::BridgeError,
    message::Outgoing,
};

/// How long one fetch from the log waits; bounds how soon a shutdown is
/// noticed.
const FETCH_WAIT: Duration = Duration::from_millis(500);
/// How long a delivery may stay unacknowledged before the log hands it
/// out again; a held batch is kept alive well within it.
const ACK_WAIT: Duration = Duration::from_secs(30);

/// An external broker that takes events.
#[async_trait]
pub trait Sink: Send {
    /// Sends `batch` in order and returns once the broker confirmed every
    /// message. On an error it is unknown which arrived: the whole batch
    /// is sent again (with the same message ids). Reconnects on the next
    /// call after a failure.
    async fn send(&mut self, batch: &[Outgoing]) -> Result<(), BridgeError>;
}

/// What a bridge did, for its metrics and its caller.
#[derive(Debug, Default)]
pub struct BridgeCounters {
    /// Events confirmed by the broker (outbound) or stored in the log
    /// (inbound), duplicates included.
    pub moved: AtomicU64,
    /// Messages dead-lettered.
    pub dead_lettered: AtomicU64,
    /// Failed attempts (each followed by a backoff).
    pub failures: AtomicU64,
}

impl BridgeCounters {
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A snapshot: (moved, dead-lettered, failures).
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.moved.load(Ordering::Relaxed),
            self.dead_lettered.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }
}

/// Runs an outbound bridge over `stream` until `shutdown` triggers.
pub async fn run_outbound(
    broker: Arc<dyn Broker>,
    stream: &str,
    config: &BridgeConfig,
    mut sink: impl Sink,
    counters: Arc<BridgeCounters>,
    mut shutdown: Shutdown,
) -> Result<(), BridgeError> {
    let consumer_config = consumer_config(broker.as_ref(), config);
    let setup = || async {
        ensure_dead_letter_stream(broker.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        broker
            .consumer(stream, consumer_config.clone())
            .await
            .map_err(|e| e.to_string())
    };
    let Some(consumer) = until_ready(config, &counters, &mut shutdown, setup).await else {
        return Ok(());
    };
    let mut log_attempt = 0;
    while !shutdown.is_triggered() {
        let deliveries = tokio::select! {
            fetched = consumer.fetch(config.batch_size, FETCH_WAIT) => fetched,
            () = shutdown.wait() => break,
        };
        let deliveries = match deliveries {
            Ok(d) => {
                log_attempt = 0;
                d
            }
            Err(e) => {
                log_attempt += 1;
                BridgeCounters::add(&counters.failures, 1);
                tracing::warn!(bridge = %config.name, error = %e, "reading the log failed");
                pause(config.reconnect_delay(log_attempt), &mut shutdown).await;
                continue;
            }
        };
        let mut batch = Vec::with_capacity(deliveries.len());
        let mut to_ack = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match Outgoing::from_stored(&delivery.message, config) {
                Ok(Some(outgoing)) => {
                    batch.push(outgoing);
                    to_ack.push(delivery);
                }
                Ok(None) => settle(&delivery, Settle::Ack).await,
                Err(e) => dead_letter(broker.as_ref(), config, &delivery, &e, &counters).await,
            }
        }
        if batch.is_empty() {
            continue;
        }
        if send_until_confirmed(&mut sink, &batch, &to_ack, config, &counters, &mut shutdown).await
        {
            BridgeCounters::add(&counters.moved, batch.len());
            futures::future::join_all(to_ack.iter().map(|d| settle(d, Settle::Ack))).await;
        } else {
            // Stopping with the batch unconfirmed: hand it back now rather
            // than after the ack wait.
            let soon = Duration::from_millis(100);
            futures::future::join_all(to_ack.iter().map(|d| settle(d, Settle::Nak(soon)))).await;
        }
    }
    Ok(())
}

/// The durable consumer: every delivery kept until confirmed (no
/// `max_deliver`), filtered on the sent types where the log can.
fn consumer_config(broker: &dyn Broker, config: &BridgeConfig) -> ConsumerConfig {
    let filters: Vec<String> = config
        .event_types
        .iter()
        .map(|t| format!("events.{t}.>"))
        .collect();
    let filter_subjects = if filters.len() <= 1 || broker.features().multiple_filter_subjects {
        filters
    } else {
        // One consumer cannot filter on several subjects here; the
        // bridge skips the other types itself.
        Vec::new()
    };
    ConsumerConfig {
        durable_name: config.consumer_name(),
        description: Some(format!(
            "outbound bridge {} ({})",
            config.name, config.broker
        )),
        deliver_policy: match config.start {
            StartAt::New => DeliverPolicy::New,
            StartAt::All => DeliverPolicy::All,
        },
        filter_subjects,
        ack_wait: ACK_WAIT,
        max_deliver: None,
        max_ack_pending: config.batch_size.saturating_mul(2).max(1),
        ..Default::default()
    }
}

/// Sends until the broker confirmed the batch (true) or the bridge stops
/// (false), backing off between attempts and keeping the deliveries
/// alive.
async fn send_until_confirmed(
    sink: &mut impl Sink,
    batch: &[Outgoing],
    deliveries: &[Delivery],
    config: &BridgeConfig,
    counters: &BridgeCounters,
    shutdown: &mut Shutdown,
) -> bool {
    let mut attempt = 0;
    loop {
        let result = tokio::select! {
            result = sink.send(batch) => result,
            () = shutdown.wait() => return false,
        };
        match result {
            Ok(()) => return true,
            Err(e) => {
                attempt += 1;
                BridgeCounters::add(&counters.failures, 1);
                let delay = config.reconnect_delay(attempt);
                tracing::warn!(bridge = %config.name, error = %e, retry_in = ?delay, "sending failed");
                futures::future::join_all(deliveries.iter().map(|d| settle(d, Settle::Progress)))
                    .await;
                if !pause(delay, shutdown).await {
                    return false;
                }
            }
        }
    }
}

async fn dead_letter(
    broker: &dyn Broker,
    config: &BridgeConfig,
    delivery: &Delivery,
    error: &backbone_schemas::DecodeError,
    counters: &BridgeCounters,
) {
    let reason = DeadLetterReason {
        consumer: config.consumer_name(),
        deliveries: delivery.delivery_count,
        error: format!("{}: {error}", error.kind().name()),
    };
    match publish_dead_letter(broker, &delivery.message, &reason).await {
        Ok(_) => {
            BridgeCounters::add(&counters.dead_lettered, 1);
            settle(delivery, Settle::Term(reason.error)).await;
        }
        Err(e) => {
            let delay = config.reconnect_delay(delivery.delivery_count);
            tracing::warn!(bridge = %config.name, error = %e, retry_in = ?delay, "storing a dead letter failed; retried");
            settle(delivery, Settle::Nak(delay)).await;
        }
    }
}

enum Settle {
    Ack,
    Nak(Duration),
    Progress,
    Term(String),
}

/// Settles a delivery; a failure only means the log hands it out again,
/// where the copy is recognised by its message id.
async fn settle(delivery: &Delivery, how: Settle) {
    let result = match how {
        Settle::Ack => delivery.ack().await,
        Settle::Nak(delay) => delivery.nak(Some(delay)).await,
        Settle::Progress => delivery.in_progress().await,
        Settle::Term(reason) => delivery.term(reason).await,
    };
    if let Err(e) = result {
        tracing::debug!(seq = delivery.message.seq, error = %e, "settling a delivery failed");
    }
}

/// Runs `setup` (the log's side of a bridge: its streams, its durable
/// consumer) until it succeeds, backing off between attempts; `None` when
/// the bridge stops first. A log that is down at start is waited for, as
/// one that goes down later is.
pub(crate) async fn until_ready<T, F, Fut>(
    config: &BridgeConfig,
    counters: &BridgeCounters,
    shutdown: &mut Shutdown,
    mut setup: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let mut attempt = 0;
    loop {
        let result = tokio::select! {
            result = setup() => result,
            () = shutdown.wait() => return None,
        };
        match result {
            Ok(ready) => return Some(ready),
            Err(e) => {
                attempt += 1;
                BridgeCounters::add(&counters.failures, 1);
                let delay = config.reconnect_delay(attempt);
                tracing::warn!(bridge = %config.name, error = %e, retry_in = ?delay, "setting up the log failed");
                if !pause(delay, shutdown).await {
                    return None;
                }
            }
        }
    }
}

/// Sleeps `delay` unless the bridge stops first; false when it stops.
pub(crate) async fn pause(delay: Duration, shutdown: &mut Shutdown) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = shutdown.wait() => false,
    }
}

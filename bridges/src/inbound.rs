//! Inbound: an external broker -> Backbone's log.
//!
//! Each message taken from the queue (or stream consumer group) becomes an
//! event ([`Received::event`]) and is published with its `ce-id` as the
//! log's deduplication id; it is acknowledged upstream only after the log
//! acknowledged it, so a crash in between takes it in again and the log
//! drops the copy. A message that is not a valid event, or that the log
//! refuses for itself (too large, no stream captures it), goes to the
//! dead-letter stream with its reason and original bytes, and is then
//! acknowledged upstream: nothing is lost and nothing blocks the queue.
//! Whatever else the log answers (down, full, failing to write, denied)
//! holds the batch, published again after a backoff; nothing is
//! acknowledged upstream that the log did not store.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use backbone_broker::{Broker, OutboundMessage, PublishError, PublishErrorKind};
use backbone_consumers::{Shutdown, dead_letter::ensure_dead_letter_stream};

use crate::{
    config::BridgeConfig,
    error::BridgeError,
    message::{DLQ_BODY_DROPPED, DLQ_SOURCE_PROPERTIES, Received, Rejection},
    outbound::{BridgeCounters, pause, until_ready},
};

/// How long one receive waits for messages; bounds how soon a shutdown
/// is noticed.
const RECEIVE_WAIT: Duration = Duration::from_millis(500);

/// An external broker events are taken from.
#[async_trait]
pub trait Source: Send {
    /// What acknowledges one message upstream.
    type Ack: Send + Sync;

    /// Waits up to `wait` for messages and returns at most `max`, in the
    /// order the broker delivered them; empty when none came. Reconnects
    /// on the next call after a failure.
    async fn receive(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Received<Self::Ack>>, BridgeError>;

    /// Acknowledges messages upstream: the broker will not deliver them
    /// again.
    async fn ack(&mut self, acks: Vec<Self::Ack>) -> Result<(), BridgeError>;
}

/// Runs an inbound bridge until `shutdown` triggers.
pub async fn run_inbound<S: Source>(
    broker: Arc<dyn Broker>,
    config: &BridgeConfig,
    mut source: S,
    counters: Arc<BridgeCounters>,
    mut shutdown: Shutdown,
) -> Result<(), BridgeError> {
    let setup = || async {
        ensure_dead_letter_stream(broker.as_ref())
            .await
            .map_err(|e| e.to_string())
    };
    if until_ready(config, &counters, &mut shutdown, setup)
        .await
        .is_none()
    {
        return Ok(());
    }
    let mut attempt = 0;
    while !shutdown.is_triggered() {
        let received = tokio::select! {
            received = source.receive(config.batch_size, RECEIVE_WAIT) => received,
            () = shutdown.wait() => break,
        };
        let received = match received {
            Ok(r) => {
                attempt = 0;
                r
            }
            Err(e) => {
                attempt += 1;
                BridgeCounters::add(&counters.failures, 1);
                let delay = config.reconnect_delay(attempt);
                tracing::warn!(bridge = %config.name, error = %e, retry_in = ?delay, "receiving failed");
                pause(delay, &mut shutdown).await;
                continue;
            }
        };
        if received.is_empty() {
            continue;
        }
        if !store_until_settled(broker.as_ref(), config, &received, &counters, &mut shutdown).await
        {
            // Stopping before the log took it all: not acknowledged, so
            // the broker delivers it again.
            break;
        }
        let acks = received.into_iter().map(|r| r.ack).collect();
        if let Err(e) = source.ack(acks).await {
            // The broker delivers them again; the log drops the copies.
            BridgeCounters::add(&counters.failures, 1);
            tracing::warn!(bridge = %config.name, error = %e, "acknowledging upstream failed");
        }
    }
    Ok(())
}

/// What one received message becomes in the log.
enum Entry {
    /// Publish this; if the log refuses it for good, dead-letter the
    /// original with the reason.
    Event(OutboundMessage),
    /// Publish this dead letter.
    Letter(OutboundMessage),
    /// Stored (or dead-lettered): done.
    Settled,
}

/// Publishes the events of every message of `received` (or its dead
/// letter) until all are settled (true) or the bridge stops (false).
async fn store_until_settled<A>(
    broker: &dyn Broker,
    config: &BridgeConfig,
    received: &[Received<A>],
    counters: &BridgeCounters,
    shutdown: &mut Shutdown,
) -> bool {
    // Each entry with the index of the message it came from: a mapping
    // can make several events of one message, or none.
    let mut entries: Vec<(usize, Entry)> = Vec::with_capacity(received.len());
    for (i, r) in received.iter().enumerate() {
        match r.events(config) {
            Ok(events) => entries.extend(
                events
                    .iter()
                    .map(|e| (i, Entry::Event(OutboundMessage::from(e)))),
            ),
            Err(rejection) => entries.push((i, Entry::Letter(r.dead_letter(config, &rejection)))),
        }
    }
    let mut attempt = 0;
    loop {
        let pending: Vec<usize> = (0..entries.len())
            .filter(|&i| !matches!(entries[i].1, Entry::Settled))
            .collect();
        if pending.is_empty() {
            return true;
        }
        let messages = pending
            .iter()
            .map(|&i| match &entries[i].1 {
                Entry::Event(m) | Entry::Letter(m) => m.clone(),
                Entry::Settled => unreachable!("only pending entries"),
            })
            .collect();
        let results = broker.publish_batch(messages).await;
        let mut transient = None;
        for (&i, result) in pending.iter().zip(results) {
            let (origin, entry) = &entries[i];
            let origin = *origin;
            let settled = match (result, entry) {
                (Ok(_), Entry::Event(_)) => {
                    BridgeCounters::add(&counters.moved, 1);
                    Entry::Settled
                }
                (Ok(_), _) => {
                    BridgeCounters::add(&counters.dead_lettered, 1);
                    Entry::Settled
                }
                (Err(e), Entry::Event(_)) if e.kind().refuses_the_message() => {
                    Entry::Letter(received[origin].dead_letter(config, &refused(&e)))
                }
                (Err(e), Entry::Letter(letter))
                    if matches!(e.kind(), PublishErrorKind::PayloadTooLarge { .. })
                        && letter.headers.get(DLQ_BODY_DROPPED).is_none() =>
                {
                    // The letter itself is over the log's limit: keep the
                    // reason, drop the body and the recorded properties.
                    Entry::Letter(without_body(letter, &e))
                }
                (Err(e), entry) => {
                    transient.get_or_insert(e);
                    match entry {
                        Entry::Event(m) => Entry::Event(m.clone()),
                        Entry::Letter(m) => Entry::Letter(m.clone()),
                        Entry::Settled => Entry::Settled,
                    }
                }
            };
            entries[i].1 = settled;
        }
        if let Some(e) = transient {
            attempt += 1;
            BridgeCounters::add(&counters.failures, 1);
            let delay = config.reconnect_delay(attempt);
            tracing::warn!(bridge = %config.name, error = %e, retry_in = ?delay, "the log did not take the batch");
            if !pause(delay, shutdown).await {
                return false;
            }
        }
    }
}

/// `letter` without its body, which the log refused, naming why.
fn without_body(letter: &OutboundMessage, e: &PublishError) -> OutboundMessage {
    let mut letter = letter.clone();
    letter.headers.remove(DLQ_SOURCE_PROPERTIES);
    letter.headers.append(
        DLQ_BODY_DROPPED,
        format!("{} bytes: {e}", letter.payload.len()),
    );
    letter.payload = Default::default();
    letter
}

/// The rejection of an event the log refuses for good.
fn refused(e: &PublishError) -> Rejection {
    Rejection {
        kind: e.kind().name().to_owned(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use backbone_broker::{StreamConfig, memory::MemoryBroker};
    use backbone_consumers::shutdown_channel;
    use backbone_schemas::{Headers, cloudevents, sample};
    use bytes::Bytes;
    use serde_json::Map;

    use super::*;
    use crate::config::{BrokerKind, Direction};

    /// Hands out its messages once, records what is acknowledged.
    struct Fake {
        waiting: Vec<Received<usize>>,
        /// (whether the messages were taken, what was acknowledged)
        seen: Arc<Mutex<(bool, Vec<usize>)>>,
    }

    #[async_trait]
    impl Source for Fake {
        type Ack = usize;

        async fn receive(
            &mut self,
            _max: usize,
            wait: Duration,
        ) -> Result<Vec<Received<usize>>, BridgeError> {
            if self.waiting.is_empty() {
                tokio::time::sleep(wait).await;
            }
            self.seen.lock().unwrap().0 = true;
            Ok(std::mem::take(&mut self.waiting))
        }

        async fn ack(&mut self, acks: Vec<usize>) -> Result<(), BridgeError> {
            self.seen.lock().unwrap().1.extend(acks);
            Ok(())
        }
    }

    fn message(n: usize, content_type: Option<&str>, body: Vec<u8>) -> Received<usize> {
        Received {
            ack: n,
            source: "fake:q".into(),
            address: "q".into(),
            message_id: None,
            content_type: content_type.map(str::to_owned),
            attributes: Headers::new(),
            properties: Map::new(),
            params: Default::default(),
            body: Bytes::from(body),
        }
    }

    /// Runs a bridge over `waiting` for 400 ms; what it acknowledged (the
    /// messages must have been taken).
    async fn run(broker: Arc<dyn Broker>, waiting: Vec<Received<usize>>) -> Vec<usize> {
        let seen = Arc::new(Mutex::new((false, Vec::new())));
        let source = Fake {
            waiting,
            seen: seen.clone(),
        };
        let config = BridgeConfig {
            source: Some("q".into()),
            reconnect_base: Duration::from_millis(10),
            reconnect_max: Duration::from_millis(20),
            ..BridgeConfig::new("in", Direction::Inbound, BrokerKind::Rabbitmq, "amqp://h")
        };
        let (trigger, shutdown) = shutdown_channel();
        let counters = Arc::new(BridgeCounters::default());
        let task =
            tokio::spawn(
                async move { run_inbound(broker, &config, source, counters, shutdown).await },
            );
        tokio::time::sleep(Duration::from_millis(400)).await;
        trigger.trigger();
        task.await.unwrap().unwrap();
        let (taken, acked) = seen.lock().unwrap().clone();
        assert!(taken, "the bridge took the messages");
        acked
    }

    #[tokio::test]
    async fn a_letter_over_the_limit_keeps_its_reason_and_is_acknowledged() {
        let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::with_max_payload(1_000));
        broker
            .ensure_stream(&StreamConfig::event_log())
            .await
            .unwrap();
        let acked = run(broker.clone(), vec![message(7, None, vec![b'x'; 5_000])]).await;
        assert_eq!(acked, [7]);
        let letter = broker
            .last_on_subject("DEADLETTER", "deadletter.bridge-in.inbound")
            .await
            .unwrap()
            .unwrap();
        assert!(letter.payload.is_empty());
        assert!(letter.headers.get(DLQ_BODY_DROPPED).is_some());
    }

    #[tokio::test]
    async fn nothing_is_acknowledged_that_the_log_did_not_store() {
        let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
        broker
            .ensure_stream(&StreamConfig::event_log())
            .await
            .unwrap();
        broker
            .ensure_stream(&StreamConfig::dead_letters())
            .await
            .unwrap();
        broker.close().await.unwrap();
        let (_, event) = sample::sample_events().remove(0);
        let json = cloudevents::to_structured(&event.headers(), &event.payload).to_string();
        let waiting = vec![
            message(1, Some(cloudevents::STRUCTURED), json.into_bytes()),
            message(2, None, b"junk".to_vec()),
        ];
        assert!(run(broker, waiting).await.is_empty());
    }
}

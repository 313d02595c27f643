//! What the bridges' tests share: an embedded log, events of every type,
//! a bridge run in this process, and polling.

#![allow(dead_code, unreachable_pub)]

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use backbone_bridges::{BridgeConfig, BridgeCounters};
use backbone_broker::{
    Broker, OutboundMessage, ReadRequest, StoredMessage, StreamConfig,
    embedded::{EmbeddedBroker, EmbeddedOptions},
    stream::{DEAD_LETTER_STREAM, EVENT_STREAM},
};
use backbone_consumers::{ShutdownTrigger, shutdown_channel};
use backbone_schemas::{Envelope, sample, wire};
use futures::StreamExt as _;
use lapin::{
    BasicProperties, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};
use tokio::task::JoinHandle;

pub mod amqp1;
pub mod crash;

/// The embedded log at `path`, with the event stream provisioned.
pub async fn open_log(path: &Path) -> Arc<dyn Broker> {
    let broker: Arc<dyn Broker> = Arc::new(
        EmbeddedBroker::open(EmbeddedOptions {
            path: path.to_owned(),
            ..Default::default()
        })
        .unwrap(),
    );
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .unwrap();
    broker
}

/// `count` events cycling through every type, each with its own id.
pub fn events(count: usize) -> Vec<Envelope> {
    let samples = sample::sample_events();
    (0..count)
        .map(|n| {
            let mut envelope = samples[n % samples.len()].1.clone();
            envelope.id = uuid::Uuid::now_v7();
            envelope
        })
        .collect()
}

/// Publishes `events` to the log.
pub async fn publish(broker: &dyn Broker, events: &[Envelope]) {
    let messages: Vec<OutboundMessage> = events.iter().map(OutboundMessage::from).collect();
    for result in broker.publish_batch(messages).await {
        result.unwrap();
    }
}

/// Every message of `stream` (none when it does not exist).
pub async fn stored(broker: &dyn Broker, stream: &str) -> Vec<StoredMessage> {
    let Ok(read) = broker.read(stream, ReadRequest::default()).await else {
        return Vec::new();
    };
    read.map(|m| m.unwrap()).collect().await
}

/// The events of the event stream.
pub async fn stored_events(broker: &dyn Broker) -> Vec<StoredMessage> {
    stored(broker, EVENT_STREAM).await
}

/// The dead letters.
pub async fn stored_letters(broker: &dyn Broker) -> Vec<StoredMessage> {
    stored(broker, DEAD_LETTER_STREAM).await
}

/// A bridge running in this process.
pub struct Running {
    pub counters: Arc<BridgeCounters>,
    trigger: ShutdownTrigger,
    task: JoinHandle<Result<(), backbone_bridges::BridgeError>>,
}

impl Running {
    /// Starts `config` over `broker`.
    pub fn start(broker: Arc<dyn Broker>, config: BridgeConfig) -> Self {
        let (trigger, shutdown) = shutdown_channel();
        let counters = Arc::new(BridgeCounters::default());
        let task = tokio::spawn({
            let counters = counters.clone();
            async move { backbone_bridges::run(broker, EVENT_STREAM, &config, counters, shutdown).await }
        });
        Self {
            counters,
            trigger,
            task,
        }
    }

    /// Stops the bridge; it must stop cleanly within 15 seconds.
    pub async fn stop(self) {
        self.trigger.trigger();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("the bridge stops")
            .unwrap()
            .unwrap();
    }
}

/// Polls `check` until it holds or `timeout` passes; whether it held.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `config` reconnecting quickly, for restart tests.
pub fn fast(config: BridgeConfig) -> BridgeConfig {
    BridgeConfig {
        reconnect_base: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
        ..config
    }
}

/// Log B holds the events of log A, in order, with the same subjects,
/// attributes and payload bytes.
pub async fn assert_crossed(a: &dyn Broker, b: &dyn Broker) {
    let in_a = stored_events(a).await;
    let in_b = stored_events(b).await;
    assert_eq!(in_b.len(), in_a.len());
    for (b, a) in in_b.iter().zip(&in_a) {
        assert_eq!(b.subject, a.subject);
        assert_eq!(b.payload, a.payload, "payload of {}", a.subject);
        assert_eq!(
            Envelope::decode(&b.subject, &b.headers, &b.payload).unwrap(),
            Envelope::decode(&a.subject, &a.headers, &a.payload).unwrap()
        );
    }
}

/// The log holds each of `events` exactly once.
pub async fn assert_each_once(log: &dyn Broker, events: &[Envelope]) {
    let stored = stored_events(log).await;
    let ids: std::collections::BTreeSet<String> = stored
        .iter()
        .map(|m| {
            m.headers
                .get(backbone_schemas::wire::CE_ID)
                .unwrap()
                .to_owned()
        })
        .collect();
    let expected: std::collections::BTreeSet<String> =
        events.iter().map(|e| e.id.to_string()).collect();
    let missing = expected.difference(&ids).count();
    let unexpected = ids.difference(&expected).count();
    assert_eq!(
        (missing, unexpected),
        (0, 0),
        "events missing, events never sent"
    );
    assert_eq!(stored.len(), events.len(), "no event stored twice");
}

/// Polls until the log holds at least `count` events (60 s at most).
pub async fn wait_for_events(log: &dyn Broker, count: usize) -> bool {
    eventually(Duration::from_secs(60), || async {
        stored_events(log).await.len() >= count
    })
    .await
}

/// A durable queue bound to the `events` exchange for every routing key.
pub async fn bound_queue(channel: &lapin::Channel, queue: &str) {
    channel
        .exchange_declare(
            "events".into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.into(),
            "events".into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
}

/// The binary-mode AMQP form of `event`, as the outbound bridge writes it.
pub fn amqp_properties(event: &Envelope) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in [
        ("specversion", "1.0".to_owned()),
        ("id", event.id.to_string()),
        ("source", event.source.clone()),
        ("type", event.event_type.clone()),
    ] {
        headers.insert(
            format!("cloudEvents:{name}").into(),
            AMQPValue::LongString(value.into_bytes().into()),
        );
    }
    BasicProperties::default()
        .with_message_id(event.id.to_string().into())
        .with_content_type(wire::CONTENT_TYPE_PROTOBUF.into())
        .with_delivery_mode(2)
        .with_headers(headers)
}

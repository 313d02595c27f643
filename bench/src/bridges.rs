//! The bridges, each direction through RabbitMQ, Redis and AMQP 1.0
//! (RabbitMQ's plugin, [`amqp1`]) (real servers,
//! started here as the tests start them), against the raw client doing the
//! broker's side of the same work in the same run:
//!
//! - **outbound**: the bridge reads the embedded log and sends until the
//!   broker confirmed every event; raw: the same messages published by the
//!   client with the same confirms (publisher confirms; pipelined `XADD`),
//!   in batches of the bridge's size.
//! - **inbound**: the bridge takes a queue (a stream's consumer group)
//!   into the embedded log; raw: the client takes and acknowledges the
//!   same messages, storing nothing.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use backbone_bridges::{BridgeConfig, BridgeCounters, BrokerKind, Direction, StartAt};
use backbone_broker::{Broker, OutboundMessage, stream::EVENT_STREAM};
use backbone_consumers::shutdown_channel;
use backbone_schemas::{Envelope, cloudevents, sample, wire};
use backbone_testkit::{RabbitMq, Redis};
use futures::StreamExt as _;
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
        QueuePurgeOptions,
    },
    types::{AMQPValue, FieldTable},
};
use redis::AsyncCommands as _;

mod amqp1;

use super::{
    embedded,
    error::{BenchError, BenchErrorKind},
    pipeline::backbone_error,
    plan::Plan,
    report::{BenchReport, Scenario, Throughput},
};

/// Messages per batch, bridge and raw client alike.
const BATCH: usize = 256;
/// The messaging seed's load: messages/s sustained per direction.
const TARGET: f64 = 5_000.0;
/// How long one direction may take.
const DEADLINE: Duration = Duration::from_secs(300);

fn broker_error(e: impl std::fmt::Display) -> BenchError {
    BenchError::with_detail(BenchErrorKind::Backbone, e.to_string())
}

/// Runs every bridge scenario.
pub(crate) async fn run(plan: &Plan, report: &mut BenchReport) -> Result<(), BenchError> {
    let events = events((plan.events / 4).max(BATCH as u64) as usize);
    let rabbit = tokio::task::spawn_blocking(RabbitMq::new)
        .await
        .map_err(backbone_error)?;
    let rabbit_out = rabbitmq_outbound(&rabbit, &events).await?;
    record(plan, report, Scenario::BridgeOutRabbitmq, rabbit_out);
    let rabbit_in = rabbitmq_inbound(&rabbit, &events).await?;
    record(plan, report, Scenario::BridgeInRabbitmq, rabbit_in);
    amqp1::run(plan, report, &rabbit, &events).await?;
    drop(rabbit);
    let redis = tokio::task::spawn_blocking(Redis::new)
        .await
        .map_err(backbone_error)?;
    let redis_out = redis_outbound(&redis, &events).await?;
    record(plan, report, Scenario::BridgeOutRedis, redis_out);
    let redis_in = redis_inbound(&redis, &events).await?;
    record(plan, report, Scenario::BridgeInRedis, redis_in);
    Ok(())
}

fn record(
    plan: &Plan,
    report: &mut BenchReport,
    scenario: Scenario,
    (raw, bridge): (Throughput, Throughput),
) {
    embedded::compared(plan, report, scenario, raw, bridge);
    embedded::measured(plan, report, scenario.label(), bridge, TARGET);
}

/// `count` events cycling through every type, each with its own id.
fn events(count: usize) -> Vec<Envelope> {
    let samples = sample::sample_events();
    (0..count)
        .map(|n| {
            let mut envelope = samples[n % samples.len()].1.clone();
            envelope.id = uuid::Uuid::now_v7();
            envelope
        })
        .collect()
}

/// A fresh embedded log holding `events`.
async fn log_with(
    dir: &std::path::Path,
    events: &[Envelope],
) -> Result<Arc<dyn Broker>, BenchError> {
    let log = embedded::open(dir).await?;
    let messages: Vec<OutboundMessage> = events.iter().map(OutboundMessage::from).collect();
    for chunk in messages.chunks(4 * BATCH) {
        for result in log.publish_batch(chunk.to_vec()).await {
            result.map_err(backbone_error)?;
        }
    }
    Ok(log)
}

/// Runs `config` over a fresh embedded log holding `events` until it
/// moved `count` messages; the time.
async fn bridge_into(
    events: &[Envelope],
    config: BridgeConfig,
    count: usize,
) -> Result<Throughput, BenchError> {
    let dir = tempfile::tempdir().map_err(backbone_error)?;
    let log = log_with(dir.path(), events).await?;
    let bridged = bridge_until(log.clone(), config, count).await?;
    log.close().await.map_err(backbone_error)?;
    Ok(bridged)
}

/// Runs `config` over `log` until it moved `count` messages; the time.
async fn bridge_until(
    log: Arc<dyn Broker>,
    config: BridgeConfig,
    count: usize,
) -> Result<Throughput, BenchError> {
    let (trigger, shutdown) = shutdown_channel();
    let counters = Arc::new(BridgeCounters::default());
    let started = Instant::now();
    let task = tokio::spawn({
        let counters = counters.clone();
        async move { backbone_bridges::run(log, EVENT_STREAM, &config, counters, shutdown).await }
    });
    while counters.snapshot().0 < count as u64 {
        if started.elapsed() > DEADLINE || task.is_finished() {
            trigger.trigger();
            return Err(BenchError::new(BenchErrorKind::Incomplete {
                expected: count as u64,
                seen: counters.snapshot().0,
            }));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    trigger.trigger();
    task.await.map_err(backbone_error)?.map_err(broker_error)?;
    Ok(Throughput::new(count as u64, elapsed))
}

fn bridge(name: &str, direction: Direction, broker: BrokerKind, url: String) -> BridgeConfig {
    BridgeConfig {
        start: StartAt::All,
        batch_size: BATCH,
        ..BridgeConfig::new(name, direction, broker, url)
    }
}

async fn rabbit_channel(rabbit: &RabbitMq) -> Result<(Connection, Channel), BenchError> {
    let connection = Connection::connect(&rabbit.url(), ConnectionProperties::default())
        .await
        .map_err(broker_error)?;
    let channel = connection.create_channel().await.map_err(broker_error)?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(broker_error)?;
    Ok((connection, channel))
}

/// The binary-mode AMQP message of `event`, as the outbound bridge sends
/// it.
fn amqp_properties(event: &Envelope) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in event.headers().iter() {
        if let Some(attribute) = name.strip_prefix("ce-") {
            headers.insert(
                format!("cloudEvents:{attribute}").into(),
                AMQPValue::LongString(value.as_bytes().to_vec().into()),
            );
        }
    }
    BasicProperties::default()
        .with_message_id(event.id.to_string().into())
        .with_content_type(wire::CONTENT_TYPE_PROTOBUF.into())
        .with_delivery_mode(2)
        .with_headers(headers)
}

/// Publishes `events` to `exchange`/`routing` with confirms, a batch at a
/// time.
async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing: impl Fn(&Envelope) -> String,
    events: &[Envelope],
) -> Result<(), BenchError> {
    for chunk in events.chunks(BATCH) {
        let mut confirms = Vec::with_capacity(chunk.len());
        for event in chunk {
            let confirm = channel
                .basic_publish(
                    exchange.into(),
                    routing(event).as_str().into(),
                    BasicPublishOptions::default(),
                    &event.payload,
                    amqp_properties(event),
                )
                .await
                .map_err(broker_error)?;
            confirms.push(confirm);
        }
        for confirm in confirms {
            confirm.await.map_err(broker_error)?;
        }
    }
    Ok(())
}

async fn declare(channel: &Channel, queue: &str, bind: bool) -> Result<(), BenchError> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.into(), durable, FieldTable::default())
        .await
        .map_err(broker_error)?;
    if bind {
        let exchange = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                "events".into(),
                ExchangeKind::Topic,
                exchange,
                FieldTable::default(),
            )
            .await
            .map_err(broker_error)?;
        channel
            .queue_bind(
                queue.into(),
                "events".into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker_error)?;
    }
    Ok(())
}

async fn purge(channel: &Channel, queue: &str) -> Result<(), BenchError> {
    channel
        .queue_purge(queue.into(), QueuePurgeOptions::default())
        .await
        .map(|_| ())
        .map_err(broker_error)
}

async fn rabbitmq_outbound(
    rabbit: &RabbitMq,
    events: &[Envelope],
) -> Result<(Throughput, Throughput), BenchError> {
    let (_connection, channel) = rabbit_channel(rabbit).await?;
    declare(&channel, "bench-downstream", true).await?;
    // The first pass warms the node (queue files, the Erlang code paths)
    // for the raw client and the bridge alike; the second is timed.
    publish_confirmed(&channel, "events", |e| e.event_type.clone(), events).await?;
    purge(&channel, "bench-downstream").await?;
    let started = Instant::now();
    publish_confirmed(&channel, "events", |e| e.event_type.clone(), events).await?;
    let raw = Throughput::new(events.len() as u64, started.elapsed());
    purge(&channel, "bench-downstream").await?;
    let config = bridge(
        "bench-out",
        Direction::Outbound,
        BrokerKind::Rabbitmq,
        rabbit.url(),
    );
    let bridged = bridge_into(events, config, events.len()).await?;
    Ok((raw, bridged))
}

async fn rabbitmq_inbound(
    rabbit: &RabbitMq,
    events: &[Envelope],
) -> Result<(Throughput, Throughput), BenchError> {
    let (_connection, channel) = rabbit_channel(rabbit).await?;
    declare(&channel, "bench-raw-in", false).await?;
    declare(&channel, "bench-in", false).await?;
    publish_confirmed(&channel, "", |_| "bench-raw-in".into(), events).await?;
    publish_confirmed(&channel, "", |_| "bench-in".into(), events).await?;
    let prefetch = u16::try_from(2 * BATCH).unwrap_or(u16::MAX);
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(broker_error)?;
    let started = Instant::now();
    let mut consumer = channel
        .basic_consume(
            "bench-raw-in".into(),
            "bench-raw".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(broker_error)?;
    let mut taken = 0;
    while taken < events.len() {
        let delivery = tokio::time::timeout(DEADLINE, consumer.next())
            .await
            .map_err(broker_error)?
            .ok_or_else(|| broker_error("the consumer ended"))?
            .map_err(broker_error)?;
        taken += 1;
        if taken % BATCH == 0 || taken == events.len() {
            delivery
                .ack(BasicAckOptions { multiple: true })
                .await
                .map_err(broker_error)?;
        }
    }
    let raw = Throughput::new(events.len() as u64, started.elapsed());
    let config = BridgeConfig {
        source: Some("bench-in".into()),
        ..bridge(
            "bench-in",
            Direction::Inbound,
            BrokerKind::Rabbitmq,
            rabbit.url(),
        )
    };
    let bridged = bridge_into(&[], config, events.len()).await?;
    Ok((raw, bridged))
}

async fn redis_connection(redis: &Redis) -> Result<redis::aio::MultiplexedConnection, BenchError> {
    redis::Client::open(redis.url())
        .map_err(broker_error)?
        .get_multiplexed_async_connection()
        .await
        .map_err(broker_error)
}

/// `events` in the documented Redis form, a pipeline per batch.
async fn xadd_all(
    connection: &mut redis::aio::MultiplexedConnection,
    key: &str,
    events: &[Envelope],
) -> Result<(), BenchError> {
    for chunk in events.chunks(BATCH) {
        let mut pipe = redis::pipe();
        for event in chunk {
            let json = cloudevents::to_structured(&event.headers(), &event.payload).to_string();
            pipe.xadd(key, "*", &[("cloudevent", json)]);
        }
        let _: Vec<String> = pipe.query_async(connection).await.map_err(broker_error)?;
    }
    Ok(())
}

async fn redis_outbound(
    redis: &Redis,
    events: &[Envelope],
) -> Result<(Throughput, Throughput), BenchError> {
    let mut connection = redis_connection(redis).await?;
    let started = Instant::now();
    xadd_all(&mut connection, "bench-raw-out", events).await?;
    let raw = Throughput::new(events.len() as u64, started.elapsed());
    let config = BridgeConfig {
        address: Some("bench-out".into()),
        ..bridge(
            "bench-out",
            Direction::Outbound,
            BrokerKind::Redis,
            redis.url(),
        )
    };
    let bridged = bridge_into(events, config, events.len()).await?;
    Ok((raw, bridged))
}

async fn redis_inbound(
    redis: &Redis,
    events: &[Envelope],
) -> Result<(Throughput, Throughput), BenchError> {
    let mut connection = redis_connection(redis).await?;
    xadd_all(&mut connection, "bench-raw-in", events).await?;
    xadd_all(&mut connection, "bench-in", events).await?;
    let _: () = connection
        .xgroup_create("bench-raw-in", "raw", "0")
        .await
        .map_err(broker_error)?;
    let started = Instant::now();
    let mut taken = 0;
    let options = redis::streams::StreamReadOptions::default()
        .group("raw", "raw")
        .count(BATCH)
        .block(1_000);
    while taken < events.len() {
        let reply: Option<redis::streams::StreamReadReply> = connection
            .xread_options(&["bench-raw-in"], &[">"], &options)
            .await
            .map_err(broker_error)?;
        let ids: Vec<String> = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(|entry| entry.id)
            .collect();
        taken += ids.len();
        if !ids.is_empty() {
            let _: u64 = connection
                .xack("bench-raw-in", "raw", &ids)
                .await
                .map_err(broker_error)?;
        }
        if started.elapsed() > DEADLINE {
            return Err(BenchError::new(BenchErrorKind::Incomplete {
                expected: events.len() as u64,
                seen: taken as u64,
            }));
        }
    }
    let raw = Throughput::new(events.len() as u64, started.elapsed());
    let config = BridgeConfig {
        source: Some("bench-in".into()),
        ..bridge(
            "bench-in",
            Direction::Inbound,
            BrokerKind::Redis,
            redis.url(),
        )
    };
    let bridged = bridge_into(&[], config, events.len()).await?;
    Ok((raw, bridged))
}

//! The RabbitMQ bridges against a real `rabbitmq-server`: both directions,
//! every event type byte for byte, bad input dead-lettered while later
//! messages flow, and a broker restart mid-stream.

mod support;

use std::{collections::BTreeSet, time::Duration};

use backbone_bridges::{BridgeConfig, BrokerKind, Direction, StartAt};
use backbone_consumers::dead_letter::{DLQ_CONSUMER, DLQ_ERROR, DLQ_STREAM};
use backbone_schemas::wire;
use backbone_testkit::RabbitMq;
use futures::StreamExt as _;
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
        QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
};
use support::*;

async fn channel(rabbit: &RabbitMq) -> (Connection, Channel) {
    let connection = Connection::connect(&rabbit.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    (connection, channel)
}

/// Takes messages from `queue` until `count` distinct message ids arrived
/// (or 60 s pass); every message received, in order.
async fn take(channel: &Channel, queue: &str, count: usize) -> Vec<lapin::message::Delivery> {
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            format!("test-{queue}").as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut ids = BTreeSet::new();
    while ids.len() < count {
        let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(Duration::from_secs(60), consumer.next()).await
        else {
            break;
        };
        delivery.ack(BasicAckOptions::default()).await.unwrap();
        ids.insert(
            delivery
                .properties
                .message_id()
                .clone()
                .unwrap()
                .to_string(),
        );
        out.push(delivery);
    }
    out
}

fn header_text(delivery: &lapin::message::Delivery, name: &str) -> Option<String> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8(s.as_bytes().to_vec()).unwrap()),
        _ => None,
    }
}

fn outbound(rabbit: &RabbitMq) -> BridgeConfig {
    BridgeConfig {
        start: StartAt::All,
        batch_size: 64,
        ..BridgeConfig::new(
            "out",
            Direction::Outbound,
            BrokerKind::Rabbitmq,
            rabbit.url(),
        )
    }
}

fn inbound(rabbit: &RabbitMq, queue: &str) -> BridgeConfig {
    BridgeConfig {
        source: Some(queue.into()),
        batch_size: 64,
        ..BridgeConfig::new("in", Direction::Inbound, BrokerKind::Rabbitmq, rabbit.url())
    }
}

/// Log A -> outbound bridge -> RabbitMQ -> inbound bridge -> log B: every
/// event type arrives in B with the same attributes and payload bytes,
/// and on RabbitMQ carries the CloudEvents AMQP binding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_type_crosses_both_ways_byte_for_byte() {
    let rabbit = RabbitMq::new();
    let (_connection, channel) = channel(&rabbit).await;
    bound_queue(&channel, "inspect").await;
    bound_queue(&channel, "to-backbone").await;
    let dir = tempfile::tempdir().unwrap();
    let log_a = open_log(&dir.path().join("a")).await;
    let log_b = open_log(&dir.path().join("b")).await;
    let events = events(18);
    publish(log_a.as_ref(), &events).await;

    let out = Running::start(log_a.clone(), outbound(&rabbit));
    let into_b = Running::start(log_b.clone(), inbound(&rabbit, "to-backbone"));
    let seen = take(&channel, "inspect", events.len()).await;
    assert_eq!(seen.len(), events.len(), "{}", rabbit.log());
    for (delivery, event) in seen.iter().zip(&events) {
        let properties = &delivery.properties;
        assert_eq!(
            properties.message_id().as_ref().unwrap().as_str(),
            event.id.to_string()
        );
        assert_eq!(delivery.routing_key.as_str(), event.event_type);
        assert_eq!(
            properties.content_type().as_ref().unwrap().as_str(),
            wire::CONTENT_TYPE_PROTOBUF
        );
        assert_eq!(*properties.delivery_mode(), Some(2));
        assert_eq!(&delivery.data[..], &event.payload[..]);
        assert_eq!(
            header_text(delivery, "cloudEvents:type").as_deref(),
            Some(event.event_type.as_str())
        );
        assert_eq!(
            header_text(delivery, "cloudEvents:source").as_deref(),
            Some(event.source.as_str())
        );
        assert_eq!(
            header_text(delivery, "cloudEvents:traceparent"),
            event.traceparent
        );
    }
    let arrived = wait_for_events(log_b.as_ref(), events.len()).await;
    assert!(arrived, "log B has {:?}", into_b.counters.snapshot());
    out.stop().await;
    into_b.stop().await;
    assert_crossed(log_a.as_ref(), log_b.as_ref()).await;
}

async fn publish_raw(channel: &Channel, queue: &str, properties: BasicProperties, body: &[u8]) {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Malformed messages are dead-lettered with their reason and bytes and
/// acknowledged; the valid messages after them are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_dead_lettered_while_later_ones_flow() {
    let rabbit = RabbitMq::new();
    let (_connection, channel) = channel(&rabbit).await;
    bound_queue(&channel, "legacy").await;
    let valid = events(3);
    publish_raw(
        &channel,
        "legacy",
        BasicProperties::default(),
        b"\xffnot an event",
    )
    .await;
    let mut unknown = amqp_properties(&valid[0]);
    let mut headers = unknown.headers().clone().unwrap();
    headers.insert(
        "cloudEvents:type".into(),
        AMQPValue::LongString(b"user.nope".to_vec().into()),
    );
    unknown = unknown.with_headers(headers);
    publish_raw(&channel, "legacy", unknown, &valid[0].payload).await;
    publish_raw(
        &channel,
        "legacy",
        amqp_properties(&valid[1]),
        b"\x0a\xff\xff truncated protobuf",
    )
    .await;
    for event in &valid {
        publish_raw(&channel, "legacy", amqp_properties(event), &event.payload).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path()).await;
    let bridge = Running::start(log.clone(), inbound(&rabbit, "legacy"));
    let done = eventually(Duration::from_secs(30), || async {
        stored_events(log.as_ref()).await.len() == valid.len()
            && stored_letters(log.as_ref()).await.len() == 3
    })
    .await;
    assert!(done, "{:?}", bridge.counters.snapshot());
    bridge.stop().await;
    let letters = stored_letters(log.as_ref()).await;
    let kinds: Vec<String> = letters
        .iter()
        .map(|l| {
            let error = l.headers.get(DLQ_ERROR).unwrap();
            error.split(':').next().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        ["NotACloudEvent", "UnknownType", "PayloadNotDecodable"]
    );
    assert_eq!(&letters[0].payload[..], b"\xffnot an event");
    assert_eq!(letters[0].headers.get(DLQ_STREAM), Some("rabbitmq:legacy"));
    assert_eq!(letters[0].headers.get(DLQ_CONSUMER), Some("bridge-in"));
    let ids: Vec<String> = stored_events(log.as_ref())
        .await
        .iter()
        .map(|m| m.headers.get(wire::CE_ID).unwrap().to_owned())
        .collect();
    let expected: Vec<String> = valid.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, expected);
    let queue = channel
        .queue_declare(
            "legacy".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(queue.message_count(), 0, "everything was acknowledged");
}

/// RabbitMQ restarts mid-stream in both directions: the bridges reconnect
/// with backoff and every event arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_nothing() {
    let mut rabbit = RabbitMq::new();
    {
        let (_connection, channel) = channel(&rabbit).await;
        bound_queue(&channel, "inspect").await;
        bound_queue(&channel, "to-backbone").await;
    }
    let dir = tempfile::tempdir().unwrap();
    let log_a = open_log(&dir.path().join("a")).await;
    let log_b = open_log(&dir.path().join("b")).await;
    let events = events(3_000);
    publish(log_a.as_ref(), &events[..1_500]).await;
    let out = Running::start(log_a.clone(), fast(outbound(&rabbit)));
    let into_b = Running::start(log_b.clone(), fast(inbound(&rabbit, "to-backbone")));
    eventually(Duration::from_secs(30), || async {
        !stored_events(log_b.as_ref()).await.is_empty()
    })
    .await;
    rabbit.restart();
    publish(log_a.as_ref(), &events[1_500..]).await;
    let (_connection, channel) = channel(&rabbit).await;
    let seen = take(&channel, "inspect", events.len()).await;
    let ids: BTreeSet<String> = seen
        .iter()
        .map(|d| d.properties.message_id().clone().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), events.len(), "{:?}", out.counters.snapshot());
    let arrived = wait_for_events(log_b.as_ref(), events.len()).await;
    assert!(arrived, "log B: {:?}", into_b.counters.snapshot());
    assert!(out.counters.snapshot().2 > 0, "the restart was noticed");
    out.stop().await;
    into_b.stop().await;
    assert_each_once(log_b.as_ref(), &events).await;
}

/// The social app's legacy `user.followed` JSON, mapped into events: each
/// message becomes its event, a message sent twice is stored once (the id
/// is derived from the message), and a payload the mapping cannot read is
/// dead-lettered as `Unmappable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_json_is_mapped_into_events() {
    let rabbit = RabbitMq::new();
    let (_connection, channel) = channel(&rabbit).await;
    bound_queue(&channel, "legacy-social").await;
    let legacy = |follower: &str| {
        format!(
            r#"{{"follower_id": "{follower}", "following_id": "u-9", "timestamp": "2026-12-04T10:00:00Z"}}"#
        )
    };
    let json = BasicProperties::default().with_content_type("application/json".into());
    for body in [
        legacy("u-1"),
        legacy("u-2"),
        legacy("u-1"),
        r#"{"following_id": "u-9"}"#.into(),
    ] {
        publish_raw(&channel, "legacy-social", json.clone(), body.as_bytes()).await;
    }
    let mapping = toml::from_str(
        r#"
        [[events]]
        type = "user.followed"
        id = ["/follower_id", "/following_id", "/timestamp"]
        [events.fields]
        followerId = "/follower_id"
        followeeId = "/following_id"
        followedAt = "/timestamp"
        "#,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path()).await;
    let config = BridgeConfig {
        mapping: Some(mapping),
        ..inbound(&rabbit, "legacy-social")
    };
    assert_eq!(config.problem(), None);
    let bridge = Running::start(log.clone(), config);
    let done = eventually(Duration::from_secs(30), || async {
        stored_letters(log.as_ref()).await.len() == 1
    })
    .await;
    assert!(done, "{:?}", bridge.counters.snapshot());
    bridge.stop().await;
    let stored = stored_events(log.as_ref()).await;
    let subjects: Vec<&str> = stored.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects,
        ["events.user.followed.u-1", "events.user.followed.u-2"]
    );
    let first = backbone_schemas::Envelope::decode(
        &stored[0].subject,
        &stored[0].headers,
        &stored[0].payload,
    )
    .unwrap();
    assert_eq!(first.source, "bridge/in");
    let letter = &stored_letters(log.as_ref()).await[0];
    assert!(
        letter
            .headers
            .get(DLQ_ERROR)
            .unwrap()
            .starts_with("Unmappable")
    );
}

//! The AMQP 1.0 bridges against a real AMQP 1.0 broker (RabbitMQ 3.10's
//! `rabbitmq_amqp1_0` plugin): both directions, every event type byte for
//! byte, bad input dead-lettered while later messages flow, and a broker
//! restart mid-stream.

mod support;

use std::{collections::BTreeSet, time::Duration};

use backbone_bridges::{BridgeConfig, BrokerKind, Direction, StartAt};
use backbone_consumers::dead_letter::{DLQ_CONSUMER, DLQ_ERROR, DLQ_STREAM};
use backbone_schemas::wire;
use backbone_testkit::RabbitMq;
use lapin::{Connection, ConnectionProperties};
use support::{amqp1::*, *};

/// Declares durable queues bound to the `events` exchange for every key
/// (AMQP 1.0 links attach to nodes; declaring is AMQP 0.9.1's).
async fn declare_queues(rabbit: &RabbitMq, queues: &[&str]) {
    let connection = Connection::connect(&rabbit.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    for queue in queues {
        bound_queue(&channel, queue).await;
    }
    let _ = connection.close(0, "declared".into()).await;
}

fn url(rabbit: &RabbitMq) -> String {
    format!("amqp://guest:guest@127.0.0.1:{}", rabbit.port())
}

fn outbound(rabbit: &RabbitMq) -> BridgeConfig {
    BridgeConfig {
        start: StartAt::All,
        batch_size: 64,
        address: Some("/exchange/events/{type}".into()),
        ..BridgeConfig::new("out", Direction::Outbound, BrokerKind::Amqp1, url(rabbit))
    }
}

fn inbound(rabbit: &RabbitMq, queue: &str) -> BridgeConfig {
    BridgeConfig {
        source: Some(format!("/amq/queue/{queue}")),
        batch_size: 64,
        ..BridgeConfig::new("in", Direction::Inbound, BrokerKind::Amqp1, url(rabbit))
    }
}

/// Log A -> outbound bridge -> AMQP 1.0 -> inbound bridge -> log B: every
/// event type arrives in B with the same attributes and payload bytes,
/// and on the wire carries the CloudEvents AMQP binding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_type_crosses_both_ways_byte_for_byte() {
    let rabbit = RabbitMq::new();
    declare_queues(&rabbit, &["inspect", "to-backbone"]).await;
    let dir = tempfile::tempdir().unwrap();
    let log_a = open_log(&dir.path().join("a")).await;
    let log_b = open_log(&dir.path().join("b")).await;
    let events = events(18);
    publish(log_a.as_ref(), &events).await;

    let out = Running::start(log_a.clone(), outbound(&rabbit));
    let into_b = Running::start(log_b.clone(), inbound(&rabbit, "to-backbone"));
    let mut client = Amqp1Client::connect(&rabbit).await;
    let seen = client
        .take("/amq/queue/inspect", events.len(), Duration::from_secs(60))
        .await;
    assert_eq!(seen.len(), events.len(), "{:?}", out.counters.snapshot());
    for (message, event) in seen.iter().zip(&events) {
        let properties = message.properties.as_ref().unwrap();
        assert_eq!(message_id(message), event.id.to_string());
        assert_eq!(
            properties.subject.as_deref(),
            Some(event.event_type.as_str())
        );
        assert_eq!(
            properties.content_type.as_ref().map(|c| c.0.as_str()),
            Some(wire::CONTENT_TYPE_PROTOBUF)
        );
        assert!(message.header.as_ref().unwrap().durable);
        assert_eq!(data(message), &event.payload[..]);
        assert_eq!(
            property(message, "cloudEvents:type").as_deref(),
            Some(event.event_type.as_str())
        );
        assert_eq!(
            property(message, "cloudEvents:source").as_deref(),
            Some(event.source.as_str())
        );
        assert_eq!(
            property(message, "cloudEvents:traceparent"),
            event.traceparent
        );
    }
    client.close().await;
    let arrived = wait_for_events(log_b.as_ref(), events.len()).await;
    assert!(arrived, "log B has {:?}", into_b.counters.snapshot());
    out.stop().await;
    into_b.stop().await;
    assert_crossed(log_a.as_ref(), log_b.as_ref()).await;
}

/// Malformed messages are dead-lettered with their reason and bytes and
/// accepted; the valid messages after them are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_dead_lettered_while_later_ones_flow() {
    let rabbit = RabbitMq::new();
    declare_queues(&rabbit, &["legacy"]).await;
    let valid = events(3);
    let mut unknown = binary_message(&valid[0], &valid[0].payload);
    unknown
        .application_properties
        .as_mut()
        .unwrap()
        .0
        .insert("cloudEvents:type".into(), "user.nope".into());
    let mut messages = vec![
        bare_message(b"\xffnot an event"),
        unknown,
        binary_message(&valid[1], b"\x0a\xff\xff truncated protobuf"),
    ];
    messages.extend(valid.iter().map(|e| binary_message(e, &e.payload)));
    let mut client = Amqp1Client::connect(&rabbit).await;
    client.send("/amq/queue/legacy", messages).await;

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
    let kinds: Vec<&str> = letters
        .iter()
        .map(|l| l.headers.get(DLQ_ERROR).unwrap().split(':').next().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["NotACloudEvent", "UnknownType", "PayloadNotDecodable"]
    );
    assert_eq!(&letters[0].payload[..], b"\xffnot an event");
    assert_eq!(
        letters[0].headers.get(DLQ_STREAM),
        Some("amqp1:/amq/queue/legacy")
    );
    assert_eq!(letters[0].headers.get(DLQ_CONSUMER), Some("bridge-in"));
    let ids: Vec<String> = stored_events(log.as_ref())
        .await
        .iter()
        .map(|m| m.headers.get(wire::CE_ID).unwrap().to_owned())
        .collect();
    let expected: Vec<String> = valid.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, expected);
    let left = client
        .take("/amq/queue/legacy", 1, Duration::from_secs(1))
        .await;
    assert!(left.is_empty(), "everything was accepted");
    client.close().await;
}

/// RabbitMQ restarts mid-stream in both directions: the bridges reconnect
/// with backoff and every event arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_stream_loses_nothing() {
    let mut rabbit = RabbitMq::new();
    declare_queues(&rabbit, &["inspect", "to-backbone"]).await;
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
    let mut client = Amqp1Client::connect(&rabbit).await;
    let seen = client
        .take("/amq/queue/inspect", events.len(), Duration::from_secs(60))
        .await;
    client.close().await;
    let ids: BTreeSet<String> = seen.iter().map(message_id).collect();
    assert_eq!(ids.len(), events.len(), "{:?}", out.counters.snapshot());
    let arrived = wait_for_events(log_b.as_ref(), events.len()).await;
    assert!(arrived, "log B: {:?}", into_b.counters.snapshot());
    assert!(out.counters.snapshot().2 > 0, "the restart was noticed");
    out.stop().await;
    into_b.stop().await;
    assert_each_once(log_b.as_ref(), &events).await;
}

/// `amqps://`: a bridge trusting the broker's CA (`SSL_CERT_FILE`, read
/// with the system's roots) sends over TLS; one that does not refuses
/// the broker and moves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_against_the_trusted_roots() {
    let rabbit = RabbitMq::with_tls();
    declare_queues(&rabbit, &["inspect"]).await;
    let tls_url = format!("amqps://guest:guest@127.0.0.1:{}", rabbit.tls_port());
    let events = events(18);

    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path()).await;
    publish(log.as_ref(), &events).await;
    let untrusting = Running::start(
        log.clone(),
        fast(BridgeConfig {
            url: tls_url.clone(),
            ..outbound(&rabbit)
        }),
    );
    let refused = eventually(Duration::from_secs(20), || async {
        untrusting.counters.snapshot().2 >= 3
    })
    .await;
    assert!(refused, "{:?}", untrusting.counters.snapshot());
    assert_eq!(untrusting.counters.snapshot().0, 0, "nothing crossed");
    untrusting.stop().await;
    log.close().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    crash::log_with(dir.path(), &events).await;
    let config = crash::write_config(
        dir.path(),
        &format!(
            "name = \"out\"\ndirection = \"outbound\"\nbroker = \"amqp1\"\nurl = \"{tls_url}\"\nstart = \"all\"\naddress = \"/exchange/events/{{type}}\"\n"
        ),
    );
    let mut bridge = crash::Bridge(
        std::process::Command::new(env!("CARGO_BIN_EXE_backbone-bridge"))
            .arg("--config")
            .arg(&config)
            .env("SSL_CERT_FILE", rabbit.ca_file())
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let mut client = Amqp1Client::connect(&rabbit).await;
    let seen = client
        .take("/amq/queue/inspect", events.len(), Duration::from_secs(60))
        .await;
    client.close().await;
    assert!(matches!(bridge.0.try_wait(), Ok(None)), "the bridge runs");
    let ids: Vec<String> = seen.iter().map(message_id).collect();
    let expected: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, expected);
    for (message, event) in seen.iter().zip(&events) {
        assert_eq!(data(message), &event.payload[..]);
    }
}

//! The Redis bridges against a real `redis-server`: streams both ways with
//! every event type byte for byte, pub/sub outbound, bad entries
//! dead-lettered while later ones flow, and a Redis restart mid-stream.

mod support;

use std::time::Duration;

use backbone_bridges::{BridgeConfig, BrokerKind, Direction, RedisTarget, StartAt};
use backbone_consumers::dead_letter::{DLQ_ERROR, DLQ_STREAM};
use backbone_schemas::{Envelope, cloudevents, wire};
use backbone_testkit::Redis;
use futures::StreamExt as _;
use redis::AsyncCommands as _;
use serde_json::{Value, json};
use support::*;

const STREAM_KEY: &str = "backbone-events";

async fn connection(redis: &Redis) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The `cloudevent` field of every entry of `key`.
async fn entries(redis: &Redis, key: &str) -> Vec<Value> {
    let mut connection = connection(redis).await;
    let reply: redis::streams::StreamRangeReply = connection.xrange_all(key).await.unwrap();
    reply
        .ids
        .iter()
        .map(|entry| {
            let field: String = entry.get("cloudevent").unwrap();
            serde_json::from_str(&field).unwrap()
        })
        .collect()
}

fn outbound(redis: &Redis) -> BridgeConfig {
    BridgeConfig {
        start: StartAt::All,
        address: Some(STREAM_KEY.into()),
        batch_size: 64,
        ..BridgeConfig::new("out", Direction::Outbound, BrokerKind::Redis, redis.url())
    }
}

fn inbound(redis: &Redis) -> BridgeConfig {
    BridgeConfig {
        source: Some(STREAM_KEY.into()),
        batch_size: 64,
        ..BridgeConfig::new("in", Direction::Inbound, BrokerKind::Redis, redis.url())
    }
}

/// Log A -> outbound -> a Redis stream -> inbound -> log B: every type
/// arrives with the same attributes and payload bytes, in the documented
/// structured form on Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_type_crosses_both_ways_byte_for_byte() {
    let redis = Redis::new();
    let dir = tempfile::tempdir().unwrap();
    let log_a = open_log(&dir.path().join("a")).await;
    let log_b = open_log(&dir.path().join("b")).await;
    let events = events(18);
    publish(log_a.as_ref(), &events).await;
    let out = Running::start(log_a.clone(), outbound(&redis));
    let into_b = Running::start(log_b.clone(), inbound(&redis));
    let arrived = wait_for_events(log_b.as_ref(), events.len()).await;
    assert!(
        arrived,
        "out {:?}, in {:?}",
        out.counters.snapshot(),
        into_b.counters.snapshot()
    );
    out.stop().await;
    into_b.stop().await;
    let on_redis = entries(&redis, STREAM_KEY).await;
    assert_eq!(on_redis.len(), events.len());
    for (entry, event) in on_redis.iter().zip(&events) {
        assert_eq!(entry["id"], json!(event.id.to_string()));
        assert_eq!(entry["type"], json!(event.event_type));
        assert_eq!(entry["datacontenttype"], json!(wire::CONTENT_TYPE_PROTOBUF));
        let back = cloudevents::from_structured(entry.clone()).unwrap();
        assert_eq!(back.payload, event.payload);
    }
    assert_crossed(log_a.as_ref(), log_b.as_ref()).await;
}

/// Pub/sub outbound: a subscriber of the type's channel (the default
/// address) receives every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_subscribers_receive_every_event() {
    let redis = Redis::new();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("user.followed").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path()).await;
    let followed: Vec<Envelope> = events(90)
        .into_iter()
        .filter(|e| e.event_type == "user.followed")
        .collect();
    publish(log.as_ref(), &followed).await;
    let config = BridgeConfig {
        start: StartAt::All,
        redis_target: RedisTarget::Pubsub,
        event_types: vec!["user.followed".into()],
        ..BridgeConfig::new("pub", Direction::Outbound, BrokerKind::Redis, redis.url())
    };
    let bridge = Running::start(log, config);
    let mut messages = pubsub.on_message();
    let mut ids = Vec::new();
    while ids.len() < followed.len() {
        let message = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .unwrap()
            .unwrap();
        let payload: String = message.get_payload().unwrap();
        let event: Value = serde_json::from_str(&payload).unwrap();
        ids.push(event["id"].as_str().unwrap().to_owned());
    }
    drop(messages);
    bridge.stop().await;
    let expected: Vec<String> = followed.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, expected);
}

/// Entries that are not events are dead-lettered with their reason and
/// acknowledged; the events after them are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_entries_are_dead_lettered_while_later_ones_flow() {
    let redis = Redis::new();
    let mut connection = connection(&redis).await;
    let valid = events(3);
    let structured =
        |e: &Envelope| cloudevents::to_structured(&e.headers(), &e.payload).to_string();
    let mut unknown: Value = serde_json::from_str(&structured(&valid[0])).unwrap();
    unknown["type"] = json!("user.nope");
    let bad: [(&str, String); 3] = [
        ("legacy", "{\"follower_id\": \"u-1\"}".to_owned()),
        ("cloudevent", "{not json".to_owned()),
        ("cloudevent", unknown.to_string()),
    ];
    for (field, value) in &bad {
        let _: String = connection
            .xadd(STREAM_KEY, "*", &[(*field, value.as_str())])
            .await
            .unwrap();
    }
    for event in &valid {
        let _: String = connection
            .xadd(STREAM_KEY, "*", &[("cloudevent", structured(event))])
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path()).await;
    let bridge = Running::start(log.clone(), inbound(&redis));
    let done = eventually(Duration::from_secs(30), || async {
        stored_events(log.as_ref()).await.len() == valid.len()
            && stored_letters(log.as_ref()).await.len() == bad.len()
    })
    .await;
    assert!(done, "{:?}", bridge.counters.snapshot());
    bridge.stop().await;
    let letters = stored_letters(log.as_ref()).await;
    let kinds: Vec<&str> = letters
        .iter()
        .map(|l| l.headers.get(DLQ_ERROR).unwrap().split(':').next().unwrap())
        .collect();
    assert_eq!(kinds, ["NotACloudEvent", "MalformedEvent", "UnknownType"]);
    assert_eq!(&letters[1].payload[..], b"{not json");
    assert_eq!(
        letters[0].headers.get(DLQ_STREAM),
        Some(format!("redis:{STREAM_KEY}").as_str())
    );
    let pending: redis::streams::StreamPendingReply =
        connection.xpending(STREAM_KEY, "backbone").await.unwrap();
    assert_eq!(pending.count(), 0, "everything was acknowledged");
}

/// Redis restarts mid-stream in both directions: the bridges reconnect
/// with backoff and every event is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_stream_loses_nothing() {
    let mut redis = Redis::new();
    let dir = tempfile::tempdir().unwrap();
    let log_a = open_log(&dir.path().join("a")).await;
    let log_b = open_log(&dir.path().join("b")).await;
    let events = events(3_000);
    publish(log_a.as_ref(), &events[..1_500]).await;
    let out = Running::start(log_a.clone(), fast(outbound(&redis)));
    let into_b = Running::start(log_b.clone(), fast(inbound(&redis)));
    eventually(Duration::from_secs(30), || async {
        !stored_events(log_b.as_ref()).await.is_empty()
    })
    .await;
    redis.restart();
    publish(log_a.as_ref(), &events[1_500..]).await;
    let arrived = wait_for_events(log_b.as_ref(), events.len()).await;
    assert!(
        arrived,
        "out {:?}, in {:?}",
        out.counters.snapshot(),
        into_b.counters.snapshot()
    );
    let failures = out.counters.snapshot().2 + into_b.counters.snapshot().2;
    assert!(failures > 0, "the restart was noticed");
    out.stop().await;
    into_b.stop().await;
    assert_each_once(log_b.as_ref(), &events).await;
}

/// A legacy producer's stream entry (plain fields, no `cloudevent`) is
/// mapped into an event through the bridge's mapping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_fields_are_mapped_into_events() {
    let redis = Redis::new();
    let mut connection = connection(&redis).await;
    let _: String = connection
        .xadd(
            STREAM_KEY,
            "*",
            &[
                ("event", "user.followed"),
                ("follower_id", "u-3"),
                ("following_id", "u-4"),
            ],
        )
        .await
        .unwrap();
    let mapping = toml::from_str(
        r#"
        [[events]]
        type = "user.followed"
        id = { query = "message_id" }
        when = [{ pointer = "/event", equals = "user.followed" }]
        [events.fields]
        followerId = "/follower_id"
        followeeId = "/following_id"
        "#,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path()).await;
    let config = BridgeConfig {
        mapping: Some(mapping),
        ce_source: Some("social-api".into()),
        ..inbound(&redis)
    };
    let bridge = Running::start(log.clone(), config);
    assert!(
        wait_for_events(log.as_ref(), 1).await,
        "{:?}",
        bridge.counters.snapshot()
    );
    bridge.stop().await;
    let stored = stored_events(log.as_ref()).await;
    assert_eq!(stored[0].subject, "events.user.followed.u-3");
    let envelope =
        Envelope::decode(&stored[0].subject, &stored[0].headers, &stored[0].payload).unwrap();
    assert_eq!(envelope.source, "social-api");
    assert!(stored_letters(log.as_ref()).await.is_empty());
}

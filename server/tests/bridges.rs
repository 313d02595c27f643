//! Bridges run inside the server on the embedded log: an event published
//! over HTTP reaches RabbitMQ, an event added to a Redis stream reaches
//! the log, and `/metrics` counts both.

mod support;

use std::time::Duration;

use backbone_schemas::{cloudevents, sample};
use backbone_testkit::{RabbitMq, Redis};
use futures::StreamExt as _;
use lapin::{
    Connection, ConnectionProperties, ExchangeKind,
    options::{BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
};
use redis::AsyncCommands as _;
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_bridges_both_ways() {
    let rabbit = RabbitMq::new();
    let redis = Redis::new();
    let connection = Connection::connect(&rabbit.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let durable_exchange = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            "events".into(),
            ExchangeKind::Topic,
            durable_exchange,
            FieldTable::default(),
        )
        .await
        .unwrap();
    let durable_queue = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare("notifications".into(), durable_queue, FieldTable::default())
        .await
        .unwrap();
    channel
        .queue_bind(
            "notifications".into(),
            "events".into(),
            "user.*".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let server = ServerProcess::start(&format!(
        "models = []\n\
         [[bridges]]\nname = \"social-out\"\ndirection = \"outbound\"\nbroker = \"rabbitmq\"\nurl = \"{}\"\nevent_types = [\"user.followed\"]\n\
         [[bridges]]\nname = \"chat-in\"\ndirection = \"inbound\"\nbroker = \"redis\"\nurl = \"{}\"\nsource = \"chat-events\"\n",
        rabbit.url(),
        redis.url()
    ))
    .await;

    let event = cloud_event(
        "user.followed",
        json!({"followerId": "u-1", "followeeId": "u-2"}),
    );
    let published = reqwest::Client::new()
        .post(server.url("/v1/events"))
        .header("content-type", "application/cloudevents+json")
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 201);
    let mut consumer = channel
        .basic_consume(
            "notifications".into(),
            "test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
        .await
        .expect("the event reaches RabbitMQ")
        .unwrap()
        .unwrap();
    assert_eq!(
        delivery.properties.message_id().as_ref().unwrap().as_str(),
        event["id"].as_str().unwrap()
    );
    assert_eq!(delivery.routing_key.as_str(), "user.followed");

    let (_, message) = sample::sample_events()
        .into_iter()
        .find(|(t, _)| *t == "message.received")
        .unwrap();
    let mut redis_connection = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let structured = cloudevents::to_structured(&message.headers(), &message.payload);
    let _: String = redis_connection
        .xadd(
            "chat-events",
            "*",
            &[("cloudevent", structured.to_string())],
        )
        .await
        .unwrap();
    let id = message.id.to_string();
    let mut stored = false;
    for _ in 0..100 {
        let log = reqwest::get(server.url("/v1/admin/streams/EVENTS/messages"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if log.contains(&id) {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stored,
        "the Redis entry reaches the log; log:\n{}",
        server.log()
    );
    // An inbound bridge counts a message after the upstream ack, which
    // follows the log's: the count may lag the log by a moment.
    let lines = [
        "backbone_bridge_messages_total{bridge=\"social-out\",direction=\"outbound\",broker=\"rabbitmq\"} 1",
        "backbone_bridge_messages_total{bridge=\"chat-in\",direction=\"inbound\",broker=\"redis\"} 1",
    ];
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = reqwest::get(server.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if lines.iter().all(|line| metrics.contains(line)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for line in lines {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    assert!(server.terminate().success());
}

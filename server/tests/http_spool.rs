//! The durable spool against the real `backbone-server` process and a real
//! nats-server: nats-server is killed mid-ingest; every request answered
//! 202 `spooled` (and every 201) ends in the log exactly once after it
//! comes back. A full spool answers 503 `SpoolFull` with `Retry-After`.

mod support;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use backbone_broker::{
    Broker,
    jetstream::{JetStreamBroker, JetStreamOptions},
    stream::{EVENT_STREAM, ReadRequest},
};
use backbone_testkit::NatsServer;
use futures::StreamExt as _;
use reqwest::Client;
use serde_json::{Value, json};
use support::ServerProcess;

fn backend(nats: &NatsServer) -> String {
    format!(
        "[backend]\nkind = \"jetstream\"\nurls = [{:?}]\nrequest_timeout = \"500ms\"\npublish_timeout = \"500ms\"\npublish_retries = 0\n",
        nats.url()
    )
}

fn follow(n: usize) -> Value {
    json!({"specversion": "1.0", "id": uuid::Uuid::now_v7().to_string(), "source": "spool-test",
           "type": "user.followed", "data": {"followerId": format!("u-{n}"), "followeeId": "u-0"}})
}

async fn publish(client: &Client, server: &ServerProcess, event: &Value) -> (u16, Value) {
    let response = client
        .post(server.url("/v1/events"))
        .header("content-type", "application/cloudevents+json")
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn spool_depth(server: &ServerProcess) -> u64 {
    let ready = server.get_json("/readyz").await;
    ready["spool"]["events"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_event_is_stored_once_across_a_nats_kill() {
    let mut nats = NatsServer::new();
    let server = ServerProcess::start(&format!("models = []\n{}", backend(&nats))).await;
    let client = Client::new();
    let mut accepted: HashMap<String, u16> = HashMap::new();
    for n in 0..300 {
        if n == 100 {
            nats.kill9();
        }
        if n == 200 {
            nats.start();
        }
        let event = follow(n);
        let (status, body) = publish(&client, &server, &event).await;
        assert!(matches!(status, 201 | 202), "{n}: {status} {body}");
        if status == 202 {
            assert_eq!(body["spooled"], true, "{body}");
        }
        accepted.insert(event["id"].as_str().unwrap().to_owned(), status);
    }
    let spooled = accepted.values().filter(|s| **s == 202).count();
    assert!(
        spooled >= 100,
        "only {spooled} of the requests while nats was down were spooled"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    while spool_depth(&server).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the spool never drained; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let broker = JetStreamBroker::connect(JetStreamOptions {
        urls: vec![nats.url()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut log = broker
        .read(EVENT_STREAM, ReadRequest::default())
        .await
        .unwrap();
    let mut stored: HashMap<String, usize> = HashMap::new();
    while let Some(message) = log.next().await {
        let envelope = message.unwrap().envelope().unwrap();
        *stored.entry(envelope.id.to_string()).or_default() += 1;
    }
    for id in accepted.keys() {
        assert_eq!(stored.get(id), Some(&1), "{id} ({} spooled)", spooled);
    }
    assert_eq!(stored.len(), accepted.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_answers_503_with_retry_after() {
    let mut nats = NatsServer::new();
    let server = ServerProcess::start(&format!(
        "models = []\n{}[spool]\nmax_bytes = 2000\n",
        backend(&nats)
    ))
    .await;
    nats.stop();
    let client = Client::new();
    let mut statuses = Vec::new();
    for n in 0..20 {
        let response = client
            .post(server.url("/v1/events"))
            .header("content-type", "application/cloudevents+json")
            .body(follow(n).to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        if status == 503 {
            assert_eq!(response.headers()["retry-after"], "1");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["kind"], "SpoolFull", "{body}");
        }
        statuses.push(status);
    }
    assert_eq!(statuses[0], 202, "{statuses:?}");
    assert_eq!(statuses.last(), Some(&503), "{statuses:?}");
    assert!(spool_depth(&server).await > 0);
}

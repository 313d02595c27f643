//! Rebuilding a read model through the running `backbone-server`: started
//! over HTTP, followed as Server-Sent Events, verified and swapped while
//! events keep arriving (none lost, none applied twice); a server killed
//! mid-rebuild resumes the shadow on the next one; every refusal by kind.

mod support;

use std::time::{Duration, Instant};

use eventsource_stream::Eventsource as _;
use futures::StreamExt as _;
use reqwest::Client;
use serde_json::{Value, json};
use support::{ServerProcess, cloud_event};

const USERS: usize = 10;

/// `count` payments of 1 EUR, `first` upwards, spread over `USERS` users.
async fn publish_payments(client: &Client, server: &ServerProcess, first: usize, count: usize) {
    for chunk in (first..first + count).collect::<Vec<_>>().chunks(500) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| {
                cloud_event(
                    "payment.received",
                    json!({"paymentId": format!("p-{i}"), "userId": format!("u-{}", i % USERS),
                           "amountMinor": "1", "currency": "EUR"}),
                )
            })
            .collect();
        let response = client
            .post(server.url("/v1/events"))
            .header("content-type", "application/cloudevents-batch+json")
            .body(Value::from(batch).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }
}

async fn post_rebuild(client: &Client, server: &ServerProcess, body: Value) -> (u16, Value) {
    let response = client
        .post(server.url("/v1/admin/rebuilds"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The progress events of `model`'s rebuild, to the final one.
async fn follow(server: &ServerProcess, model: &str, mut each: impl FnMut(&Value)) -> Value {
    let response = reqwest::get(server.url(&format!("/v1/admin/rebuilds/{model}/events")))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut events = response.bytes_stream().eventsource();
    let mut last = Value::Null;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while let Some(event) = tokio::time::timeout_at(deadline, events.next())
        .await
        .expect("the rebuild ends")
    {
        let event = event.unwrap();
        assert_eq!(event.event, "progress");
        last = serde_json::from_str(&event.data).unwrap();
        each(&last);
    }
    last
}

/// The element of the array `list` whose `key` is `name`.
fn find<'a>(list: &'a Value, key: &str, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|item| item[key] == name)
}

async fn billing_checkpoint(server: &ServerProcess) -> u64 {
    let models = server.get_json("/v1/models").await;
    find(&models["models"], "name", "billing").map_or(0, |m| m["checkpoint"].as_u64().unwrap())
}

async fn wait_for_checkpoint(server: &ServerProcess, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while billing_checkpoint(server).await < seq {
        assert!(Instant::now() < deadline, "billing never reached {seq}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn last_seq(server: &ServerProcess) -> u64 {
    let status = server.get_json("/v1/admin/status").await;
    find(&status["streams"], "stream", "EVENTS").unwrap()["last_seq"]
        .as_u64()
        .unwrap()
}

/// The sum of every user's balance: one per payment applied.
async fn total_balance(server: &ServerProcess) -> i64 {
    let mut total = 0;
    for user in 0..USERS {
        let body = server
            .get_json(&format!("/v1/models/billing/users/u-{user}/balances"))
            .await;
        total += body["balances"][0]["balance_minor"].as_i64().unwrap_or(0);
    }
    total
}

/// Billing's row of the status report.
async fn billing_row(server: &ServerProcess) -> Value {
    let status = server.get_json("/v1/admin/status").await;
    find(&status["read_models"], "read_model", "billing")
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_is_followed_verified_and_swapped_while_events_arrive() {
    let server = ServerProcess::start("models = [\"billing\", \"audit\"]").await;
    let client = Client::new();
    let initial = 20_000;
    publish_payments(&client, &server, 0, initial).await;
    wait_for_checkpoint(&server, last_seq(&server).await).await;

    let (status, started) = post_rebuild(
        &client,
        &server,
        json!({"model": "billing", "verify": true, "batch_size": 1}),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["phase"], "applying");
    // One rebuild of a model at a time.
    let (status, refused) = post_rebuild(&client, &server, json!({"model": "billing"})).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["kind"], "RebuildRunning");

    // Events keep arriving while it runs; the SSE stream shows it move.
    let arriving = publish_payments(&client, &server, initial, 2_000);
    let mut phases = Vec::new();
    let mut seqs = Vec::new();
    let (done, ()) = tokio::join!(
        follow(&server, "billing", |s| {
            let phase = s["phase"].as_str().unwrap().to_owned();
            if phases.last() != Some(&phase) {
                phases.push(phase);
            }
            seqs.push(s["current_seq"].as_u64().unwrap());
        }),
        arriving
    );
    assert_eq!(done["phase"], "done", "{done}");
    assert_eq!(done["digest"], done["live_digest"], "{done}");
    assert!(done["failure"].is_null(), "{done}");
    assert_eq!(phases.first().map(String::as_str), Some("applying"));
    assert_eq!(phases.last().map(String::as_str), Some("done"));
    // Verified: the live digest was read and equals the rebuilt one.
    assert!(done["live_digest"].is_string(), "{done}");
    assert!(seqs.len() > 2, "progress was reported: {seqs:?}");
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "{seqs:?}");

    // The rebuilt store runs on: every event once, also those published
    // during the rebuild.
    wait_for_checkpoint(&server, last_seq(&server).await).await;
    assert_eq!(total_balance(&server).await, (initial + 2_000) as i64);
    let shown = server.get_json("/v1/admin/rebuilds/billing").await;
    assert_eq!(shown["phase"], "done");
    let listed = server.get_json("/v1/admin/rebuilds").await;
    assert_eq!(listed["rebuilds"][0]["model"], "billing", "{listed}");
    let row = billing_row(&server).await;
    assert_eq!(row["state"], "ok", "no shadow is left: {row}");

    // Refusals, by kind.
    let (status, body) = post_rebuild(&client, &server, json!({"model": "inbox"})).await;
    assert_eq!(
        (status, body["error"]["kind"].clone()),
        (404, json!("UnknownReadModel"))
    );
    let (status, body) = post_rebuild(
        &client,
        &server,
        json!({"model": "billing", "batch_size": 0}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["kind"].clone()),
        (400, json!("MalformedRequest"))
    );
    let (status, body) = post_rebuild(&client, &server, json!({"modle": "billing"})).await;
    assert_eq!(
        (status, body["error"]["kind"].clone()),
        (400, json!("MalformedRequest"))
    );
    let response = client
        .post(server.url("/v1/admin/rebuilds"))
        .header("content-type", "text/plain")
        .body("billing")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["kind"], "UnsupportedMediaType");
    let response = client
        .get(server.url("/v1/admin/rebuilds/audit"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404, "audit was never rebuilt");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["kind"], "NotFound");
    let response = client
        .get(server.url("/v1/admin/rebuilds/inbox/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["kind"], "UnknownReadModel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_killed_with_the_server_resumes_its_shadow() {
    let mut server = ServerProcess::start("models = [\"billing\"]").await;
    let client = Client::new();
    let events = 20_000;
    publish_payments(&client, &server, 0, events).await;
    let last = last_seq(&server).await;
    wait_for_checkpoint(&server, last).await;

    let (status, body) = post_rebuild(
        &client,
        &server,
        json!({"model": "billing", "batch_size": 1}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let progress = server.get_json("/v1/admin/rebuilds/billing").await;
        if progress["current_seq"].as_u64().unwrap() > 1_000 {
            assert_eq!(
                progress["phase"], "applying",
                "killed mid-apply: {progress}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{progress}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    server.restart().await;

    let row = billing_row(&server).await;
    assert_eq!(row["state"], "ok (interrupted rebuild pending)", "{row}");
    let (status, body) = post_rebuild(
        &client,
        &server,
        json!({"model": "billing", "verify": true}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let done = follow(&server, "billing", |_| {}).await;
    assert_eq!(done["phase"], "done", "{done}");
    assert_eq!(done["digest"], done["live_digest"]);
    let applied = done["applied"].as_u64().unwrap();
    assert!(
        applied < events as u64 - 1_000,
        "the shadow was resumed, not started over: {applied} applied"
    );
    wait_for_checkpoint(&server, last).await;
    assert_eq!(total_balance(&server).await, events as i64);
}

/// The same on a real nats-server: the durable consumer is deleted at the
/// swap and the runner resumes right after the rebuilt checkpoint; the log
/// route reads JetStream as it reads the embedded log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_on_jetstream_resumes_the_durable_after_the_swap() {
    let nats = backbone_testkit::NatsServer::new();
    let server = ServerProcess::start(&format!(
        "models = [\"billing\"]\n[backend]\nkind = \"jetstream\"\nurls = [{:?}]\n",
        nats.url()
    ))
    .await;
    let client = Client::new();
    publish_payments(&client, &server, 0, 3_000).await;
    wait_for_checkpoint(&server, last_seq(&server).await).await;
    let (status, body) = post_rebuild(
        &client,
        &server,
        json!({"model": "billing", "verify": true, "batch_size": 100}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let done = follow(&server, "billing", |_| {}).await;
    assert_eq!(done["phase"], "done", "{done}");
    assert_eq!(done["digest"], done["live_digest"], "{done}");

    publish_payments(&client, &server, 3_000, 500).await;
    let last = last_seq(&server).await;
    wait_for_checkpoint(&server, last).await;
    assert_eq!(total_balance(&server).await, 3_500);
    let text = client
        .get(server.url("/v1/admin/streams/EVENTS/messages"))
        .query(&[("from_seq", last.to_string())])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let seqs: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [last]);
}

//! `POST /v1/events` against the real `backbone-server` process, on the
//! embedded default and on a real nats-server: every mode (binary JSON,
//! binary protobuf, structured, batch), the receipts, and every bad-input
//! class with its status and error kind. Then the read models apply what
//! was published over HTTP.

mod support;

use std::time::{Duration, Instant};

use backbone_schemas::{Envelope, EventContext, user::v1::UserFollowed};
use backbone_testkit::NatsServer;
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use support::ServerProcess;

const LIMIT: usize = 64 * 1024;

fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A binary-mode JSON request for `type_name` with `data`.
fn binary(
    client: &Client,
    server: &ServerProcess,
    type_name: &str,
    data: &Value,
) -> RequestBuilder {
    client
        .post(server.url("/v1/events"))
        .header("content-type", "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", id())
        .header("ce-source", "http-test")
        .header("ce-type", type_name)
        .body(data.to_string())
}

fn payment(user: &str, payment: &str, amount: i64) -> Value {
    json!({"paymentId": payment, "userId": user, "amountMinor": amount.to_string(), "currency": "EUR"})
}

async fn answer(request: RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Asserts the status and the error kind of a refused request.
async fn refused(request: RequestBuilder, status: u16, kind: &str) -> Value {
    let (got, body) = answer(request).await;
    assert_eq!(
        (got.as_u16(), body["error"]["kind"].as_str()),
        (status, Some(kind)),
        "{body}"
    );
    body
}

/// Every mode and every bad-input class on a running server. Publishes
/// payments of 100 + 5 (binary JSON), 7 (protobuf payload is a follow, so
/// billing is unaffected), 11 (structured) and 1 + 2 (batch) for user u-1.
async fn exercise(server: &ServerProcess) {
    let client = Client::new();
    let events = server.url("/v1/events");

    // Binary mode, JSON data: 201, then the same ce-id again is a duplicate.
    let request = binary(
        &client,
        server,
        "payment.received",
        &payment("u-1", "p-1", 100),
    );
    let retry = request.try_clone().unwrap();
    let (status, first) = answer(request).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(
        (first["duplicate"].as_bool(), first["stream"].as_str()),
        (Some(false), Some("EVENTS"))
    );
    assert_eq!(first["subject"], "events.payment.received.u-1");
    let (status, again) = answer(retry).await;
    assert_eq!(
        (status, &again["duplicate"], &again["seq"]),
        (StatusCode::OK, &json!(true), &first["seq"])
    );
    let (status, _) = answer(binary(
        &client,
        server,
        "payment.received",
        &payment("u-1", "p-2", 5),
    ))
    .await;
    assert_eq!(status, StatusCode::CREATED);

    // Binary mode, protobuf data, with an optimistic append: the subject's
    // last sequence is 0 the first time, so a second append expecting 0 conflicts.
    let follow = Envelope::from_event(
        &UserFollowed {
            follower_id: "u-7".into(),
            followee_id: "u-1".into(),
            ..Default::default()
        },
        EventContext::new("http-test"),
    )
    .unwrap();
    let protobuf = |expected: u64| {
        client
            .post(&events)
            .header("content-type", "application/protobuf")
            .header("ce-specversion", "1.0")
            .header("ce-id", id())
            .header("ce-source", "http-test")
            .header("ce-type", "user.followed")
            .header("backbone-expected-last-subject-seq", expected.to_string())
            .body(follow.payload.clone())
    };
    let (status, body) = answer(protobuf(0)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let conflict = refused(protobuf(0), 409, "WrongLastSequence").await;
    assert_eq!(conflict["error"]["actual"], body["seq"]);

    // Structured mode and a batch.
    let structured = |payment_id: &str, amount: i64| {
        json!({"specversion": "1.0", "id": id(), "source": "http-test", "type": "payment.received",
               "datacontenttype": "application/json", "data": payment("u-1", payment_id, amount)})
    };
    let (status, body) = answer(
        client
            .post(&events)
            .header("content-type", "application/cloudevents+json")
            .body(structured("p-3", 11).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let batch = json!([structured("p-4", 1), structured("p-5", 2)]);
    let (status, body) = answer(
        client
            .post(&events)
            .header("content-type", "application/cloudevents-batch+json")
            .body(batch.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(
        results[1]["seq"].as_u64(),
        results[0]["seq"].as_u64().map(|s| s + 1)
    );

    // Every bad-input class: status and kind.
    let cases: Vec<(RequestBuilder, u16, &str)> = vec![
        (
            binary(&client, server, "payment.received", &json!({})).body("{not json"),
            400,
            "PayloadNotDecodable",
        ),
        (
            binary(&client, server, "payment.received", &json!({"nope": 1})),
            400,
            "PayloadNotDecodable",
        ),
        (
            client
                .post(&events)
                .header("content-type", "text/plain")
                .header("ce-type", "payment.received")
                .body("p-1"),
            415,
            "UnsupportedMediaType",
        ),
        (
            binary(&client, server, "payment.nope", &payment("u-1", "p", 1)),
            400,
            "UnknownType",
        ),
        (
            binary(&client, server, "payment.received", &payment("u 1", "p", 1)),
            400,
            "InvalidSubject",
        ),
        (
            binary(&client, server, "payment.received", &payment("u-1", "p", 1))
                .header("ce-subject", "u-2"),
            400,
            "KeyMismatch",
        ),
        (
            binary(&client, server, "payment.received", &payment("u-1", "p", 1))
                .header("ce-specversion", "0.3"),
            400,
            "InvalidHeader",
        ),
        (
            client
                .post(&events)
                .header("content-type", "application/json")
                .header("ce-type", "payment.received")
                .body(payment("u-1", "p", 1).to_string()),
            400,
            "MissingHeader",
        ),
        (
            binary(&client, server, "payment.received", &json!({})).body(vec![b' '; LIMIT + 1]),
            413,
            "PayloadTooLarge",
        ),
        (
            client
                .post(&events)
                .header("content-type", "application/cloudevents+json")
                .body("[1]"),
            400,
            "MalformedRequest",
        ),
        (
            client
                .post(&events)
                .header("content-type", "application/cloudevents-batch+json")
                .body(json!([structured("p-6", 1), {"id": 5}]).to_string()),
            400,
            "InvalidHeader",
        ),
        (
            binary(&client, server, "payment.received", &payment("u-1", "p", 1))
                .header("backbone-expected-last-subject-seq", "x"),
            400,
            "InvalidHeader",
        ),
        (client.get(server.url("/v1/nowhere")), 404, "NotFound"),
        (
            client.get(server.url("/v1/models/inbox/users/u-1/unread")),
            404,
            "UnknownReadModel",
        ),
    ];
    for (request, status, kind) in cases {
        refused(request, status, kind).await;
    }

    // What was published over HTTP reaches the read models: 100 + 5 + 11 + 1 + 2.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = client
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let billing = metrics
            .lines()
            .find(|l| l.starts_with("backbone_checkpoint{consumer=\"billing\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
        if billing == Some(results[1]["seq"].as_u64().unwrap()) {
            assert!(metrics.contains("backbone_http_requests_total{route=\"/v1/events\",method=\"POST\",status=\"201\"}"), "{metrics}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "billing never caught up: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let balances = server
        .get_json("/v1/models/billing/users/u-1/balances")
        .await;
    assert_eq!(
        balances["balances"],
        json!([{"currency": "EUR", "balance_minor": 119}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_publish_on_the_embedded_log() {
    let server = ServerProcess::start(&format!(
        "models = [\"billing\"]\n[http]\nmax_body_bytes = {LIMIT}\n"
    ))
    .await;
    exercise(&server).await;
    let exit = server.terminate();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_publish_on_jetstream_and_503_while_nats_is_down() {
    let mut nats = NatsServer::new();
    let server = ServerProcess::start(&format!(
        "models = [\"billing\"]\n[backend]\nkind = \"jetstream\"\nurls = [{:?}]\nrequest_timeout = \"1s\"\n[spool]\nenabled = false\n[http]\nmax_body_bytes = {LIMIT}\n",
        nats.url()
    ))
    .await;
    exercise(&server).await;
    nats.stop();
    let client = Client::new();
    let body = refused(
        binary(
            &client,
            &server,
            "payment.received",
            &payment("u-1", "p-9", 1),
        ),
        503,
        "BrokerUnavailable",
    )
    .await;
    assert!(body["error"]["message"].is_string());
    let response = binary(
        &client,
        &server,
        "payment.received",
        &payment("u-1", "p-9", 1),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.headers()["retry-after"], "1");
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
}

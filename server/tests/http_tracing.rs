//! OpenTelemetry against the real `backbone-server` process: spans are
//! exported over OTLP/HTTP (JSON) to a receiver in this test, and the
//! request's `traceparent` is continued by the publish (`send`) span and by
//! the billing read model's apply (`process`) span: one trace, with the
//! messaging attributes.

mod support;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use reqwest::Client;
use serde_json::{Value, json};
use support::{ServerProcess, cloud_event};

type Received = Arc<Mutex<Vec<Value>>>;

/// A local OTLP/HTTP receiver: keeps every exported span.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    async fn traces(State(received): State<Received>, body: Bytes) -> &'static str {
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let spans = request["resourceSpans"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r["scopeSpans"].as_array().into_iter().flatten())
            .flat_map(|s| s["spans"].as_array().into_iter().flatten())
            .cloned();
        received.lock().unwrap().extend(spans);
        "{}"
    }
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?["value"]["stringValue"]
        .as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_the_publish_and_the_apply_share_one_trace() {
    let (endpoint, received) = receiver().await;
    let server = ServerProcess::start(&format!(
        "models = [\"billing\"]\n[telemetry]\notlp_endpoint = {endpoint:?}\nservice_name = \"billing-service\"\n"
    ))
    .await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let event = cloud_event(
        "payment.received",
        json!({"paymentId": "p-1", "userId": "u-1", "amountMinor": "100", "currency": "EUR"}),
    );
    let event_id = event["id"].as_str().unwrap().to_owned();
    let response = Client::new()
        .post(server.url("/v1/events"))
        .header("content-type", "application/cloudevents+json")
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    // The batch exporter sends every few seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (send, process) = loop {
        let spans = received.lock().unwrap().clone();
        let in_trace = |name: &str| {
            spans
                .iter()
                .find(|s| s["name"] == name && s["traceId"] == trace_id)
                .cloned()
        };
        if let (Some(send), Some(process)) = (in_trace("send"), in_trace("process")) {
            break (send, process);
        }
        assert!(Instant::now() < deadline, "spans so far: {spans:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(attribute(&send, "messaging.system"), Some("backbone"));
    assert_eq!(
        attribute(&send, "messaging.destination.name"),
        Some("events.payment.received.u-1")
    );
    assert_eq!(
        attribute(&send, "cloudevents.event_id"),
        Some(event_id.as_str())
    );
    assert_eq!(
        attribute(&process, "messaging.consumer.group.name"),
        Some("billing")
    );
    assert_eq!(
        attribute(&process, "messaging.message.id"),
        Some(event_id.as_str())
    );
    assert_eq!(
        process["parentSpanId"], send["spanId"],
        "the apply continues the publish"
    );
}

//! Bearer tokens against the real `backbone-server` process: 401 without a
//! valid token, 403 outside a token's publish and read scopes (a batch with
//! one forbidden event stores nothing), the probes open, and no token in
//! the server's log.

mod support;

use reqwest::{Client, RequestBuilder};
use serde_json::{Value, json};
use support::{ServerProcess, cloud_event, sha256_hex};

const SOCIAL: &str = "social-api-token-3b1f";
const BILLING: &str = "billing-token-77aa";

fn follow() -> Value {
    cloud_event(
        "user.followed",
        json!({"followerId": "u-1", "followeeId": "u-2"}),
    )
}

fn payment() -> Value {
    cloud_event(
        "payment.received",
        json!({"paymentId": "p-1", "userId": "u-1", "amountMinor": "5", "currency": "EUR"}),
    )
}

async fn status_and_kind(request: RequestBuilder) -> (u16, Option<String>, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["kind"].as_str().map(str::to_owned),
        body,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_gate_publish_and_read_by_scope() {
    let server = ServerProcess::start(&format!(
        "models = [\"notifications\", \"billing\"]\n\
         [[tokens]]\nname = \"social-api\"\nsha256 = \"{}\"\npublish = [\"user.*\"]\nread = [\"notifications\"]\n\
         [[tokens]]\nname = \"billing\"\nsha256 = \"{}\"\npublish = [\"payment.received\"]\nread = [\"*\"]\n",
        sha256_hex(SOCIAL),
        sha256_hex(BILLING).to_uppercase(),
    ))
    .await;
    let client = Client::new();
    let publish = |token: Option<&str>, body: Value, batch: bool| {
        let content_type = if batch {
            "application/cloudevents-batch+json"
        } else {
            "application/cloudevents+json"
        };
        let request = client
            .post(server.url("/v1/events"))
            .header("content-type", content_type)
            .body(body.to_string());
        match token {
            Some(t) => request.bearer_auth(t),
            None => request,
        }
    };

    let response = publish(None, follow(), false).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let (status, kind, _) = status_and_kind(publish(Some("guess"), follow(), false)).await;
    assert_eq!((status, kind.as_deref()), (401, Some("Unauthorized")));

    let (status, _, body) = status_and_kind(publish(Some(SOCIAL), follow(), false)).await;
    assert_eq!(status, 201, "{body}");
    let (status, kind, body) = status_and_kind(publish(Some(SOCIAL), payment(), false)).await;
    assert_eq!(
        (status, kind.as_deref(), body["error"]["scope"].as_str()),
        (403, Some("Forbidden"), Some("publish:payment.received"))
    );
    let (status, kind, body) =
        status_and_kind(publish(Some(SOCIAL), json!([follow(), payment()]), true)).await;
    assert_eq!(
        (status, kind.as_deref(), body["error"]["index"].as_u64()),
        (403, Some("Forbidden"), Some(1))
    );
    let (status, _, body) = status_and_kind(publish(Some(BILLING), payment(), false)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["seq"], 2, "the refused batch stored nothing: {body}");

    let read = |token: &str, path: &str| client.get(server.url(path)).bearer_auth(token);
    let (status, kind, _) =
        status_and_kind(read(SOCIAL, "/v1/models/billing/users/u-1/balances")).await;
    assert_eq!((status, kind.as_deref()), (403, Some("Forbidden")));
    let (status, _, _) = status_and_kind(read(SOCIAL, "/v1/models/notifications/users/u-2")).await;
    assert_eq!(status, 200);
    let (status, _, _) =
        status_and_kind(read(BILLING, "/v1/models/billing/users/u-1/balances")).await;
    assert_eq!(status, 200);
    let (_, _, list) = status_and_kind(read(SOCIAL, "/v1/models")).await;
    assert_eq!(
        list["models"].as_array().map(|m| m.len()),
        Some(1),
        "{list}"
    );
    let (status, kind, _) = status_and_kind(client.get(server.url("/v1/models"))).await;
    assert_eq!((status, kind.as_deref()), (401, Some("Unauthorized")));

    for probe in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            client.get(server.url(probe)).send().await.unwrap().status(),
            200,
            "{probe}"
        );
    }
    let log = server.log();
    assert!(!log.contains(SOCIAL) && !log.contains(BILLING), "{log}");
}

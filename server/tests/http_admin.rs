//! The admin routes against the real `backbone-server` process: a refund
//! the billing model cannot apply is dead-lettered, listed, shown, redriven
//! once its payment exists (applied by billing only), and purged; the
//! status report counts it; non-admin tokens are refused.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Client, Method};
use serde_json::{Value, json};
use support::{ServerProcess, cloud_event, sha256_hex, short_duplicate_window};

const ADMIN: &str = "admin-token-1";
const READER: &str = "reader-token-1";

struct Admin<'a> {
    client: Client,
    server: &'a ServerProcess,
}

impl Admin<'_> {
    async fn call(&self, method: Method, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self.client.request(method, self.server.url(path));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(Method::GET, path, Some(ADMIN)).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    async fn publish(&self, event: Value) {
        let response = self
            .client
            .post(self.server.url("/v1/events"))
            .bearer_auth(ADMIN)
            .header("content-type", "application/cloudevents+json")
            .body(event.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }

    async fn wait_for(&self, path: &str, what: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let body = self.get(path).await;
            if what(&body) {
                return body;
            }
            assert!(Instant::now() < deadline, "{path}: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_shown_redriven_and_purged() {
    let server = ServerProcess::start_prepared(
        &format!(
            "models = [\"billing\"]\n\
             [[tokens]]\nname = \"ops\"\nsha256 = \"{}\"\nadmin = true\npublish = [\"*\"]\nread = [\"*\"]\n\
             [[tokens]]\nname = \"reader\"\nsha256 = \"{}\"\nread = [\"*\"]\n",
            sha256_hex(ADMIN),
            sha256_hex(READER)
        ),
        short_duplicate_window,
    )
    .await;
    let admin = Admin {
        client: Client::new(),
        server: &server,
    };

    admin
        .publish(cloud_event(
            "payment.refunded",
            json!({"refundId": "r-1", "paymentId": "p-late", "userId": "u-1",
            "amountMinor": "30", "currency": "EUR"}),
        ))
        .await;
    let list = admin
        .wait_for("/v1/admin/dead-letters", |b| {
            b["items"].as_array().is_some_and(|i| i.len() == 1)
        })
        .await;
    let letter = &list["items"][0];
    assert_eq!(letter["consumer"], "billing", "{list}");
    let seq = letter["seq"].as_u64().unwrap();
    let shown = admin.get(&format!("/v1/admin/dead-letters/{seq}")).await;
    assert_eq!(shown["event"]["type"], "payment.refunded", "{shown}");
    assert_eq!(shown["event"]["data"]["refundId"], "r-1");
    let status = admin.get("/v1/admin/status").await;
    assert_eq!(status["dead_letters"], 1, "{status}");

    // The payment arrives; the redriven refund now applies, once.
    admin
        .publish(cloud_event(
            "payment.received",
            json!({"paymentId": "p-late", "userId": "u-1", "amountMinor": "100",
            "currency": "EUR"}),
        ))
        .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (code, redriven) = admin
        .call(
            Method::POST,
            &format!("/v1/admin/dead-letters/{seq}/redrive"),
            Some(ADMIN),
        )
        .await;
    assert_eq!(
        (code, &redriven["duplicate"]),
        (200, &json!(false)),
        "{redriven}"
    );
    admin
        .wait_for("/v1/models/billing/users/u-1/balances", |b| {
            b["balances"] == json!([{"currency": "EUR", "balance_minor": 70}])
        })
        .await;

    // Refusals: status and kind.
    let seq_path = format!("/v1/admin/dead-letters/{seq}");
    let cases = [
        (
            Method::GET,
            "/v1/admin/dead-letters".to_owned(),
            Some(READER),
            403,
            "Forbidden",
        ),
        (
            Method::GET,
            "/v1/admin/status".to_owned(),
            None,
            401,
            "Unauthorized",
        ),
        (
            Method::POST,
            format!("{seq_path}/redrive"),
            Some(READER),
            403,
            "Forbidden",
        ),
        (
            Method::GET,
            "/v1/admin/dead-letters/999".to_owned(),
            Some(ADMIN),
            404,
            "NotFound",
        ),
        (
            Method::GET,
            "/v1/admin/dead-letters?limit=0".to_owned(),
            Some(ADMIN),
            400,
            "InvalidQuery",
        ),
        (
            Method::GET,
            "/v1/admin/dead-letters?cursor=x".to_owned(),
            Some(ADMIN),
            400,
            "InvalidCursor",
        ),
        (
            Method::DELETE,
            "/v1/admin/dead-letters?consumer=a.b".to_owned(),
            Some(ADMIN),
            400,
            "InvalidQuery",
        ),
    ];
    for (method, path, token, status, kind) in cases {
        let (got, body) = admin.call(method, &path, token).await;
        assert_eq!(
            (got, body["error"]["kind"].as_str()),
            (status, Some(kind)),
            "{path}: {body}"
        );
    }

    let (code, purged) = admin
        .call(
            Method::DELETE,
            "/v1/admin/dead-letters?consumer=billing",
            Some(ADMIN),
        )
        .await;
    assert_eq!((code, &purged["purged"]), (200, &json!(1)), "{purged}");
    assert_eq!(
        admin.get("/v1/admin/dead-letters").await["items"],
        json!([])
    );
}

/// The log read through the server: NDJSON records byte for byte, a
/// follow that sends what is stored after it opened, and the refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_read_through_the_server() {
    use backbone_broker::{StoredMessage, record::MessageRecord};
    use futures::StreamExt as _;

    let server = ServerProcess::start(&format!(
        "models = [\"billing\"]\n\
         [[tokens]]\nname = \"ops\"\nsha256 = \"{}\"\nadmin = true\npublish = [\"*\"]\nread = [\"*\"]\n\
         [[tokens]]\nname = \"reader\"\nsha256 = \"{}\"\nread = [\"*\"]\n",
        sha256_hex(ADMIN),
        sha256_hex(READER)
    ))
    .await;
    let admin = Admin {
        client: Client::new(),
        server: &server,
    };
    for i in 0..3 {
        admin
            .publish(cloud_event(
                "payment.received",
                json!({"paymentId": format!("p-{i}"), "userId": "u-1", "amountMinor": "5", "currency": "EUR"}),
            ))
            .await;
    }
    let path = "/v1/admin/streams/EVENTS/messages";
    let response = admin
        .client
        .get(server.url(path))
        .query(&[("from_seq", "2")])
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    let messages: Vec<StoredMessage> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<MessageRecord>(l)
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect();
    assert_eq!(messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(messages[0].headers.get("ce-type"), Some("payment.received"));

    // A follow sends what is stored after it opened.
    let follow = admin
        .client
        .get(server.url(path))
        .query(&[("from_seq", "4"), ("follow", "true")])
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(follow.status(), 200);
    let mut body = follow.bytes_stream();
    admin
        .publish(cloud_event(
            "payment.received",
            json!({"paymentId": "p-late", "userId": "u-1", "amountMinor": "5", "currency": "EUR"}),
        ))
        .await;
    let mut line = Vec::new();
    while !line.ends_with(b"\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("the new message is sent")
            .unwrap()
            .unwrap();
        line.extend_from_slice(&chunk);
    }
    let record: MessageRecord = serde_json::from_slice(&line).unwrap();
    assert_eq!(record.seq, 4);

    // Refusals, by status and kind.
    for (query, status, kind) in [
        (vec![("from_time", "yesterday")], 400, "InvalidQuery"),
        (
            vec![("from_seq", "1"), ("from_time", "2026-01-01T00:00:00Z")],
            400,
            "InvalidQuery",
        ),
        (vec![("follow", "maybe")], 400, "InvalidQuery"),
    ] {
        let response = admin
            .client
            .get(server.url(path))
            .query(&query)
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{query:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["kind"], kind, "{query:?}: {body}");
    }
    let (status, body) = admin
        .call(Method::GET, "/v1/admin/streams/NOPE/messages", Some(ADMIN))
        .await;
    assert_eq!(
        (status, body["error"]["kind"].clone()),
        (404, json!("NotFound"))
    );
    let (status, body) = admin.call(Method::GET, path, Some(READER)).await;
    assert_eq!(
        (status, body["error"]["kind"].clone()),
        (403, json!("Forbidden"))
    );
    let (status, _) = admin.call(Method::GET, path, None).await;
    assert_eq!(status, 401);
}

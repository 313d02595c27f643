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

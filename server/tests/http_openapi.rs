//! `GET /openapi.json` from the real `backbone-server` process: an OpenAPI
//! 3.1 document naming every route, and every documented operation answers
//! with one of its documented statuses when called with sample parameters
//! and no body.

mod support;

use std::collections::BTreeSet;

use reqwest::{Client, Method};
use serde_json::Value;
use support::ServerProcess;

/// Every route the server serves.
const ROUTES: [(&str, &str); 33] = [
    ("post", "/v1/events"),
    ("post", "/v1/webhooks/{name}"),
    ("get", "/v1/models"),
    ("get", "/v1/models/notifications/users/{user}"),
    ("get", "/v1/models/notifications/users/{user}/followers"),
    ("get", "/v1/models/notifications/users/{user}/following"),
    ("get", "/v1/models/notifications/users/{user}/feed"),
    ("get", "/v1/models/billing/users/{user}/balances"),
    ("get", "/v1/models/billing/users/{user}/ledger"),
    ("get", "/v1/models/billing/payments/{payment}"),
    ("get", "/v1/models/gallery/users/{user}/images"),
    ("get", "/v1/models/gallery/users/{user}/tune"),
    ("get", "/v1/models/gallery/packs/{pack}"),
    ("get", "/v1/models/inbox/users/{user}/conversations"),
    ("get", "/v1/models/inbox/users/{user}/unread"),
    ("get", "/v1/models/inbox/conversations/{conversation}"),
    ("get", "/v1/models/audit/events"),
    ("get", "/v1/models/audit/events/{id}"),
    ("get", "/v1/admin/status"),
    ("get", "/v1/admin/dead-letters"),
    ("delete", "/v1/admin/dead-letters"),
    ("get", "/v1/admin/dead-letters/{seq}"),
    ("post", "/v1/admin/dead-letters/{seq}/redrive"),
    ("get", "/v1/admin/streams/{stream}/messages"),
    ("get", "/v1/admin/rebuilds"),
    ("post", "/v1/admin/rebuilds"),
    ("get", "/v1/admin/rebuilds/{model}"),
    ("get", "/v1/admin/rebuilds/{model}/events"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/"),
];

/// A sample value for a path parameter.
fn sample(param: &str) -> &'static str {
    match param {
        "seq" => "1",
        "id" => "0190c2a4-7e1f-7c3a-9d55-4b8e2f6a1c00",
        _ => "u-1",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_answers_as_documented() {
    let server = ServerProcess::start("models = [\"all\"]\n").await;
    let client = Client::new();
    let doc = server.get_json("/openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");

    let mut documented = BTreeSet::new();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            documented.insert((method.clone(), path.clone()));
            let statuses: Vec<u16> = operation["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|s| s.parse().unwrap())
                .collect();
            let mut url = path.clone();
            for segment in path.split('/').filter(|s| s.starts_with('{')) {
                url = url.replace(segment, sample(segment.trim_matches(['{', '}'])));
            }
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = client
                .request(method.clone(), server.url(&url))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            assert!(
                statuses.contains(&status),
                "{method} {url}: {status}, documented {statuses:?}"
            );
            if status >= 400 {
                // Every error is the JSON error body.
                let body: Value = response.json().await.unwrap();
                assert!(body["error"]["kind"].is_string(), "{method} {url}: {body}");
            }
        }
    }
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, served);
}

//! `GET /v1/models/...` against the real `backbone-server` process: events
//! published over HTTP are answered by every read model's routes, lists
//! page with cursors that add up to the whole list, a missing thing is 404
//! `NotFound`, and bad query parameters are 400 with their kind.

mod support;

use std::time::{Duration, Instant};

use reqwest::Client;
use serde_json::{Value, json};
use support::{ServerProcess, cloud_event};

async fn get(client: &Client, server: &ServerProcess, path: &str) -> (u16, Value) {
    let response = client.get(server.url(path)).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Every item of a paged list, following `next_cursor` with pages of `limit`.
async fn all_pages(
    client: &Client,
    server: &ServerProcess,
    path: &str,
    limit: usize,
) -> Vec<Value> {
    let (mut items, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut url = format!("{path}{separator}limit={limit}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = get(client, server, &url).await;
        assert_eq!(status, 200, "{url}: {page}");
        let page_items = page["items"].as_array().unwrap();
        assert!(page_items.len() <= limit);
        items.extend(page_items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_model_answers_its_routes() {
    let server = ServerProcess::start("models = [\"all\"]\n").await;
    let client = Client::new();
    let mut batch: Vec<Value> = (2..=8)
        .map(|i| {
            cloud_event(
                "user.followed",
                json!({"followerId": format!("u-{i}"), "followeeId": "u-1"}),
            )
        })
        .collect();
    batch.push(cloud_event(
        "user.unfollowed",
        json!({"followerId": "u-5", "followeeId": "u-1"}),
    ));
    for (i, amount) in [500, 250, 125].iter().enumerate() {
        let payment = json!({"paymentId": format!("p-{i}"), "userId": "u-1", "amountMinor": amount.to_string(), "currency": "EUR"});
        batch.push(cloud_event("payment.received", payment));
    }
    batch.push(cloud_event("image.processed", json!({"imageId": "img-1", "userId": "u-1",
        "processed": {"url": "https://cdn.example/img-1.jpg", "contentType": "image/jpeg"}, "widthPx": 640, "heightPx": 480})));
    batch.push(cloud_event("tune.created", json!({"tuneId": "t-1", "userId": "u-1", "packId": "pack-1", "title": "Portraits", "baseModel": "sdxl"})));
    batch.push(cloud_event(
        "pack.images_updated",
        json!({"packId": "pack-1", "userId": "u-1", "revision": "2", "imageIds": ["img-1"]}),
    ));
    for (conversation, text) in [("c-1", "hi"), ("c-2", "hello"), ("c-1", "again")] {
        batch.push(cloud_event(
            "message.received",
            json!({"conversationId": conversation,
            "providerMessageId": format!("wamid.{text}"), "senderUserId": "u-1", "text": text}),
        ));
    }
    let response = client
        .post(server.url("/v1/events"))
        .header("content-type", "application/cloudevents-batch+json")
        .body(Value::Array(batch.clone()).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let last = batch.len() as u64;

    // Every model has applied the batch: its checkpoint is the last event
    // of its types (a filtered consumer never sees the others).
    let last_of = |types: &[&str]| {
        batch
            .iter()
            .rposition(|e| types.contains(&e["type"].as_str().unwrap()))
            .unwrap() as u64
            + 1
    };
    let expected = json!({
        "audit": last, "inbox": last_of(&["message.received"]),
        "gallery": last_of(&["image.processed", "tune.created", "pack.images_updated"]),
        "billing": last_of(&["payment.received"]),
        "notifications": last_of(&["user.followed", "user.unfollowed"]),
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, models) = get(&client, &server, "/v1/models").await;
        let models = models["models"].as_array().unwrap().clone();
        if models.len() == 5
            && models
                .iter()
                .all(|m| m["checkpoint"] == expected[m["name"].as_str().unwrap()])
        {
            break;
        }
        assert!(Instant::now() < deadline, "{models:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // notifications: counts, a paged follower list, the feed newest first.
    let (_, counts) = get(&client, &server, "/v1/models/notifications/users/u-1").await;
    assert_eq!(
        (counts["followers"].as_u64(), counts["following"].as_u64()),
        (Some(6), Some(0))
    );
    let followers = all_pages(
        &client,
        &server,
        "/v1/models/notifications/users/u-1/followers",
        4,
    )
    .await;
    assert_eq!(
        followers,
        ["u-2", "u-3", "u-4", "u-6", "u-7", "u-8"].map(|u| json!(u))
    );
    let feed = all_pages(
        &client,
        &server,
        "/v1/models/notifications/users/u-1/feed",
        3,
    )
    .await;
    let seqs: Vec<u64> = feed.iter().map(|i| i["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]) && !seqs.is_empty(),
        "{feed:?}"
    );

    // billing: balances, the ledger oldest first, a payment, a 404.
    let (_, balances) = get(&client, &server, "/v1/models/billing/users/u-1/balances").await;
    assert_eq!(
        balances["balances"],
        json!([{"currency": "EUR", "balance_minor": 875}])
    );
    let ledger = all_pages(&client, &server, "/v1/models/billing/users/u-1/ledger", 2).await;
    assert_eq!(
        ledger
            .iter()
            .map(|e| e["amount_minor"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [500, 250, 125]
    );
    let (status, payment) = get(&client, &server, "/v1/models/billing/payments/p-1").await;
    assert_eq!((status, payment["amount_minor"].as_i64()), (200, Some(250)));
    let (status, missing) = get(&client, &server, "/v1/models/billing/payments/p-404").await;
    assert_eq!(
        (status, missing["error"]["kind"].as_str()),
        (404, Some("NotFound"))
    );

    // gallery: images, the latest tune, the pack.
    let images = all_pages(&client, &server, "/v1/models/gallery/users/u-1/images", 10).await;
    assert_eq!(images[0]["image_id"], "img-1");
    let (_, tune) = get(&client, &server, "/v1/models/gallery/users/u-1/tune").await;
    assert_eq!(tune["tune_id"], "t-1");
    let (_, pack) = get(&client, &server, "/v1/models/gallery/packs/pack-1").await;
    assert_eq!(pack["revision"], 2);
    assert_eq!(
        get(&client, &server, "/v1/models/gallery/users/u-404/tune")
            .await
            .0,
        404
    );

    // inbox: conversations most recent first, unread, one conversation.
    let conversations = all_pages(
        &client,
        &server,
        "/v1/models/inbox/users/u-1/conversations",
        1,
    )
    .await;
    let ids: Vec<&str> = conversations
        .iter()
        .map(|c| c["conversation_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c-1", "c-2"]);
    let (_, unread) = get(&client, &server, "/v1/models/inbox/users/u-1/unread").await;
    assert_eq!(unread["unread"], 3);
    let (_, c1) = get(&client, &server, "/v1/models/inbox/conversations/c-1").await;
    assert_eq!(c1["last_text"], "again");

    // audit: an index lookup and a time range, paged; one event by id.
    let by_type = all_pages(
        &client,
        &server,
        "/v1/models/audit/events?type=user.followed",
        3,
    )
    .await;
    assert_eq!(by_type.len(), 7);
    let everything = all_pages(
        &client,
        &server,
        "/v1/models/audit/events?from=2000-01-01T00:00:00Z",
        4,
    )
    .await;
    assert_eq!(everything.len() as u64, last);
    let id = batch[0]["id"].as_str().unwrap();
    let (status, entry) = get(&client, &server, &format!("/v1/models/audit/events/{id}")).await;
    assert_eq!((status, entry["seq"].as_u64()), (200, Some(1)));

    // Bad parameters: status and kind.
    let cases = [
        (
            "/v1/models/notifications/users/u-1/followers?limit=0",
            400,
            "InvalidQuery",
        ),
        (
            "/v1/models/notifications/users/u-1/followers?limit=many",
            400,
            "InvalidQuery",
        ),
        (
            "/v1/models/notifications/users/u-1/followers?color=red",
            400,
            "InvalidQuery",
        ),
        (
            "/v1/models/notifications/users/u-1/feed?cursor=yesterday",
            400,
            "InvalidCursor",
        ),
        ("/v1/models/audit/events?cursor=x", 400, "InvalidQuery"),
        (
            "/v1/models/audit/events?type=user.followed&cursor=12",
            400,
            "InvalidCursor",
        ),
        ("/v1/models/audit/events?type=a&key=b", 400, "InvalidQuery"),
        (
            "/v1/models/audit/events?from=last-tuesday",
            400,
            "InvalidQuery",
        ),
        ("/v1/models/audit/events/not-an-id", 404, "NotFound"),
    ];
    for (path, status, kind) in cases {
        let (got, body) = get(&client, &server, path).await;
        assert_eq!(
            (got, body["error"]["kind"].as_str()),
            (status, Some(kind)),
            "{path}: {body}"
        );
    }
}

//! Webhook ingest against the real `backbone-server` process, with the
//! three shipped mappings and realistic deliveries: WhatsApp Cloud API
//! messages (fan-out over entries, changes and messages), an image
//! provider's tune, images and pack callbacks, a payment provider's
//! payment and refund. Signatures are checked (401 `BadSignature`),
//! retried deliveries are duplicates, deliveries with nothing to map are
//! 200 with no events, and the read models show the result.

mod support;

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac as _};
use reqwest::Client;
use serde_json::{Value, json};
use sha2::Sha256;
use support::ServerProcess;

const SECRET: &str = "whsec-test-6f1d";

fn sign(body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

struct Hooks<'a> {
    client: Client,
    server: &'a ServerProcess,
}

impl Hooks<'_> {
    /// Delivers `body` to `path` with `header: prefix + HMAC`.
    async fn deliver(&self, path: &str, header: &str, prefix: &str, body: &Value) -> (u16, Value) {
        let body = body.to_string();
        let response = self
            .client
            .post(self.server.url(path))
            .header("content-type", "application/json")
            .header(header, format!("{prefix}{}", sign(&body)))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        self.client
            .get(self.server.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

fn whatsapp_delivery() -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
    "messaging_product": "whatsapp",
    "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
    "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
    "messages": [
        {"from": "16505551234", "id": "wamid.HBgLMTY1MDUwNzY1MjAVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
         "timestamp": "1749416383", "type": "text", "text": {"body": "Does it come in another color?"}},
        {"from": "16505551234", "id": "wamid.HBgLMTY1MDUwNzY1MjAVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RwA=",
         "timestamp": "1749416390", "type": "text", "text": {"body": "And in XL?"},
         "context": {"from": "15550783881", "id": "wamid.HBgLMTU1NTA3ODM4ODEVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"}}
    ]}}]}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_mappings_ingest_realistic_deliveries() {
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let server = ServerProcess::start(&format!(
        "models = [\"inbox\", \"gallery\", \"billing\"]\n\
         [[webhooks]]\nname = \"whatsapp\"\nmapping = \"whatsapp-cloud\"\nsecret_file = {secret_file:?}\nsource = \"message-service\"\n\
         [[webhooks]]\nname = \"images\"\nmapping = \"image-callback\"\nsecret_file = {secret_file:?}\n\
         [[webhooks]]\nname = \"payments\"\nmapping = \"payment-provider\"\nsecret_file = {secret_file:?}\n"
    ))
    .await;
    let hooks = Hooks {
        client: Client::new(),
        server: &server,
    };

    // WhatsApp: two messages in one delivery, then the same delivery retried.
    let wa = whatsapp_delivery();
    let (status, body) = hooks
        .deliver(
            "/v1/webhooks/whatsapp",
            "x-hub-signature-256",
            "sha256=",
            &wa,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let results = body["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 2);
    assert!(
        results
            .iter()
            .all(|r| r["duplicate"] == false
                && r["subject"] == "events.message.received.16505551234")
    );
    let (status, retried) = hooks
        .deliver(
            "/v1/webhooks/whatsapp",
            "x-hub-signature-256",
            "sha256=",
            &wa,
        )
        .await;
    assert_eq!(status, 201, "{retried}");
    for (first, again) in results.iter().zip(retried["results"].as_array().unwrap()) {
        assert_eq!(
            (&again["duplicate"], &again["seq"], &again["id"]),
            (&json!(true), &first["seq"], &first["id"])
        );
    }
    let statuses = json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": {
        "statuses": [{"id": "wamid.x", "status": "delivered", "timestamp": "1749416400", "recipient_id": "16505551234"}]}}]}]});
    let (status, body) = hooks
        .deliver(
            "/v1/webhooks/whatsapp",
            "x-hub-signature-256",
            "sha256=",
            &statuses,
        )
        .await;
    assert_eq!(
        (status, body["results"].as_array().map(Vec::len)),
        (200, Some(0))
    );

    // Signatures and bad deliveries.
    let wrong = hooks
        .client
        .post(server.url("/v1/webhooks/whatsapp"))
        .header(
            "x-hub-signature-256",
            format!("sha256={}", sign("something else")),
        )
        .body(wa.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["error"]["kind"],
        "BadSignature"
    );
    let unsigned = hooks
        .client
        .post(server.url("/v1/webhooks/whatsapp"))
        .body(wa.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let (status, body) = hooks
        .deliver("/v1/webhooks/whatsapp", "x-hub-signature-256", "", &wa)
        .await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (401, Some("BadSignature"))
    );
    let mut no_id = whatsapp_delivery();
    no_id["entry"][0]["changes"][0]["value"]["messages"][0]
        .as_object_mut()
        .unwrap()
        .remove("id");
    let (status, body) = hooks
        .deliver(
            "/v1/webhooks/whatsapp",
            "x-hub-signature-256",
            "sha256=",
            &no_id,
        )
        .await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (422, Some("Unmappable"))
    );
    let (status, body) = hooks
        .deliver("/v1/webhooks/nope", "x-signature", "", &wa)
        .await;
    assert_eq!(
        (status, body["error"]["kind"].as_str()),
        (404, Some("NotFound"))
    );
    let text = "not json";
    let response = hooks
        .client
        .post(server.url("/v1/webhooks/payments"))
        .header("x-signature", format!("sha256={}", sign(text)))
        .body(text)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"]["kind"],
        "MalformedRequest"
    );

    // The image provider: a trained tune, two processed images, a pack update.
    let images = "/v1/webhooks/images?user_id=u-1";
    let tune = json!({"tune": {"id": 1504944, "title": "Portraits of Sam", "name": "man", "base_model": "sdxl",
        "status": "trained", "pack_id": 77, "image_ids": ["9001", "9002"], "created_at": "2026-12-01T10:00:00Z"}});
    let (status, body) = hooks.deliver(images, "x-signature", "", &tune).await;
    assert_eq!(status, 201, "{body}");
    let prompt = json!({"prompt": {"id": 5551, "tune_id": 1504944, "pipeline": "headshots-v2", "updated_at": "2026-12-01T10:05:00Z",
        "images": [
            {"id": 9001, "url": "https://cdn.example/9001.jpg", "content_type": "image/jpeg", "width": 1024, "height": 1024},
            {"id": 9002, "url": "https://cdn.example/9002.jpg", "content_type": "image/jpeg", "width": 1024, "height": 768}]}});
    let (status, body) = hooks.deliver(images, "x-signature", "", &prompt).await;
    assert_eq!(
        (status, body["results"].as_array().map(Vec::len)),
        (201, Some(2)),
        "{body}"
    );
    let pack = json!({"pack": {"id": 77, "revision": 2, "image_ids": ["9001", "9002"], "added_image_ids": ["9002"],
        "removed_image_ids": [], "updated_at": "2026-12-01T10:06:00Z"}});
    let (status, body) = hooks.deliver(images, "x-signature", "", &pack).await;
    assert_eq!(status, 201, "{body}");

    // The payment provider: a payment, a refund, and an event type it does not map.
    let paid = json!({"id": "evt_1Q2w3E4r", "type": "payment.succeeded", "created": 1764756000, "data": {
        "id": "pi_3Q9xYz", "payment_id": "pay-01", "amount": 1999, "currency": "EUR",
        "metadata": {"user_id": "u-1", "sku": "pack-40"}}});
    let refunded = json!({"id": "evt_5T6y7U8i", "type": "payment.refunded", "created": 1764759600, "data": {
        "refund_id": "re-01", "payment_id": "pay-01", "amount": 500, "currency": "EUR",
        "reason": "requested_by_customer", "metadata": {"user_id": "u-1"}}});
    let disputed =
        json!({"id": "evt_9", "type": "dispute.created", "created": 1764760000, "data": {}});
    for (event, status) in [(&paid, 201), (&refunded, 201), (&disputed, 200)] {
        let (got, body) = hooks
            .deliver("/v1/webhooks/payments", "x-signature", "sha256=", event)
            .await;
        assert_eq!(got, status, "{body}");
    }

    // The read models: inbox, gallery and billing as the deliveries say.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let balances = hooks.get("/v1/models/billing/users/u-1/balances").await;
        let pack = hooks.get("/v1/models/gallery/packs/77").await;
        let unread = hooks
            .get("/v1/models/inbox/users/address:16505551234/unread")
            .await;
        if balances["balances"] == json!([{"currency": "EUR", "balance_minor": 1499}])
            && pack["revision"] == 2
            && unread["unread"] == 2
        {
            break;
        }
        assert!(Instant::now() < deadline, "{balances} {pack} {unread}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let images = hooks.get("/v1/models/gallery/users/u-1/images").await;
    let ids: Vec<&str> = images["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["image_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["9001", "9002"]);
    assert_eq!(
        hooks.get("/v1/models/gallery/users/u-1/tune").await["tune_id"],
        "1504944"
    );
    let conversation = hooks
        .get("/v1/models/inbox/conversations/16505551234")
        .await;
    assert_eq!(conversation["last_text"], "And in XL?");
    assert!(!server.log().contains(SECRET));
}

//! A message whose header block the NATS client cannot parse (here a header
//! value with a raw 0xFF byte, which any NATS client can publish and
//! nats-server stores) against a real nats-server: every read model that
//! owns it dead-letters it with its original bytes and moves past it, the
//! events around it apply, reads hand it out in its place, a rebuild reaches
//! the live state, and the adapter's main connection keeps working.

mod common;

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::TcpStream,
    sync::Arc,
    time::Duration,
};

use backbone_broker::{
    Broker, ReadRequest,
    stream::{DEAD_LETTER_STREAM, EVENT_STREAM},
};
use backbone_consumers::{
    Metrics, ProjectionRunner, ProjectionStore, RuntimeConfig,
    dead_letter::{DLQ_CONSUMER, DLQ_ERROR, DLQ_RAW_HEADERS},
    model::ReadModel,
    models::{Audit, Billing, Notifications},
    shutdown_channel,
};
use backbone_testkit::NatsServer;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use common::*;
use futures::StreamExt as _;

/// The header block of the poison message: valid except for one byte.
const POISON_HEADERS: &[u8] = b"NATS/1.0\r\nce-id: caf\xff\r\nce-type: user.followed\r\n\r\n";

/// Publishes one message with `headers` as raw bytes, on a plain socket
/// (async-nats only writes valid UTF-8 headers), and waits for the server's
/// PONG so it is stored before returning.
fn publish_raw(port: u16, subject: &str, headers: &[u8], payload: &[u8]) {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(socket.try_clone().unwrap());
    let mut info = String::new();
    reader.read_line(&mut info).unwrap();
    assert!(info.starts_with("INFO"), "{info}");
    let mut frame = Vec::new();
    frame.extend_from_slice(
        b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}\r\n",
    );
    frame.extend_from_slice(
        format!(
            "HPUB {subject} {} {}\r\n",
            headers.len(),
            headers.len() + payload.len()
        )
        .as_bytes(),
    );
    frame.extend_from_slice(headers);
    frame.extend_from_slice(payload);
    frame.extend_from_slice(b"\r\nPING\r\n");
    socket.write_all(&frame).unwrap();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(!line.starts_with("-ERR"), "{line}");
        if line.starts_with("PONG") {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unparseable_header_is_dead_lettered_and_passed_by_every_consumer() {
    let server = NatsServer::new();
    let broker: Arc<dyn Broker> = Arc::new(jetstream(server.url()).await);
    // 1: a follow; 2: the poison (a follow's subject); 3: another follow;
    // 4: a payment, after it.
    let before = follow("u-1", "u-2");
    publish_all(broker.as_ref(), std::slice::from_ref(&before)).await;
    let poison_payload = follow("u-3", "u-4").payload.clone();
    publish_raw(
        server.port(),
        "events.user.followed.u-3",
        POISON_HEADERS,
        &poison_payload,
    );
    let after = vec![follow("u-5", "u-6"), payment("u-5", "p-1", 250)];
    publish_all(broker.as_ref(), &after).await;

    let dir = tempfile::tempdir().unwrap();
    let models: Vec<Arc<dyn ReadModel>> =
        vec![Arc::new(Notifications), Arc::new(Audit), Arc::new(Billing)];
    let metrics = Metrics::new();
    let (trigger, shutdown) = shutdown_channel();
    let mut stores = Vec::new();
    let mut handles = Vec::new();
    for model in &models {
        let store = ProjectionStore::open(dir.path().join(model.name())).unwrap();
        let config = RuntimeConfig {
            // Longer than the test: a delivery lost in flight must not be
            // waited for.
            ack_wait: Duration::from_secs(120),
            ..fast_config(model.name())
        };
        let runner = ProjectionRunner::new(
            broker.clone(),
            model.clone(),
            store.clone(),
            config,
            &metrics,
        );
        handles.push(tokio::spawn(runner.run(shutdown.clone())));
        stores.push(store);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let wanted = [3u64, 4, 4];
    while stores
        .iter()
        .zip(wanted)
        .any(|(s, w)| s.checkpoint().unwrap() < w)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "checkpoints stuck at {:?}",
            stores
                .iter()
                .map(|s| s.checkpoint().unwrap())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        metrics.health().report().healthy,
        "{:?}",
        metrics.health().report()
    );
    trigger.trigger();
    for handle in handles {
        handle.await.unwrap().unwrap();
    }

    // The valid events around the poison applied.
    assert_eq!(
        Notifications::followers(&stores[0], "u-2").unwrap(),
        vec!["u-1".to_owned()]
    );
    assert_eq!(
        Notifications::followers(&stores[0], "u-6").unwrap(),
        vec!["u-5".to_owned()]
    );
    assert_eq!(Billing::balance(&stores[2], "u-5", "USD").unwrap(), 250);

    // One letter per model that owns the message (notifications takes
    // user.followed, audit takes everything; billing skips it), with the
    // original header block byte for byte.
    let info = broker.stream_info(DEAD_LETTER_STREAM).await.unwrap();
    let mut letters = Vec::new();
    let mut read = broker
        .read(DEAD_LETTER_STREAM, ReadRequest::default())
        .await
        .unwrap();
    while let Some(letter) = read.next().await {
        letters.push(letter.unwrap());
    }
    assert_eq!(letters.len() as u64, info.messages);
    let mut consumers: Vec<_> = letters
        .iter()
        .map(|l| l.headers.get(DLQ_CONSUMER).unwrap().to_owned())
        .collect();
    consumers.sort();
    assert_eq!(consumers, ["audit", "notifications"]);
    for letter in &letters {
        assert_eq!(letter.payload, poison_payload);
        let raw = STANDARD
            .decode(letter.headers.get(DLQ_RAW_HEADERS).unwrap())
            .unwrap();
        assert_eq!(raw, POISON_HEADERS);
        assert!(letter.headers.get(DLQ_ERROR).unwrap().contains("UTF-8"));
    }

    // Nothing is left pending at the server: the poison was termed.
    for model in &models {
        let info = broker
            .consumer_info(EVENT_STREAM, model.name())
            .await
            .unwrap();
        assert_eq!(info.num_ack_pending, 0, "{info:?}");
        assert_eq!(info.ack_floor_stream_seq, 4, "{info:?}");
    }

    // A read hands the poison out in its place, then goes on.
    let mut read = broker
        .read(EVENT_STREAM, ReadRequest::default())
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Some(message) = read.next().await {
        let message = message.unwrap();
        seen.push((message.seq, message.malformed_headers.is_some()));
    }
    assert_eq!(seen, [(1, false), (2, true), (3, false), (4, false)]);
    let got = broker.get(EVENT_STREAM, 2).await.unwrap();
    assert_eq!(got.malformed_headers.unwrap().raw.as_ref(), POISON_HEADERS);

    // A rebuild reaches the live state; the main connection still works.
    for (model, store) in models.iter().zip(&stores) {
        assert_eq!(
            scratch_digest(broker.as_ref(), model.as_ref(), 4).await,
            store.digest().unwrap(),
            "{}",
            model.name()
        );
    }
    publish_all(broker.as_ref(), &[follow("u-7", "u-8")]).await;
}

//! The JetStream adapter's publish overhead: `JetStreamBroker::publish_batch`
//! against raw async-nats JetStream publishes of the same messages (same
//! subjects, headers, msg ids and payloads) with the same window, on one
//! fresh nats-server started by the testkit.
//!
//! ```text
//! cargo run --release -p backbone-broker --example jetstream_publish_overhead -- \
//!     --events 100000 --size 128 --rounds 3
//! ```
//!
//! Prints events/s of each side per round and the adapter/raw ratio. The
//! headers imitate an envelope's CloudEvents headers, so the ratio isolates
//! the adapter's own cost from what headers cost the server.

use std::{collections::VecDeque, time::Instant};

use async_nats::{HeaderMap, jetstream::context::PublishAckFuture};
use backbone_broker::{
    Broker, OutboundMessage, StreamConfig,
    jetstream::{JetStreamBroker, JetStreamOptions},
};
use backbone_schemas::Headers;
use backbone_testkit::NatsServer;
use bytes::Bytes;

/// Messages per `publish_batch` call, as `replay-tool bench` hands them.
const CHUNK: usize = 4_096;
/// Acks outstanding at once on both sides.
const WINDOW: usize = 256;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
        .unwrap_or(default)
}

/// The `n`th message of round `round`: a unique msg id, so no publish is a
/// duplicate of an earlier one.
fn message(round: usize, n: usize, payload: &Bytes, raw: bool) -> OutboundMessage {
    let prefix = if raw { "raw" } else { "events" };
    let id = format!("{round:04}-{n:012}-{}", if raw { "r" } else { "a" });
    let mut headers = Headers::new();
    headers.insert("ce-specversion", "1.0");
    headers.insert("ce-type", "message.received");
    headers.insert("ce-source", "bench/publish-overhead");
    headers.insert("ce-id", id.clone());
    headers.insert("ce-time", "2026-01-01T00:00:00Z");
    headers.insert("content-type", "application/protobuf");
    headers.insert("ce-correlationid", format!("corr-{n}"));
    OutboundMessage::new(
        format!("{prefix}.message.received.c-{:04}", n % 1_000),
        payload.clone(),
    )
    .with_headers(headers)
    .with_msg_id(id)
}

fn to_raw(message: &OutboundMessage) -> (String, HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    for (name, value) in message.stored_headers().iter() {
        headers.append(name, value);
    }
    (message.subject.clone(), headers, message.payload.clone())
}

async fn adapter_round(broker: &JetStreamBroker, messages: Vec<OutboundMessage>) -> f64 {
    let events = messages.len();
    let mut chunks = Vec::new();
    let mut rest = messages;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(CHUNK));
        chunks.push(std::mem::replace(&mut rest, tail));
    }
    let started = Instant::now();
    for chunk in chunks {
        for result in broker.publish_batch(chunk).await {
            result.expect("the adapter's publish is acknowledged");
        }
    }
    events as f64 / started.elapsed().as_secs_f64()
}

async fn raw_round(
    context: &async_nats::jetstream::Context,
    messages: Vec<(String, HeaderMap, Bytes)>,
) -> f64 {
    let events = messages.len();
    let started = Instant::now();
    let mut in_flight: VecDeque<PublishAckFuture> = VecDeque::with_capacity(WINDOW);
    for (subject, headers, payload) in messages {
        if in_flight.len() >= WINDOW
            && let Some(ack) = in_flight.pop_front()
        {
            ack.await.expect("the raw publish is acknowledged");
        }
        let ack = context
            .publish_with_headers(subject, headers, payload)
            .await
            .expect("the raw publish is sent");
        in_flight.push_back(ack);
    }
    for ack in in_flight {
        ack.await.expect("the raw publish is acknowledged");
    }
    events as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let events = arg("--events", 100_000);
    let size = arg("--size", 128);
    let rounds = arg("--rounds", 3);
    let server = NatsServer::new();
    let broker = JetStreamBroker::connect(JetStreamOptions {
        urls: vec![server.url()],
        max_in_flight: WINDOW,
        ..Default::default()
    })
    .await
    .expect("connects");
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .expect("EVENTS");
    broker
        .ensure_stream(&StreamConfig {
            name: "RAW".into(),
            subjects: vec!["raw.>".into()],
            ..StreamConfig::event_log()
        })
        .await
        .expect("RAW");
    let raw_client = async_nats::connect(server.url())
        .await
        .expect("raw connects");
    let context = async_nats::jetstream::new(raw_client);
    let payload = Bytes::from(vec![b'x'; size]);

    let mut ratios = Vec::new();
    for round in 0..rounds {
        let raw_messages = (0..events)
            .map(|n| to_raw(&message(round, n, &payload, true)))
            .collect();
        let raw = raw_round(&context, raw_messages).await;
        let adapter_messages = (0..events)
            .map(|n| message(round, n, &payload, false))
            .collect();
        let adapter = adapter_round(&broker, adapter_messages).await;
        let ratio = adapter / raw;
        ratios.push(ratio);
        println!(
            "round {round}: {size} B, raw {raw:.0}/s, adapter {adapter:.0}/s, ratio {ratio:.2}"
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!("median ratio {:.2}", ratios[ratios.len() / 2]);
}

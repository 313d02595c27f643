//! Throughput of the embedded log, phase by phase, on a fresh temp store.
//!
//! ```text
//! cargo run --release -p backbone-broker --example embedded_throughput -- --events 200000
//! ```
//!
//! Prints events/s for: durable `publish_batch` (batches of 1000, ~300-byte
//! events with message ids), single durable publishes from 64 concurrent
//! publishers, an ordered `read` of the whole log, and a durable consumer
//! fetching 500 at a time and acking each delivery, then the time to reopen
//! the store. `--memory` runs the in-memory adapter instead.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use backbone_broker::{
    Broker, ConsumerConfig, OutboundMessage, ReadRequest, StreamConfig,
    embedded::{EmbeddedBroker, EmbeddedOptions},
    memory::MemoryBroker,
};
use futures::StreamExt;

const BATCH: usize = 1000;
const CONCURRENT_PUBLISHERS: usize = 64;
const FETCH: usize = 500;

fn arg(name: &str, default: u64) -> u64 {
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

/// A ~300-byte event: subject, an id header and a 220-byte payload.
fn event(i: u64) -> OutboundMessage {
    let payload = vec![b'x'; 220];
    OutboundMessage::new(format!("events.user.registered.u-{}", i % 5000), payload)
        .with_msg_id(format!("0198f0c2-7a31-7000-8000-{i:012}"))
        .with_headers([("ce-type", "user.registered")].into_iter().collect())
}

fn rate(label: &str, events: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{label:<40} {events:>9} events in {secs:>7.3} s = {:>10.0} events/s",
        events as f64 / secs
    );
}

#[tokio::main]
async fn main() {
    let events = arg("--events", 200_000);
    let singles = arg("--singles", 20_000);
    let memory = std::env::args().any(|a| a == "--memory");
    let dir = tempfile::tempdir().expect("temp dir");
    let broker: Arc<dyn Broker> = if memory {
        Arc::new(MemoryBroker::new())
    } else {
        Arc::new(
            EmbeddedBroker::open(EmbeddedOptions {
                path: dir.path().join("log"),
                ..Default::default()
            })
            .expect("open embedded log"),
        )
    };
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .expect("stream");

    let started = Instant::now();
    let mut next = 0u64;
    while next < events {
        let batch: Vec<_> = (next..(next + BATCH as u64).min(events))
            .map(event)
            .collect();
        next += batch.len() as u64;
        for r in broker.publish_batch(batch).await {
            r.expect("publish");
        }
    }
    rate("publish_batch (1000/batch, durable)", events, started);

    let started = Instant::now();
    let per_task = singles / CONCURRENT_PUBLISHERS as u64;
    let tasks: Vec<_> = (0..CONCURRENT_PUBLISHERS as u64)
        .map(|t| {
            let broker = broker.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    let n = events + t * per_task + i;
                    broker.publish(event(n)).await.expect("publish");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("publisher task");
    }
    let total = events + per_task * CONCURRENT_PUBLISHERS as u64;
    rate(
        "publish (64 concurrent, durable)",
        per_task * CONCURRENT_PUBLISHERS as u64,
        started,
    );

    let started = Instant::now();
    let mut read = broker
        .read("EVENTS", ReadRequest::default())
        .await
        .expect("read");
    let mut count = 0u64;
    while let Some(item) = read.next().await {
        item.expect("message");
        count += 1;
    }
    assert_eq!(count, total, "read saw every message");
    rate("read (whole log, ordered)", count, started);

    let started = Instant::now();
    let consumer = broker
        .consumer("EVENTS", ConsumerConfig::durable("throughput"))
        .await
        .expect("consumer");
    let mut acked = 0u64;
    while acked < total {
        let batch = consumer
            .fetch(FETCH, Duration::from_millis(100))
            .await
            .expect("fetch");
        for delivery in batch {
            delivery.ack().await.expect("ack");
            acked += 1;
        }
    }
    rate("consumer fetch(500) + ack each", acked, started);
    broker.close().await.expect("close");
    drop(consumer);
    drop(broker);
    if !memory {
        // Every message is within the duplicate window, so the open scans
        // the whole log to rebuild it: the worst case.
        let started = Instant::now();
        let reopened = EmbeddedBroker::open(EmbeddedOptions {
            path: dir.path().join("log"),
            ..Default::default()
        })
        .expect("reopen");
        rate("reopen (dedup window rebuilt)", total, started);
        drop(reopened);
    }
}

//! Soak: fixed-rate publishing into a real nats-server for a set time, with
//! the consumer and the server killed at random moments, then a full audit.
//!
//! ```text
//! cargo run -p backbone-broker --example soak -- --duration 60 --rate 200
//! ```
//!
//! One event in 50 is malformed on purpose (a payload that is not the event
//! message); the consumer dead-letters it with its decode error as reason.
//! Prints one table: published, acknowledged, applied, dead-lettered, lost.
//! Exits non-zero when anything acknowledged was lost. Loopback only.

use std::{
    collections::BTreeSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use backbone_broker::{
    Broker, ConsumerConfig, OutboundMessage, ReadRequest, StreamConfig,
    jetstream::{JetStreamBroker, JetStreamOptions},
};
use backbone_schemas::{Envelope, EventContext, sample};
use backbone_testkit::NatsServer;
use futures::StreamExt;

#[derive(Default)]
struct Tally {
    published: AtomicU64,
    acked: Mutex<BTreeSet<String>>,
    applied: Mutex<BTreeSet<String>>,
    dead_lettered: Mutex<BTreeSet<String>>,
    consumer_restarts: AtomicU64,
    server_kills: AtomicU64,
}

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

fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

async fn publisher(
    broker: Arc<JetStreamBroker>,
    rate: u64,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    while !stop.load(Ordering::Acquire) {
        tick.tick().await;
        let envelope = Envelope::from_event(&sample::user_registered(), EventContext::new("soak"))
            .expect("valid event");
        let id = envelope.id.to_string();
        let payload = if n % 50 == 49 {
            bytes::Bytes::from_static(b"\xff\xff not a protobuf message")
        } else {
            envelope.payload.clone()
        };
        let message = OutboundMessage::new(envelope.subject(), payload)
            .with_headers(envelope.headers())
            .with_msg_id(id.clone());
        tally.published.fetch_add(1, Ordering::Relaxed);
        // Retried with the same id until acknowledged: the dedup window makes
        // a retry of a stored message a duplicate, never a second copy.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if broker.publish(message.clone()).await.is_ok() {
                tally.acked.lock().unwrap().insert(id.clone());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        n += 1;
    }
}

async fn consumer(broker: Arc<JetStreamBroker>, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let Ok(consumer) = broker
        .consumer(
            "EVENTS",
            ConsumerConfig {
                ack_wait: Duration::from_secs(2),
                ..ConsumerConfig::durable("soak")
            },
        )
        .await
    else {
        return;
    };
    while !stop.load(Ordering::Acquire) {
        let Ok(batch) = consumer.fetch(100, Duration::from_millis(300)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        for delivery in batch {
            let m = &delivery.message;
            let id = m.headers.get("ce-id").unwrap_or_default().to_owned();
            match Envelope::decode(&m.subject, &m.headers, &m.payload) {
                Ok(_) => {
                    if delivery.ack().await.is_ok() {
                        tally.applied.lock().unwrap().insert(id);
                    }
                }
                Err(reason) => {
                    let letter = OutboundMessage::new(
                        format!("deadletter.soak.{}", m.subject),
                        m.payload.clone(),
                    )
                    .with_headers(m.headers.clone())
                    .with_msg_id(format!("soak:{}", m.seq));
                    if broker.publish(letter).await.is_ok()
                        && delivery.term(reason.to_string()).await.is_ok()
                    {
                        tally.dead_lettered.lock().unwrap().insert(id);
                    }
                }
            }
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let duration = Duration::from_secs(arg("--duration", 30));
    let rate = arg("--rate", 200);
    let mut random = arg("--seed", 0x5eed) | 1;
    let mut server = NatsServer::new();
    let broker = Arc::new(
        JetStreamBroker::connect(JetStreamOptions {
            urls: vec![server.url()],
            publish_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(2),
            ..Default::default()
        })
        .await
        .expect("connect"),
    );
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .expect("EVENTS");
    broker
        .ensure_stream(&StreamConfig::dead_letters())
        .await
        .expect("DEADLETTER");

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = tokio::spawn(publisher(broker.clone(), rate, stop.clone(), tally.clone()));
    let stop_consumer = Arc::new(AtomicBool::new(false));
    let mut consuming = tokio::spawn(consumer(
        broker.clone(),
        stop_consumer.clone(),
        tally.clone(),
    ));

    let started = Instant::now();
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(
            1_000 + next_random(&mut random) % 4_000,
        ))
        .await;
        if next_random(&mut random).is_multiple_of(2) {
            consuming.abort();
            tally.consumer_restarts.fetch_add(1, Ordering::Relaxed);
            consuming = tokio::spawn(consumer(
                broker.clone(),
                stop_consumer.clone(),
                tally.clone(),
            ));
        } else {
            let down = Duration::from_millis(50 + next_random(&mut random) % 500);
            tokio::task::block_in_place(|| {
                server.kill9();
                std::thread::sleep(down);
                server.start();
            });
            tally.server_kills.fetch_add(1, Ordering::Relaxed);
        }
    }
    stop.store(true, Ordering::Release);
    publishing.await.expect("publisher");
    // Let the consumer catch up, then stop it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let info = broker.consumer_info("EVENTS", "soak").await;
        if info.is_ok_and(|i| i.num_pending == 0 && i.num_ack_pending == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_consumer.store(true, Ordering::Release);
    let _ = consuming.await;

    let mut stored = BTreeSet::new();
    let mut reader = broker
        .read("EVENTS", ReadRequest::default())
        .await
        .expect("read");
    while let Some(message) = reader.next().await {
        let message = message.expect("stored entry");
        stored.insert(message.headers.get("ce-id").unwrap_or_default().to_owned());
    }
    let acked = tally.acked.lock().unwrap().clone();
    let applied = tally.applied.lock().unwrap().clone();
    let dead = tally.dead_lettered.lock().unwrap().clone();
    let lost_in_log = acked.iter().filter(|id| !stored.contains(*id)).count();
    let unhandled = acked
        .iter()
        .filter(|id| !applied.contains(*id) && !dead.contains(*id))
        .count();
    let lost = lost_in_log + unhandled;
    println!(
        "| soak | seconds | rate/s | published | acknowledged | applied | dead-lettered | lost | server kills | consumer restarts |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| jetstream | {} | {rate} | {} | {} | {} | {} | {lost} | {} | {} |",
        duration.as_secs(),
        tally.published.load(Ordering::Relaxed),
        acked.len(),
        applied.len(),
        dead.len(),
        tally.server_kills.load(Ordering::Relaxed),
        tally.consumer_restarts.load(Ordering::Relaxed),
    );
    if lost > 0 {
        eprintln!(
            "LOST: {lost_in_log} acknowledged events missing from the log, {unhandled} never applied nor dead-lettered"
        );
        std::process::exit(1);
    }
}

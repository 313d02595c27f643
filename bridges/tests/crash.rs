//! `backbone-bridge` killed with SIGKILL at random points, per broker and
//! direction: every event arrives, and the copies beyond one are exactly
//! redeliveries of the same message id (outbound), or are dropped by the
//! log (inbound: each event stored once).
//!
//! `BACKBONE_BRIDGE_CRASH_TRIALS` sets the kills per scenario (default
//! 20; `scripts/reliability` runs more). Each scenario prints one
//! `RELIABILITY` line for `scripts/reliability`'s table.

mod support;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use backbone_schemas::{Envelope, cloudevents};
use backbone_testkit::{RabbitMq, Redis};
use futures::StreamExt as _;
use lapin::{
    Connection, ConnectionProperties,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
        QueueDeclareOptions,
    },
    types::FieldTable,
};
use redis::AsyncCommands as _;
use support::*;

/// Events per scenario: enough that kills land mid-stream.
const EVENTS: usize = 4_000;

fn trials() -> usize {
    std::env::var("BACKBONE_BRIDGE_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// A deterministic pseudo-random sequence (no dependency for one test).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

/// The config of one bridge over the embedded log in `dir/data`.
fn write_config(dir: &Path, bridge: &str) -> PathBuf {
    let data = dir.join("data");
    let path = dir.join("bridges.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = {data:?}\n[[bridges]]\nbatch_size = 64\nreconnect_base = \"20ms\"\nreconnect_max = \"200ms\"\n{bridge}"
        ),
    )
    .unwrap();
    path
}

/// A bridge process, killed when dropped (a failing test leaves none).
struct Bridge(Child);

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(config: &Path) -> Bridge {
    Bridge(
        Command::new(env!("CARGO_BIN_EXE_backbone-bridge"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

/// Starts the bridge and kills it with SIGKILL after a random 30-400 ms,
/// `trials` times.
fn kill_at_random_points(config: &Path, seed: u64) {
    let mut random = Lcg(seed);
    for _ in 0..trials() {
        let child = spawn(config);
        std::thread::sleep(Duration::from_millis(30 + random.below(370)));
        drop(child);
    }
}

/// Runs the bridge until `done` holds (at most two minutes), then stops it
/// with SIGTERM; it must exit 0.
async fn run_until<F, Fut>(config: &Path, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut child = spawn(config);
    let deadline = Instant::now() + Duration::from_secs(120);
    // Long enough for the bridge to start and take what is left.
    tokio::time::sleep(Duration::from_secs(1)).await;
    while !done().await {
        assert!(Instant::now() < deadline, "the bridge did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.0.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "backbone-bridge exited with {status}");
}

/// Prepares the embedded log in `dir/data/log` with `events`, then closes
/// it for the bridge process.
async fn log_with(dir: &Path, events: &[Envelope]) {
    let log = open_log(&dir.join("data").join("log")).await;
    publish(log.as_ref(), events).await;
    log.close().await.unwrap();
}

/// Checks that every event arrived and every copy is the same message;
/// prints the RELIABILITY line.
fn report_outbound(events: &[Envelope], arrived: &[(String, Vec<u8>)]) {
    let originals: BTreeMap<String, &Envelope> =
        events.iter().map(|e| (e.id.to_string(), e)).collect();
    let mut copies: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, body) in arrived {
        let original = originals
            .get(id)
            .unwrap_or_else(|| panic!("{id} was never published"));
        assert_eq!(&body[..], &original.payload[..], "a copy of {id} differs");
        *copies.entry(id.as_str()).or_default() += 1;
    }
    let lost = events.len() - copies.len();
    let duplicates = arrived.len() - copies.len();
    println!(
        "RELIABILITY acked={} stored={} lost={lost} duplicates={duplicates} not_consumed=0 publish_errors=0",
        events.len(),
        copies.len()
    );
    assert_eq!(lost, 0, "events lost");
}

async fn report_inbound(dir: &Path, events: &[Envelope]) {
    let log = open_log(&dir.join("data").join("log")).await;
    let stored = stored_events(log.as_ref()).await.len();
    println!(
        "RELIABILITY acked={} stored={stored} lost={} duplicates=0 not_consumed=0 publish_errors=0",
        events.len(),
        events.len().saturating_sub(stored)
    );
    assert_each_once(log.as_ref(), events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_outbound_killed_at_random_points_loses_nothing() {
    let rabbit = RabbitMq::new();
    let connection = Connection::connect(&rabbit.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    bound_queue(&channel, "downstream").await;
    let dir = tempfile::tempdir().unwrap();
    let events = events(EVENTS);
    log_with(dir.path(), &events).await;
    let config = write_config(
        dir.path(),
        &format!(
            "name = \"out\"\ndirection = \"outbound\"\nbroker = \"rabbitmq\"\nurl = \"{}\"\nstart = \"all\"\n",
            rabbit.url()
        ),
    );
    let kills = config.clone();
    tokio::task::spawn_blocking(move || kill_at_random_points(&kills, 1))
        .await
        .unwrap();
    let mut consumer = channel
        .basic_consume(
            "downstream".into(),
            "test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut arrived: Vec<(String, Vec<u8>)> = Vec::new();
    let mut distinct = std::collections::BTreeSet::new();
    let drain = |arrived: &mut Vec<(String, Vec<u8>)>,
                 distinct: &mut std::collections::BTreeSet<String>,
                 delivery: lapin::message::Delivery| {
        let id = delivery
            .properties
            .message_id()
            .clone()
            .unwrap()
            .to_string();
        distinct.insert(id.clone());
        arrived.push((id, delivery.data));
    };
    let mut child = spawn(&config);
    let deadline = Instant::now() + Duration::from_secs(120);
    while distinct.len() < events.len() {
        assert!(
            Instant::now() < deadline,
            "{} of {} arrived",
            distinct.len(),
            events.len()
        );
        if let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(Duration::from_secs(1), consumer.next()).await
        {
            delivery.ack(BasicAckOptions::default()).await.unwrap();
            drain(&mut arrived, &mut distinct, delivery);
        }
    }
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(child.0.wait().unwrap().success());
    // Whatever else is queued: copies sent before a kill.
    while let Ok(Some(Ok(delivery))) =
        tokio::time::timeout(Duration::from_millis(500), consumer.next()).await
    {
        delivery.ack(BasicAckOptions::default()).await.unwrap();
        drain(&mut arrived, &mut distinct, delivery);
    }
    report_outbound(&events, &arrived);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_inbound_killed_at_random_points_stores_each_event_once() {
    let rabbit = RabbitMq::new();
    let connection = Connection::connect(&rabbit.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let queue = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare("upstream".into(), queue, FieldTable::default())
        .await
        .unwrap();
    let events = events(EVENTS);
    let mut confirms = Vec::new();
    for event in &events {
        let properties = amqp_properties(event);
        confirms.push(
            channel
                .basic_publish(
                    "".into(),
                    "upstream".into(),
                    BasicPublishOptions::default(),
                    &event.payload,
                    properties,
                )
                .await
                .unwrap(),
        );
    }
    for confirm in confirms {
        assert!(confirm.await.unwrap().is_ack());
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "name = \"in\"\ndirection = \"inbound\"\nbroker = \"rabbitmq\"\nurl = \"{}\"\nsource = \"upstream\"\n",
            rabbit.url()
        ),
    );
    let kills = config.clone();
    tokio::task::spawn_blocking(move || kill_at_random_points(&kills, 2))
        .await
        .unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    run_until(&config, || async {
        channel
            .queue_declare("upstream".into(), passive, FieldTable::default())
            .await
            .is_ok_and(|q| q.message_count() == 0)
    })
    .await;
    // SIGTERM left nothing unacknowledged that the log does not hold.
    report_inbound(dir.path(), &events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outbound_killed_at_random_points_loses_nothing() {
    let redis = Redis::new();
    let dir = tempfile::tempdir().unwrap();
    let events = events(EVENTS);
    log_with(dir.path(), &events).await;
    let config = write_config(
        dir.path(),
        &format!(
            "name = \"out\"\ndirection = \"outbound\"\nbroker = \"redis\"\nurl = \"{}\"\nstart = \"all\"\naddress = \"downstream\"\n",
            redis.url()
        ),
    );
    let kills = config.clone();
    tokio::task::spawn_blocking(move || kill_at_random_points(&kills, 3))
        .await
        .unwrap();
    let connection = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let arrived = std::sync::Mutex::new(Arrived::default());
    run_until(&config, || {
        let connection = connection.clone();
        let arrived = &arrived;
        async move {
            let last = arrived.lock().unwrap().last.clone();
            let more = read_after(connection, &last).await;
            let mut arrived = arrived.lock().unwrap();
            arrived.add(more);
            arrived.distinct.len() == EVENTS
        }
    })
    .await;
    let mut arrived = arrived.into_inner().unwrap();
    let more = read_after(connection, &arrived.last).await;
    arrived.add(more);
    report_outbound(&events, &arrived.entries);
}

/// The entries of the `downstream` stream read so far.
#[derive(Default)]
struct Arrived {
    /// The last entry id read (`-`: none yet).
    last: String,
    entries: Vec<(String, Vec<u8>)>,
    distinct: std::collections::BTreeSet<String>,
}

impl Arrived {
    fn add(&mut self, more: Vec<(String, String, Vec<u8>)>) {
        for (entry_id, id, payload) in more {
            self.last = entry_id;
            self.distinct.insert(id.clone());
            self.entries.push((id, payload));
        }
    }
}

/// The entries of `downstream` after entry `last`, a page at a time (a
/// hundred kills leave hundreds of thousands of copies): (entry id, event
/// id, payload).
async fn read_after(
    mut connection: redis::aio::MultiplexedConnection,
    last: &str,
) -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut from = if last.is_empty() {
        "-".to_owned()
    } else {
        format!("({last}")
    };
    loop {
        let reply: redis::streams::StreamRangeReply = connection
            .xrange_count("downstream", &from, "+", 2_000)
            .await
            .unwrap();
        let Some(tail) = reply.ids.last() else {
            return out;
        };
        from = format!("({}", tail.id);
        for entry in &reply.ids {
            let field: String = entry.get("cloudevent").unwrap();
            let event =
                cloudevents::from_structured(serde_json::from_str(&field).unwrap()).unwrap();
            out.push((
                entry.id.clone(),
                event.id.to_string(),
                event.payload.to_vec(),
            ));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_inbound_killed_at_random_points_stores_each_event_once() {
    let redis = Redis::new();
    let mut connection = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let events = events(EVENTS);
    let mut pipe = redis::pipe();
    for event in &events {
        let json = cloudevents::to_structured(&event.headers(), &event.payload).to_string();
        pipe.xadd("upstream", "*", &[("cloudevent", json)]);
    }
    let _: Vec<String> = pipe.query_async(&mut connection).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "name = \"in\"\ndirection = \"inbound\"\nbroker = \"redis\"\nurl = \"{}\"\nsource = \"upstream\"\n",
            redis.url()
        ),
    );
    let kills = config.clone();
    tokio::task::spawn_blocking(move || kill_at_random_points(&kills, 4))
        .await
        .unwrap();
    run_until(&config, || {
        let mut connection = connection.clone();
        async move {
            // Everything delivered to the group and acknowledged.
            let groups: Vec<redis::streams::StreamInfoGroup> = connection
                .xinfo_groups::<_, redis::streams::StreamInfoGroupsReply>("upstream")
                .await
                .map(|r| r.groups)
                .unwrap_or_default();
            groups
                .first()
                .is_some_and(|g| g.pending == 0 && g.lag == Some(0))
        }
    })
    .await;
    report_inbound(dir.path(), &events).await;
}

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
    process::Command,
    time::{Duration, Instant},
};

use backbone_schemas::cloudevents;
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
use support::{crash::*, *};

/// An outbound bridge to RabbitMQ after the kills, for the test to run
/// to the end and drain.
struct Killed {
    rabbit: RabbitMq,
    _connection: Connection,
    /// An AMQP 0.9.1 channel.
    channel: lapin::Channel,
    events: Vec<backbone_schemas::Envelope>,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// RabbitMQ with a durable queue `downstream` bound to every key of
/// `events`, the log holding [`EVENTS`] events, and the outbound bridge
/// `bridge(rabbit)` killed at random points.
async fn kill_outbound(bridge: impl Fn(&RabbitMq) -> String, seed: u64) -> Killed {
    let rabbit = RabbitMq::new();
    let connection = Connection::connect(&rabbit.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    bound_queue(&channel, "downstream").await;
    let dir = tempfile::tempdir().unwrap();
    let events = events(EVENTS);
    log_with(dir.path(), &events).await;
    let config = write_config(dir.path(), &bridge(&rabbit));
    let kills = config.clone();
    tokio::task::spawn_blocking(move || kill_at_random_points(&kills, seed))
        .await
        .unwrap();
    Killed {
        rabbit,
        _connection: connection,
        channel,
        events,
        config,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_outbound_killed_at_random_points_loses_nothing() {
    let Killed {
        rabbit: _rabbit,
        _connection,
        channel,
        events,
        config,
        _dir,
    } = kill_outbound(
        |rabbit| {
            format!(
                "name = \"out\"\ndirection = \"outbound\"\nbroker = \"rabbitmq\"\nurl = \"{}\"\nstart = \"all\"\n",
                rabbit.url()
            )
        },
        1,
    )
    .await;
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
    let bridge = format!(
        "name = \"in\"\ndirection = \"inbound\"\nbroker = \"rabbitmq\"\nurl = \"{}\"\nsource = \"upstream\"\n",
        rabbit.url()
    );
    drain_upstream_with_kills(&channel, &bridge, 2, &events).await;
}

/// Kills the inbound `bridge` (taking RabbitMQ's queue `upstream`) at
/// random points, runs it until the queue is empty, and checks that each
/// of `events` is stored once.
async fn drain_upstream_with_kills(
    channel: &lapin::Channel,
    bridge: &str,
    seed: u64,
    events: &[backbone_schemas::Envelope],
) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), bridge);
    let kills = config.clone();
    tokio::task::spawn_blocking(move || kill_at_random_points(&kills, seed))
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
    report_inbound(dir.path(), events).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp1_outbound_killed_at_random_points_loses_nothing() {
    let Killed {
        rabbit,
        _connection,
        channel: _,
        events,
        config,
        _dir,
    } = kill_outbound(
        |rabbit| {
            format!(
                "name = \"out\"\ndirection = \"outbound\"\nbroker = \"amqp1\"\nurl = \"amqp://guest:guest@127.0.0.1:{}\"\nstart = \"all\"\naddress = \"/exchange/events/{{type}}\"\n",
                rabbit.port()
            )
        },
        5,
    )
    .await;
    let mut client = amqp1::Amqp1Client::connect(&rabbit).await;
    let child = spawn(&config);
    let taken = client
        .take(
            "/amq/queue/downstream",
            events.len(),
            Duration::from_secs(60),
        )
        .await;
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let mut child = child;
    assert!(child.0.wait().unwrap().success());
    // Whatever else is queued: copies sent before a kill.
    let rest = client
        .take(
            "/amq/queue/downstream",
            usize::MAX,
            Duration::from_millis(500),
        )
        .await;
    client.close().await;
    let arrived: Vec<(String, Vec<u8>)> = taken
        .iter()
        .chain(&rest)
        .map(|m| (amqp1::message_id(m), amqp1::data(m)))
        .collect();
    report_outbound(&events, &arrived);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp1_inbound_killed_at_random_points_stores_each_event_once() {
    let rabbit = RabbitMq::new();
    let connection = Connection::connect(&rabbit.url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    bound_queue(&channel, "upstream").await;
    let events = events(EVENTS);
    let mut client = amqp1::Amqp1Client::connect(&rabbit).await;
    let messages = events
        .iter()
        .map(|e| amqp1::binary_message(e, &e.payload))
        .collect();
    client.send("/amq/queue/upstream", messages).await;
    client.close().await;
    let bridge = format!(
        "name = \"in\"\ndirection = \"inbound\"\nbroker = \"amqp1\"\nurl = \"amqp://guest:guest@127.0.0.1:{}\"\nsource = \"/amq/queue/upstream\"\n",
        rabbit.port()
    );
    drain_upstream_with_kills(&channel, &bridge, 6, &events).await;
}

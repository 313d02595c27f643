//! nats-server killed with SIGKILL again and again while a publisher and a
//! durable consumer run: no acknowledged event is lost, both resume.
//!
//! `BACKBONE_RELIABILITY_ROUNDS` sets the kills (default 3; scripts/reliability
//! runs many more). The server uses file storage; on servers that know it
//! (2.10+) also the shipped `sync_interval: always`. nats-server 2.9 does not
//! know the option: there this proves that a kill -9 of the process loses
//! nothing, since each write reached the kernel before its acknowledgement.

mod reliability_support;

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use backbone_broker::{
    Broker, ConsumerConfig, StreamConfig,
    jetstream::{JetStreamBroker, JetStreamOptions},
};
use backbone_testkit::{NatsServer, find_nats_server};
use reliability_support::{
    Ledger, audit, consume_until, drain_consumer, jitter, publish_until, report, rounds_from_env,
};

/// True when the nats-server binary knows `sync_interval` (2.10 and newer).
fn server_knows_sync_interval() -> bool {
    let binary = find_nats_server().unwrap_or_else(|missing| panic!("{missing}"));
    let out = Command::new(binary).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&out.stdout);
    !version.contains("v2.9.") && !version.contains("v2.8.")
}

async fn connect(server: &NatsServer) -> JetStreamBroker {
    JetStreamBroker::connect(JetStreamOptions {
        urls: vec![server.url()],
        publish_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .await
    .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_events_survive_repeated_kill_9() {
    let rounds = rounds_from_env("BACKBONE_RELIABILITY_ROUNDS", 3);
    let mut server = NatsServer::builder()
        .sync_always(server_knows_sync_interval())
        .start();
    let broker = Arc::new(connect(&server).await);
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .unwrap();
    let consumer = broker
        .consumer(
            "EVENTS",
            ConsumerConfig {
                ack_wait: Duration::from_secs(2),
                ..ConsumerConfig::durable("reliability")
            },
        )
        .await
        .unwrap();

    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn(publish_until(
        broker.clone(),
        "kill9".into(),
        stop.clone(),
        ledger.clone(),
        Duration::from_secs(10),
    ));
    let consuming = tokio::spawn(consume_until(consumer, stop.clone(), ledger.clone()));

    for round in 0..rounds {
        tokio::time::sleep(jitter(
            u64::from(round),
            Duration::from_millis(150),
            Duration::from_millis(700),
        ))
        .await;
        let before = ledger.acked_count();
        tokio::task::block_in_place(|| {
            server.kill9();
            std::thread::sleep(jitter(
                u64::from(round) + 1000,
                Duration::from_millis(50),
                Duration::from_millis(400),
            ));
            server.start();
        });
        // Publishing resumes after every restart.
        let resumed = tokio::time::timeout(Duration::from_secs(20), async {
            while ledger.acked_count() <= before {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(resumed.is_ok(), "publishing resumed after kill {round}");
        ledger
            .acked_after_kill
            .lock()
            .unwrap()
            .push(ledger.acked_count() - before);
    }

    stop.store(true, Ordering::Release);
    publisher.await.unwrap();
    consuming.await.unwrap();

    let consumer = broker
        .consumer("EVENTS", ConsumerConfig::durable("reliability"))
        .await
        .unwrap();
    drain_consumer(consumer.as_ref(), &ledger, Duration::from_secs(30)).await;
    let starts = server.log().matches("Starting nats-server").count();
    assert_eq!(starts, rounds as usize + 1, "the server really was killed");
    let result = audit(broker.as_ref(), "EVENTS", &ledger).await;
    report("jetstream-kill9", rounds, &ledger, &result);
    assert!(result.acked > 0);
    assert_eq!(result.lost, 0, "acknowledged events lost: {result:?}");
    assert_eq!(
        result.moved, 0,
        "events stored at another sequence: {result:?}"
    );
    assert_eq!(result.duplicates, 0, "retries deduplicated: {result:?}");
    assert_eq!(result.not_consumed, 0, "the consumer resumed: {result:?}");
}

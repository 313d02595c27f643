//! A 3-node nats-server cluster on loopback with an R3 event stream: the
//! stream leader is killed with SIGKILL mid-publish. No acknowledged event is
//! lost, publishing resumes once a new leader is elected, and the durable
//! consumer continues.
//!
//! `BACKBONE_FAILOVER_ROUNDS` sets how many leaders are killed in turn
//! (default 1; each killed node is restarted before the next round).

mod reliability_support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use backbone_broker::{
    Broker, ConsumerConfig, ConsumerErrorKind, StreamConfig,
    jetstream::{JetStreamBroker, JetStreamOptions},
};
use backbone_testkit::NatsCluster;
use reliability_support::{
    Ledger, audit, consume_until, drain_consumer, jitter, publish_until, report, rounds_from_env,
};

/// The node index (`n1` is 0) currently leading `stream`, asked through
/// JetStream's API since the broker contract does not expose leadership.
async fn stream_leader(broker: &JetStreamBroker, stream: &str) -> Option<usize> {
    let answer = broker
        .client()
        .request(format!("$JS.API.STREAM.INFO.{stream}"), "".into())
        .await
        .ok()?;
    let info: serde_json::Value = serde_json::from_slice(&answer.payload).ok()?;
    let leader = info["cluster"]["leader"].as_str()?;
    leader
        .strip_prefix('n')?
        .parse::<usize>()
        .ok()?
        .checked_sub(1)
}

async fn wait_for_leader(broker: &JetStreamBroker, stream: &str, not: Option<usize>) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(leader) = stream_leader(broker, stream).await
            && Some(leader) != not
        {
            return leader;
        }
        assert!(
            Instant::now() < deadline,
            "no stream leader elected in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every replica of `stream` is current with no lag, so the
/// audit reads a settled stream rather than one still catching up.
async fn wait_for_current_replicas(broker: &JetStreamBroker, stream: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let info = broker
            .client()
            .request(format!("$JS.API.STREAM.INFO.{stream}"), "".into())
            .await
            .ok()
            .and_then(|answer| serde_json::from_slice::<serde_json::Value>(&answer.payload).ok());
        if let Some(replicas) = info
            .as_ref()
            .and_then(|i| i["cluster"]["replicas"].as_array())
        {
            let settled = replicas.len() == 2
                && replicas.iter().all(|r| {
                    r["current"].as_bool() == Some(true) && r["lag"].as_u64().unwrap_or(0) == 0
                });
            if settled {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("replicas of {stream} did not settle within 60 s; auditing anyway");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_stream_leader_loses_no_acknowledged_event() {
    let rounds = rounds_from_env("BACKBONE_FAILOVER_ROUNDS", 1);
    let mut cluster = NatsCluster::start(3);
    let broker = Arc::new(
        JetStreamBroker::connect(JetStreamOptions {
            urls: cluster.urls(),
            publish_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(3),
            ..Default::default()
        })
        .await
        .expect("connect to the cluster"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let created = broker
            .ensure_stream(&StreamConfig {
                replicas: 3,
                ..StreamConfig::event_log()
            })
            .await;
        match created {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("stream not created yet: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("creating the R3 stream: {e}"),
        }
    }
    assert_eq!(
        broker.stream_info("EVENTS").await.unwrap().config.replicas,
        3
    );
    let consumer = broker
        .consumer(
            "EVENTS",
            ConsumerConfig {
                ack_wait: Duration::from_secs(3),
                ..ConsumerConfig::durable("failover")
            },
        )
        .await
        .unwrap();

    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn(publish_until(
        broker.clone(),
        "failover".into(),
        stop.clone(),
        ledger.clone(),
        Duration::from_secs(15),
    ));
    let consuming = tokio::spawn(consume_until(consumer, stop.clone(), ledger.clone()));

    for round in 0..rounds {
        let leader = wait_for_leader(&broker, "EVENTS", None).await;
        tokio::time::sleep(jitter(
            u64::from(round),
            Duration::from_millis(300),
            Duration::from_millis(900),
        ))
        .await;
        let before = ledger.acked_count();
        tokio::task::block_in_place(|| cluster.kill(leader));
        let successor = wait_for_leader(&broker, "EVENTS", Some(leader)).await;
        assert_ne!(successor, leader);
        let resumed = tokio::time::timeout(Duration::from_secs(30), async {
            while ledger.acked_count() <= before + 10 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(resumed.is_ok(), "publishing resumed after the election");
        ledger
            .acked_after_kill
            .lock()
            .unwrap()
            .push(ledger.acked_count() - before);
        tokio::task::block_in_place(|| cluster.restart(leader));
    }

    stop.store(true, Ordering::Release);
    publisher.await.unwrap();
    consuming.await.unwrap();
    // Right after a restart the cluster may still be electing (503,
    // "temporarily unavailable"): what a runner retries, so does the test.
    let mut attempts = 0;
    let consumer = loop {
        match broker
            .consumer("EVENTS", ConsumerConfig::durable("failover"))
            .await
        {
            Ok(consumer) => break consumer,
            Err(e)
                if attempts < 30
                    && matches!(
                        e.kind(),
                        ConsumerErrorKind::BrokerUnavailable | ConsumerErrorKind::TimedOut
                    ) =>
            {
                attempts += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => panic!("binding the consumer after the failover: {e}"),
        }
    };
    drain_consumer(consumer.as_ref(), &ledger, Duration::from_secs(30)).await;
    wait_for_current_replicas(&broker, "EVENTS").await;
    let info = broker.stream_info("EVENTS").await.unwrap();
    eprintln!(
        "EVENTS after failover: {} messages, last seq {}",
        info.messages, info.last_seq
    );
    let result = audit(broker.as_ref(), "EVENTS", &ledger).await;
    report("cluster-leader-kill", rounds, &ledger, &result);
    assert!(result.acked > 0);
    assert_eq!(result.lost, 0, "acknowledged events lost: {result:?}");
    assert_eq!(
        result.moved, 0,
        "events stored at another sequence: {result:?}"
    );
    assert_eq!(result.not_consumed, 0, "the consumer continued: {result:?}");
}

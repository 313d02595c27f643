//! Publishing against a real nats-server: acks, dedup, typed failures.

use std::time::{Duration, Instant};

use backbone_broker::{
    Broker, OutboundMessage, PublishErrorKind, StreamConfig,
    jetstream::{Auth, JetStreamBroker, JetStreamOptions},
};
use backbone_schemas::Headers;
use backbone_testkit::{AccountUser, NatsServer};

async fn connect(server: &NatsServer) -> JetStreamBroker {
    JetStreamBroker::connect(JetStreamOptions {
        urls: vec![server.url()],
        publish_timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .await
    .expect("connect")
}

#[tokio::test]
async fn publishes_deduplicates_and_checks_the_last_sequence() {
    let server = NatsServer::new();
    let broker = connect(&server).await;
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .unwrap();

    let headers: Headers = [("ce-type", "user.registered"), ("ce-id", "1"), ("a", "x")]
        .into_iter()
        .collect();
    let message = OutboundMessage::new("events.user.registered.u-1", "payload")
        .with_headers(headers)
        .with_msg_id("id-1");
    let first = broker.publish(message.clone()).await.unwrap();
    assert_eq!((first.seq, first.duplicate), (1, false));
    let again = broker.publish(message.clone()).await.unwrap();
    assert!(again.duplicate);

    let stored = broker.get("EVENTS", 1).await.unwrap();
    // async-nats writes headers from a hash map: compare them by name.
    let mut got: Vec<_> = stored.headers.iter().collect();
    let sent = message.stored_headers();
    let mut want: Vec<_> = sent.iter().collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(&stored.payload[..], b"payload");

    let wrong = broker
        .publish(
            OutboundMessage::new("events.user.registered.u-1", "x").expecting_last_subject_seq(7),
        )
        .await
        .unwrap_err();
    assert_eq!(
        wrong.kind(),
        &PublishErrorKind::WrongLastSequence { actual: 1 }
    );
    let right = broker
        .publish(
            OutboundMessage::new("events.user.registered.u-1", "x").expecting_last_subject_seq(1),
        )
        .await
        .unwrap();
    assert_eq!(right.seq, 2);

    let none = broker
        .publish(OutboundMessage::new("nowhere.x", "x"))
        .await
        .unwrap_err();
    assert_eq!(none.kind(), &PublishErrorKind::NoStream);
    let wild = broker
        .publish(OutboundMessage::new("events.*", "x"))
        .await
        .unwrap_err();
    assert_eq!(wild.kind(), &PublishErrorKind::InvalidSubject);
}

#[tokio::test]
async fn batches_come_back_in_input_order() {
    let server = NatsServer::new();
    let broker = JetStreamBroker::connect(JetStreamOptions {
        urls: vec![server.url()],
        max_in_flight: 8,
        ..Default::default()
    })
    .await
    .unwrap();
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .unwrap();
    let messages: Vec<_> = (0..100)
        .map(|i| OutboundMessage::new(format!("events.t.k{i}"), format!("{i}")))
        .collect();
    let results = broker.publish_batch(messages).await;
    let seqs: Vec<u64> = results.into_iter().map(|r| r.unwrap().seq).collect();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
}

#[tokio::test]
async fn oversized_payloads_are_too_large() {
    let server = NatsServer::builder().max_payload(1024).start();
    let broker = connect(&server).await;
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .unwrap();
    let err = broker
        .publish(OutboundMessage::new("events.big.k", vec![0u8; 4096]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            PublishErrorKind::PayloadTooLarge { max: 1024, .. }
        ),
        "{err:?}"
    );
    assert_eq!(broker.stream_info("EVENTS").await.unwrap().messages, 0);
}

#[tokio::test]
async fn publish_while_the_server_is_down_fails_in_time_and_retries_dedup() {
    let mut server = NatsServer::new();
    let broker = JetStreamBroker::connect(JetStreamOptions {
        urls: vec![server.url()],
        publish_timeout: Duration::from_secs(1),
        ..Default::default()
    })
    .await
    .unwrap();
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .unwrap();
    server.kill9();

    let message = OutboundMessage::new("events.user.registered.u-9", "x").with_msg_id("retry-1");
    let started = Instant::now();
    let err = broker.publish(message.clone()).await.unwrap_err();
    assert!(
        matches!(
            err.kind(),
            PublishErrorKind::BrokerUnavailable | PublishErrorKind::TimedOut
        ),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the publish timeout"
    );

    server.start();
    let mut receipt = None;
    for _ in 0..50 {
        match broker.publish(message.clone()).await {
            Ok(r) => {
                receipt = Some(r);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    receipt.expect("published after the server came back");
    broker
        .publish(message.clone())
        .await
        .map(|r| assert!(r.duplicate))
        .unwrap();
    assert_eq!(broker.stream_info("EVENTS").await.unwrap().messages, 1);
}

#[tokio::test]
async fn forbidden_subjects_are_permission_denied() {
    let server = NatsServer::builder()
        .account(
            "APP",
            vec![AccountUser {
                user: "svc".into(),
                password: "pw".into(),
                publish_allow: vec!["events.allowed.>".into(), "$JS.API.>".into()],
                subscribe_allow: vec![],
            }],
        )
        .start();
    let broker = JetStreamBroker::connect(JetStreamOptions {
        urls: vec![server.url()],
        auth: Auth::UserPassword {
            user: "svc".into(),
            password: "pw".into(),
        },
        publish_timeout: Duration::from_secs(10),
        ..Default::default()
    })
    .await
    .unwrap();
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .unwrap();
    broker
        .publish(OutboundMessage::new("events.allowed.x", "ok"))
        .await
        .unwrap();
    let started = Instant::now();
    let err = broker
        .publish(OutboundMessage::new("events.forbidden.x", "no"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &PublishErrorKind::PermissionDenied);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not after the timeout"
    );
}

#[tokio::test]
async fn closed_brokers_refuse_publishing() {
    let server = NatsServer::new();
    let broker = connect(&server).await;
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .unwrap();
    broker.close().await.unwrap();
    let err = broker
        .publish(OutboundMessage::new("events.a.b", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &PublishErrorKind::BrokerUnavailable);
}

/// Regression: during a graceful restart nats-server stops JetStream before
/// it drops clients, so publishes saw "no responders" and failed with
/// `NoStream` although the stream exists. Only transient kinds may occur.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_during_a_restart_never_fail_with_no_stream() {
    let server = std::sync::Arc::new(std::sync::Mutex::new(NatsServer::new()));
    let url = server.lock().unwrap().url();
    let broker = JetStreamBroker::connect(JetStreamOptions {
        urls: vec![url],
        publish_timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .await
    .unwrap();
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .unwrap();
    let publisher = {
        let broker = broker.clone();
        tokio::spawn(async move {
            let mut failures = Vec::new();
            for i in 0..600 {
                let message = OutboundMessage::new(format!("events.restart.k{}", i % 7), "x")
                    .with_msg_id(format!("restart-{i}"));
                if let Err(err) = broker.publish(message).await {
                    failures.push(err.kind().clone());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            failures
        })
    };
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let server = server.clone();
        tokio::task::spawn_blocking(move || server.lock().unwrap().restart())
            .await
            .unwrap();
    }
    let failures = publisher.await.unwrap();
    assert!(
        failures.iter().all(|kind| matches!(
            kind,
            PublishErrorKind::TimedOut | PublishErrorKind::BrokerUnavailable
        )),
        "{failures:?}"
    );
    let unrouted = broker
        .publish(OutboundMessage::new("nowhere.after.restart", "x"))
        .await
        .unwrap_err();
    assert_eq!(unrouted.kind(), &PublishErrorKind::NoStream);
}

/// Regression: acks of a whole window lost with the connection were each
/// awaited for a full publish timeout, one after another (a batch of 2,000
/// then took half an hour). Each ack is bounded from its send instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_cut_off_by_a_crash_fails_within_a_few_timeouts() {
    let mut server = NatsServer::new();
    let broker = JetStreamBroker::connect(JetStreamOptions {
        urls: vec![server.url()],
        publish_timeout: Duration::from_secs(1),
        max_in_flight: 256,
        ..Default::default()
    })
    .await
    .unwrap();
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .unwrap();
    let messages: Vec<_> = (0..2000)
        .map(|i| {
            OutboundMessage::new("events.crash.k", format!("{i}")).with_msg_id(format!("c-{i}"))
        })
        .collect();
    let batch = {
        let broker = broker.clone();
        tokio::spawn(async move { broker.publish_batch(messages).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    server.kill9();
    let started = Instant::now();
    let results = tokio::time::timeout(Duration::from_secs(60), batch)
        .await
        .expect("the batch is bounded by its timeouts, not one timeout per message")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(results.len(), 2000);
    for result in &results {
        if let Err(err) = result {
            assert!(
                matches!(
                    err.kind(),
                    PublishErrorKind::TimedOut | PublishErrorKind::BrokerUnavailable
                ),
                "{err:?}"
            );
        }
    }
}

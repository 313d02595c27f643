//! Durable consumers and reads against a real nats-server, including restarts.

use std::time::Duration;

use backbone_broker::{
    Broker, ConsumerConfig, ConsumerErrorKind, OutboundMessage, ProvisionOutcome, ReadRequest,
    StorageKind, StreamConfig, StreamErrorKind,
    jetstream::{JetStreamBroker, JetStreamOptions},
};
use backbone_testkit::NatsServer;
use futures::TryStreamExt as _;

async fn connect(server: &NatsServer) -> JetStreamBroker {
    JetStreamBroker::connect(JetStreamOptions {
        urls: vec![server.url()],
        ..Default::default()
    })
    .await
    .expect("connect")
}

async fn publish_n(broker: &JetStreamBroker, from: usize, to: usize) {
    for i in from..to {
        broker
            .publish(
                OutboundMessage::new(format!("events.t.k{i}"), format!("{i}"))
                    .with_msg_id(format!("m{i}")),
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn consumer_on_a_missing_stream_is_stream_not_found() {
    let server = NatsServer::new();
    let broker = connect(&server).await;
    let err = broker
        .consumer("NOPE", ConsumerConfig::durable("c"))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), &ConsumerErrorKind::StreamNotFound);
}

#[tokio::test]
async fn several_filters_are_unsupported_on_2_9() {
    let server = NatsServer::new();
    let broker = connect(&server).await;
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .unwrap();
    let config = ConsumerConfig {
        filter_subjects: vec!["events.a.>".into(), "events.b.>".into()],
        ..ConsumerConfig::durable("multi")
    };
    let result = broker.consumer("EVENTS", config).await;
    if broker.features().multiple_filter_subjects {
        assert!(result.is_ok());
    } else {
        let err = result.err().unwrap();
        assert_eq!(err.kind(), &ConsumerErrorKind::Unsupported);
        assert!(err.to_string().contains("2.10.0"));
    }
}

#[tokio::test]
async fn streams_are_provisioned_idempotently() {
    let server = NatsServer::new();
    let broker = connect(&server).await;
    let config = StreamConfig::dead_letters();
    assert_eq!(
        broker.ensure_stream(&config).await.unwrap(),
        ProvisionOutcome::Created
    );
    assert_eq!(
        broker.ensure_stream(&config).await.unwrap(),
        ProvisionOutcome::Unchanged
    );
    let bigger = StreamConfig {
        max_message_size: Some(4096),
        ..config.clone()
    };
    assert_eq!(
        broker.ensure_stream(&bigger).await.unwrap(),
        ProvisionOutcome::Updated(vec!["max_message_size".into()])
    );
    let memory = StreamConfig {
        storage: StorageKind::Memory,
        ..config
    };
    let err = broker.ensure_stream(&memory).await.unwrap_err();
    assert!(matches!(
        err.kind(),
        StreamErrorKind::ImmutableSetting { .. }
    ));

    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .unwrap();
    let denied = broker.purge("EVENTS", None).await.unwrap_err();
    assert_eq!(denied.kind(), &StreamErrorKind::Denied);
    let names: Vec<String> = broker
        .streams()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.config.name)
        .collect();
    assert_eq!(names, vec!["DEADLETTER".to_owned(), "EVENTS".to_owned()]);
}

#[tokio::test]
async fn fetch_ack_and_redelivery() {
    let server = NatsServer::new();
    let broker = connect(&server).await;
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .unwrap();
    publish_n(&broker, 0, 3).await;
    let consumer = broker
        .consumer(
            "EVENTS",
            ConsumerConfig {
                ack_wait: Duration::from_secs(1),
                ..ConsumerConfig::durable("proj")
            },
        )
        .await
        .unwrap();
    let batch = consumer.fetch(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(
        batch.iter().map(|d| d.message.seq).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(batch[0].delivery_count, 1);
    batch[0].ack().await.unwrap();
    batch[1].term("bad").await.unwrap();
    batch[2].nak(None).await.unwrap();
    let again = consumer.fetch(10, Duration::from_secs(3)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].message.seq, again[0].delivery_count), (3, 2));
    again[0].ack().await.unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!(info.ack_floor_stream_seq, 3);
    let listed = broker.consumers("EVENTS").await.unwrap();
    assert_eq!(listed.len(), 1);
    broker.delete_consumer("EVENTS", "proj").await.unwrap();
    let gone = broker.consumer_info("EVENTS", "proj").await.unwrap_err();
    assert_eq!(gone.kind(), &ConsumerErrorKind::ConsumerNotFound);
}

#[tokio::test]
async fn exhausted_messages_are_reported() {
    let server = NatsServer::new();
    let broker = connect(&server).await;
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .unwrap();
    publish_n(&broker, 0, 1).await;
    let consumer = broker
        .consumer(
            "EVENTS",
            ConsumerConfig {
                max_deliver: Some(2),
                ..ConsumerConfig::durable("tired")
            },
        )
        .await
        .unwrap();
    for _ in 0..2 {
        let batch = consumer.fetch(1, Duration::from_secs(3)).await.unwrap();
        assert_eq!(batch.len(), 1);
        batch[0].nak(None).await.unwrap();
    }
    let mut exhausted = Vec::new();
    for _ in 0..30 {
        let _ = consumer.fetch(1, Duration::from_millis(200)).await.unwrap();
        exhausted.extend(consumer.take_exhausted().await.unwrap());
        if !exhausted.is_empty() {
            break;
        }
    }
    assert_eq!(exhausted.first().map(|e| e.stream_seq), Some(1));
}

#[tokio::test]
async fn reads_are_ordered_bounded_and_filtered() {
    let server = NatsServer::new();
    let broker = connect(&server).await;
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .unwrap();
    publish_n(&broker, 0, 2500).await;
    let all: Vec<_> = broker
        .read("EVENTS", ReadRequest::default())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 2500);
    assert!(all.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
    let some: Vec<_> = broker
        .read(
            "EVENTS",
            ReadRequest {
                start: backbone_broker::ReadStart::Sequence(10),
                end_seq: Some(19),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        some.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (10..=19).collect::<Vec<_>>()
    );
    let one: Vec<_> = broker
        .read(
            "EVENTS",
            ReadRequest {
                filter: Some("events.t.k7".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        broker.consumers("EVENTS").await.unwrap().is_empty(),
        "no leaked durables"
    );
}

#[tokio::test]
async fn restart_loses_nothing_and_consumers_continue() {
    let mut server = NatsServer::new();
    let broker = connect(&server).await;
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .unwrap();
    publish_n(&broker, 0, 10).await;
    let consumer = broker
        .consumer("EVENTS", ConsumerConfig::durable("survivor"))
        .await
        .unwrap();
    for d in consumer.fetch(5, Duration::from_secs(2)).await.unwrap() {
        d.ack().await.unwrap();
    }

    server.restart();

    let mut republished = false;
    for _ in 0..50 {
        if broker.stream_info("EVENTS").await.is_ok() {
            republished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(republished, "reconnected");
    publish_n(&broker, 10, 15).await;
    let all: Vec<_> = broker
        .read("EVENTS", ReadRequest::default())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 15);

    let mut seqs = Vec::new();
    for _ in 0..20 {
        for d in consumer
            .fetch(20, Duration::from_secs(1))
            .await
            .unwrap_or_default()
        {
            seqs.push(d.message.seq);
            d.ack().await.unwrap();
        }
        if seqs.len() >= 10 {
            break;
        }
    }
    assert_eq!(seqs, (6..=15).collect::<Vec<_>>());
}

/// A read short of its bound waits (bounded) for a lagging replica; when the
/// tail up to the bound is really gone (purged), it still ends, without an
/// error, soon after the request timeout.
#[tokio::test]
async fn a_read_whose_tail_was_purged_ends_after_a_bounded_wait() {
    let server = NatsServer::new();
    let request_timeout = Duration::from_millis(500);
    let broker = JetStreamBroker::connect(JetStreamOptions {
        urls: vec![server.url()],
        request_timeout,
        ..Default::default()
    })
    .await
    .expect("connect");
    broker
        .ensure_stream(&StreamConfig {
            name: "SCRATCH".into(),
            subjects: vec!["scratch.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    broker
        .publish(OutboundMessage::new("scratch.keep.k1", "1"))
        .await
        .unwrap();
    broker
        .publish(OutboundMessage::new("scratch.drop.k2", "2"))
        .await
        .unwrap();
    assert_eq!(
        broker
            .purge("SCRATCH", Some("scratch.drop.>"))
            .await
            .unwrap(),
        1
    );
    let info = broker.stream_info("SCRATCH").await.unwrap();
    assert_eq!(info.last_seq, 2, "purging keeps the last sequence");

    let started = std::time::Instant::now();
    let read: Vec<_> = broker
        .read("SCRATCH", ReadRequest::default())
        .await
        .unwrap()
        .try_collect()
        .await
        .expect("the read ends without an error");
    assert_eq!(
        read.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![1],
        "only the stored message"
    );
    assert!(
        started.elapsed() < request_timeout * 10,
        "ended within a bounded wait: {:?}",
        started.elapsed()
    );
}

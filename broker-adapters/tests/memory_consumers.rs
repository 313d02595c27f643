//! The local engine on memory storage: durable consumers.

use std::{sync::Arc, time::Duration};

use backbone_broker::{
    AckErrorKind, Broker, ConsumerConfig, ConsumerErrorKind, DeliverPolicy, Exhausted,
    OutboundMessage, StreamConfig, memory::MemoryBroker,
};

const SHORT: Duration = Duration::from_millis(50);
const LONG: Duration = Duration::from_secs(10);

async fn broker_with(n: u64) -> MemoryBroker {
    let b = MemoryBroker::new();
    b.ensure_stream(&StreamConfig::event_log()).await.unwrap();
    for i in 1..=n {
        let kind = if i % 2 == 0 { "even" } else { "odd" };
        b.publish(OutboundMessage::new(format!("events.{kind}.{i}"), "x"))
            .await
            .unwrap();
    }
    b
}

fn seqs(batch: &[backbone_broker::Delivery]) -> Vec<u64> {
    batch.iter().map(|d| d.message.seq).collect()
}

#[tokio::test]
async fn delivers_everything_once_and_acks_settle_once() {
    let b = broker_with(5).await;
    let c = b
        .consumer("EVENTS", ConsumerConfig::durable("all"))
        .await
        .unwrap();
    let batch = c.fetch(10, SHORT).await.unwrap();
    assert_eq!(seqs(&batch), vec![1, 2, 3, 4, 5]);
    assert_eq!(batch[0].pending, 4);
    assert_eq!(batch[0].delivery_count, 1);
    for d in &batch {
        d.ack().await.unwrap();
    }
    assert_eq!(
        batch[0].ack().await.unwrap_err().kind(),
        &AckErrorKind::NotPending
    );
    let info = c.info().await.unwrap();
    assert_eq!(
        (info.delivered_stream_seq, info.ack_floor_stream_seq),
        (5, 5)
    );
    assert_eq!((info.num_pending, info.num_ack_pending), (0, 0));
    assert!(c.fetch(10, SHORT).await.unwrap().is_empty());
}

#[tokio::test]
async fn unacked_messages_come_back_after_ack_wait_with_a_higher_count() {
    let b = broker_with(1).await;
    let config = ConsumerConfig {
        ack_wait: Duration::from_millis(100),
        ..ConsumerConfig::durable("slow")
    };
    let c = b.consumer("EVENTS", config).await.unwrap();
    assert_eq!(c.fetch(1, SHORT).await.unwrap()[0].delivery_count, 1);
    let again = c.fetch(1, LONG).await.unwrap();
    assert_eq!((again[0].message.seq, again[0].delivery_count), (1, 2));
    assert_eq!(c.info().await.unwrap().num_redelivered, 1);
    again[0].ack().await.unwrap();
}

#[tokio::test]
async fn in_progress_postpones_redelivery_and_nak_delays_it() {
    let b = broker_with(1).await;
    let config = ConsumerConfig {
        ack_wait: Duration::from_millis(300),
        ..ConsumerConfig::durable("c")
    };
    let c = b.consumer("EVENTS", config).await.unwrap();
    let d = c.fetch(1, SHORT).await.unwrap().remove(0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    d.in_progress().await.unwrap();
    assert!(
        c.fetch(1, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty(),
        "ack wait restarted"
    );
    d.nak(Some(Duration::from_millis(100))).await.unwrap();
    assert!(
        c.fetch(1, Duration::from_millis(20))
            .await
            .unwrap()
            .is_empty(),
        "nak delay honoured"
    );
    let again = c.fetch(1, LONG).await.unwrap();
    assert_eq!(again[0].delivery_count, 2);
    again[0].nak(None).await.unwrap();
    assert_eq!(
        c.fetch(1, LONG).await.unwrap()[0].delivery_count,
        3,
        "nak without delay or backoff is immediate"
    );
}

#[tokio::test]
async fn term_stops_redelivery() {
    let b = broker_with(2).await;
    let config = ConsumerConfig {
        ack_wait: Duration::from_millis(50),
        ..ConsumerConfig::durable("c")
    };
    let c = b.consumer("EVENTS", config).await.unwrap();
    let batch = c.fetch(2, SHORT).await.unwrap();
    batch[0].term("poison").await.unwrap();
    batch[1].ack().await.unwrap();
    assert!(
        c.fetch(2, Duration::from_millis(150))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn exhausted_messages_stop_and_are_reported_once() {
    let b = broker_with(1).await;
    let config = ConsumerConfig {
        ack_wait: Duration::from_millis(30),
        max_deliver: Some(2),
        ..ConsumerConfig::durable("c")
    };
    let c = b.consumer("EVENTS", config).await.unwrap();
    assert_eq!(c.fetch(1, SHORT).await.unwrap().len(), 1);
    assert_eq!(c.fetch(1, LONG).await.unwrap()[0].delivery_count, 2);
    assert!(
        c.fetch(1, Duration::from_millis(150))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        c.take_exhausted().await.unwrap(),
        vec![Exhausted {
            stream_seq: 1,
            deliveries: 2
        }]
    );
    assert!(c.take_exhausted().await.unwrap().is_empty());
    assert_eq!(c.info().await.unwrap().num_ack_pending, 0);
}

#[tokio::test]
async fn max_ack_pending_of_one_delivers_in_strict_order() {
    let b = broker_with(3).await;
    let config = ConsumerConfig {
        max_ack_pending: 1,
        ..ConsumerConfig::durable("c")
    };
    let c = b.consumer("EVENTS", config).await.unwrap();
    let first = c.fetch(10, SHORT).await.unwrap();
    assert_eq!(seqs(&first), vec![1]);
    assert!(
        c.fetch(10, SHORT).await.unwrap().is_empty(),
        "next waits for the ack"
    );
    first[0].ack().await.unwrap();
    assert_eq!(seqs(&c.fetch(10, SHORT).await.unwrap()), vec![2]);
}

#[tokio::test]
async fn fetch_returns_early_when_a_message_arrives() {
    let b = Arc::new(broker_with(0).await);
    let c = b
        .consumer("EVENTS", ConsumerConfig::durable("c"))
        .await
        .unwrap();
    let publisher = b.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        publisher
            .publish(OutboundMessage::new("events.a.1", "x"))
            .await
            .unwrap();
    });
    let started = std::time::Instant::now();
    let batch = c.fetch(5, Duration::from_secs(30)).await.unwrap();
    assert_eq!(seqs(&batch), vec![1]);
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn a_recreated_durable_resumes_without_redelivering_acked_messages() {
    let b = broker_with(4).await;
    let c = b
        .consumer("EVENTS", ConsumerConfig::durable("d"))
        .await
        .unwrap();
    for d in c.fetch(2, SHORT).await.unwrap() {
        d.ack().await.unwrap();
    }
    drop(c);
    let again = b
        .consumer("EVENTS", ConsumerConfig::durable("d"))
        .await
        .unwrap();
    assert_eq!(seqs(&again.fetch(10, SHORT).await.unwrap()), vec![3, 4]);
    assert_eq!(b.consumers("EVENTS").await.unwrap().len(), 1);
    assert_eq!(b.stream_info("EVENTS").await.unwrap().consumers, 1);
}

#[tokio::test]
async fn deliver_policies_and_filters_choose_the_start() {
    let b = broker_with(6).await;
    let new = b
        .consumer(
            "EVENTS",
            ConsumerConfig {
                deliver_policy: DeliverPolicy::New,
                ..ConsumerConfig::durable("new")
            },
        )
        .await
        .unwrap();
    assert!(new.fetch(10, SHORT).await.unwrap().is_empty());
    b.publish(OutboundMessage::new("events.odd.7", "x"))
        .await
        .unwrap();
    assert_eq!(seqs(&new.fetch(10, SHORT).await.unwrap()), vec![7]);
    let by_seq = ConsumerConfig {
        deliver_policy: DeliverPolicy::ByStartSequence(5),
        ..ConsumerConfig::durable("seq")
    };
    assert_eq!(
        seqs(
            &b.consumer("EVENTS", by_seq)
                .await
                .unwrap()
                .fetch(10, SHORT)
                .await
                .unwrap()
        ),
        vec![5, 6, 7]
    );
    let t = b.get("EVENTS", 6).await.unwrap().time;
    let by_time = ConsumerConfig {
        deliver_policy: DeliverPolicy::ByStartTime(t),
        ..ConsumerConfig::durable("time")
    };
    let from_time = seqs(
        &b.consumer("EVENTS", by_time)
            .await
            .unwrap()
            .fetch(10, SHORT)
            .await
            .unwrap(),
    );
    assert!(from_time.first() <= Some(&6) && from_time.ends_with(&[6, 7]));
    let filtered = ConsumerConfig {
        filter_subjects: vec!["events.even.*".into(), "events.odd.1".into()],
        ..ConsumerConfig::durable("filtered")
    };
    let c = b.consumer("EVENTS", filtered).await.unwrap();
    assert_eq!(c.info().await.unwrap().num_pending, 4);
    assert_eq!(seqs(&c.fetch(10, SHORT).await.unwrap()), vec![1, 2, 4, 6]);
}

#[tokio::test]
async fn consumer_errors_have_their_kinds() {
    let b = broker_with(1).await;
    let e = b
        .consumer("NOPE", ConsumerConfig::durable("c"))
        .await
        .err()
        .unwrap();
    assert_eq!(e.kind(), &ConsumerErrorKind::StreamNotFound);
    let e = b
        .consumer("EVENTS", ConsumerConfig::durable("bad.name"))
        .await
        .err()
        .unwrap();
    assert_eq!(e.kind(), &ConsumerErrorKind::InvalidConfig);
    let outside = ConsumerConfig {
        filter_subjects: vec!["orders.>".into()],
        ..ConsumerConfig::durable("c")
    };
    assert_eq!(
        b.consumer("EVENTS", outside).await.err().unwrap().kind(),
        &ConsumerErrorKind::InvalidConfig
    );
    assert_eq!(
        b.consumer_info("EVENTS", "none").await.unwrap_err().kind(),
        &ConsumerErrorKind::ConsumerNotFound
    );
    let c = b
        .consumer("EVENTS", ConsumerConfig::durable("c"))
        .await
        .unwrap();
    let d = c.fetch(1, SHORT).await.unwrap().remove(0);
    b.delete_consumer("EVENTS", "c").await.unwrap();
    assert_eq!(
        c.fetch(1, SHORT).await.err().unwrap().kind(),
        &ConsumerErrorKind::ConsumerNotFound
    );
    assert_eq!(d.ack().await.unwrap_err().kind(), &AckErrorKind::NotPending);
    assert_eq!(
        b.delete_consumer("EVENTS", "c").await.unwrap_err().kind(),
        &ConsumerErrorKind::ConsumerNotFound
    );
}

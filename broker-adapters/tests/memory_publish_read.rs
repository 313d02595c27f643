//! The local engine on memory storage: streams, publishing and reading.

use std::time::{Duration, SystemTime};

use backbone_broker::{
    Broker, OutboundMessage, ProvisionOutcome, PublishErrorKind, ReadErrorKind, ReadRequest,
    ReadStart, StreamConfig, StreamErrorKind, memory::MemoryBroker,
};
use futures::StreamExt;

async fn broker() -> MemoryBroker {
    let broker = MemoryBroker::new();
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .unwrap();
    broker
        .ensure_stream(&StreamConfig::dead_letters())
        .await
        .unwrap();
    broker
}

fn msg(subject: &str, payload: &str) -> OutboundMessage {
    OutboundMessage::new(subject, payload.as_bytes().to_vec())
}

#[tokio::test]
async fn publishes_get_dense_sequences_and_read_back_byte_for_byte() {
    let b = broker().await;
    for i in 1..=3u64 {
        let receipt = b
            .publish(msg(&format!("events.user.registered.u-{i}"), "x"))
            .await
            .unwrap();
        assert_eq!(
            (receipt.stream.as_str(), receipt.seq, receipt.duplicate),
            ("EVENTS", i, false)
        );
    }
    let dead = b.publish(msg("deadletter.events.x", "d")).await.unwrap();
    assert_eq!((dead.stream.as_str(), dead.seq), ("DEADLETTER", 1));
    let got = b.get("EVENTS", 2).await.unwrap();
    assert_eq!(got.subject, "events.user.registered.u-2");
    assert_eq!(&got.payload[..], b"x");
    let info = b.stream_info("EVENTS").await.unwrap();
    assert_eq!((info.messages, info.first_seq, info.last_seq), (3, 1, 3));
    assert!(info.first_time.is_some() && info.last_time >= info.first_time);
    assert_eq!(b.streams().await.unwrap().len(), 2);
    let e = b.get("EVENTS", 9).await.unwrap_err();
    assert_eq!(e.kind(), &ReadErrorKind::MessageNotFound);
    assert_eq!(
        b.get("NOPE", 1).await.unwrap_err().kind(),
        &ReadErrorKind::StreamNotFound
    );
}

#[tokio::test]
async fn bad_subjects_missing_streams_and_large_payloads_fail_with_their_kind() {
    let b = broker().await;
    for bad in ["", "events.>", "events.*.x", "events..x", "events.a b"] {
        let e = b.publish(msg(bad, "x")).await.unwrap_err();
        assert_eq!(e.kind(), &PublishErrorKind::InvalidSubject, "{bad:?}");
    }
    let e = b.publish(msg("orders.created", "x")).await.unwrap_err();
    assert_eq!(e.kind(), &PublishErrorKind::NoStream);
    let small = MemoryBroker::with_max_payload(64);
    small
        .ensure_stream(&StreamConfig::event_log())
        .await
        .unwrap();
    let big = msg("events.a.b", &"y".repeat(100));
    let size = big.wire_size();
    let e = small.publish(big).await.unwrap_err();
    assert_eq!(
        e.kind(),
        &PublishErrorKind::PayloadTooLarge { size, max: 64 }
    );
    let limited = StreamConfig {
        max_message_size: Some(20),
        ..StreamConfig::dead_letters()
    };
    b.ensure_stream(&limited).await.unwrap();
    let e = b
        .publish(msg("deadletter.a", &"z".repeat(30)))
        .await
        .unwrap_err();
    assert!(matches!(
        e.kind(),
        PublishErrorKind::PayloadTooLarge { max: 20, .. }
    ));
    assert_eq!(
        b.stream_info("EVENTS").await.unwrap().messages,
        0,
        "nothing stored"
    );
}

#[tokio::test]
async fn streams_are_validated_and_updates_reported() {
    let b = broker().await;
    assert_eq!(
        b.ensure_stream(&StreamConfig::event_log()).await.unwrap(),
        ProvisionOutcome::Unchanged
    );
    let described = StreamConfig {
        description: Some("new".into()),
        ..StreamConfig::event_log()
    };
    assert_eq!(
        b.ensure_stream(&described).await.unwrap(),
        ProvisionOutcome::Updated(vec!["description".into()])
    );
    let overlapping = StreamConfig {
        name: "OTHER".into(),
        subjects: vec!["events.user.*".into()],
        ..Default::default()
    };
    assert_eq!(
        b.ensure_stream(&overlapping).await.unwrap_err().kind(),
        &StreamErrorKind::InvalidConfig
    );
    let bad_name = StreamConfig {
        name: "a.b".into(),
        subjects: vec!["x".into()],
        ..Default::default()
    };
    assert_eq!(
        b.ensure_stream(&bad_name).await.unwrap_err().kind(),
        &StreamErrorKind::InvalidConfig
    );
    let memory = StreamConfig {
        storage: backbone_broker::StorageKind::Memory,
        ..StreamConfig::event_log()
    };
    assert_eq!(
        b.ensure_stream(&memory).await.unwrap_err().kind(),
        &StreamErrorKind::ImmutableSetting {
            setting: "storage".into()
        }
    );
    assert_eq!(
        b.stream_info("NOPE").await.unwrap_err().kind(),
        &StreamErrorKind::StreamNotFound
    );
}

#[tokio::test]
async fn duplicates_return_the_original_sequence_and_are_not_stored() {
    let b = broker().await;
    let first = b
        .publish(msg("events.a.1", "one").with_msg_id("id-1"))
        .await
        .unwrap();
    b.publish(msg("events.a.2", "two")).await.unwrap();
    let again = b
        .publish(msg("events.a.1", "other").with_msg_id("id-1"))
        .await
        .unwrap();
    assert_eq!((again.seq, again.duplicate), (first.seq, true));
    assert_eq!(b.stream_info("EVENTS").await.unwrap().messages, 2);
    let stored = b.get("EVENTS", 1).await.unwrap();
    assert_eq!(stored.headers.get("Nats-Msg-Id"), Some("id-1"));
    let batch = b
        .publish_batch(vec![
            msg("events.b.1", "x").with_msg_id("b"),
            msg("events.b.1", "x").with_msg_id("b"),
        ])
        .await;
    assert_eq!(batch[0].as_ref().unwrap().seq, 3);
    assert!(batch[1].as_ref().unwrap().duplicate);
}

#[tokio::test]
async fn optimistic_append_checks_the_subjects_last_sequence() {
    let b = broker().await;
    b.publish(msg("events.a.k", "1").expecting_last_subject_seq(0))
        .await
        .unwrap();
    b.publish(msg("events.b.k", "x")).await.unwrap();
    let e = b
        .publish(msg("events.a.k", "2").expecting_last_subject_seq(0))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), &PublishErrorKind::WrongLastSequence { actual: 1 });
    b.publish(msg("events.a.k", "2").expecting_last_subject_seq(1))
        .await
        .unwrap();
    let last = b
        .last_on_subject("EVENTS", "events.a.k")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((last.seq, &last.payload[..]), (3, &b"2"[..]));
    assert!(
        b.last_on_subject("EVENTS", "events.none")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn purge_respects_deny_purge_and_filters() {
    let b = broker().await;
    b.publish(msg("events.a.1", "x")).await.unwrap();
    assert_eq!(
        b.purge("EVENTS", None).await.unwrap_err().kind(),
        &StreamErrorKind::Denied
    );
    for s in ["deadletter.a.1", "deadletter.b.1", "deadletter.a.2"] {
        b.publish(msg(s, "x")).await.unwrap();
    }
    assert_eq!(
        b.purge("DEADLETTER", Some("deadletter.a.>")).await.unwrap(),
        2
    );
    let info = b.stream_info("DEADLETTER").await.unwrap();
    assert_eq!((info.messages, info.first_seq, info.last_seq), (1, 2, 3));
    assert!(
        b.last_on_subject("DEADLETTER", "deadletter.a.1")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(b.purge("DEADLETTER", None).await.unwrap(), 1);
    let info = b.stream_info("DEADLETTER").await.unwrap();
    assert_eq!((info.messages, info.first_seq, info.last_seq), (0, 4, 3));
    assert_eq!(b.publish(msg("deadletter.c", "x")).await.unwrap().seq, 4);
}

async fn collect(b: &MemoryBroker, request: ReadRequest) -> Vec<u64> {
    let stream = b.read("EVENTS", request).await.unwrap();
    stream.map(|m| m.unwrap().seq).collect().await
}

#[tokio::test]
async fn reads_honour_start_end_filter_and_time() {
    let b = broker().await;
    for i in 1..=600u64 {
        let kind = if i % 2 == 0 { "even" } else { "odd" };
        b.publish(msg(&format!("events.{kind}.{i}"), "x"))
            .await
            .unwrap();
    }
    assert_eq!(
        collect(&b, ReadRequest::default()).await,
        (1..=600).collect::<Vec<_>>()
    );
    let evens = ReadRequest {
        filter: Some("events.even.*".into()),
        ..Default::default()
    };
    assert_eq!(collect(&b, evens).await.len(), 300);
    let window = ReadRequest {
        start: ReadStart::Sequence(10),
        end_seq: Some(12),
        ..Default::default()
    };
    assert_eq!(collect(&b, window).await, vec![10, 11, 12]);
    let mid = b.get("EVENTS", 300).await.unwrap().time;
    let from_time = collect(
        &b,
        ReadRequest {
            start: ReadStart::Time(mid),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        from_time.first(),
        Some(&300),
        "first message stored at or after the time"
    );
    let until = collect(
        &b,
        ReadRequest {
            end_time: Some(mid),
            ..Default::default()
        },
    )
    .await;
    assert!(until.contains(&300) && !until.contains(&600));
    let bad = ReadRequest {
        start: ReadStart::Sequence(5),
        end_seq: Some(2),
        ..Default::default()
    };
    assert_eq!(
        b.read("EVENTS", bad).await.err().unwrap().kind(),
        &ReadErrorKind::InvalidRequest
    );
    let bad_filter = ReadRequest {
        filter: Some("a..b".into()),
        ..Default::default()
    };
    assert_eq!(
        b.read("EVENTS", bad_filter).await.err().unwrap().kind(),
        &ReadErrorKind::InvalidRequest
    );
    let future = ReadRequest {
        start: ReadStart::Time(SystemTime::now() + Duration::from_secs(60)),
        ..Default::default()
    };
    assert!(collect(&b, future).await.is_empty());
}

#[tokio::test]
async fn a_following_read_waits_for_new_messages() {
    let b = std::sync::Arc::new(broker().await);
    b.publish(msg("events.a.1", "x")).await.unwrap();
    let mut stream = b
        .read(
            "EVENTS",
            ReadRequest {
                follow: true,
                end_seq: Some(3),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().seq, 1);
    let publisher = b.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        publisher.publish(msg("events.a.2", "x")).await.unwrap();
        publisher.publish(msg("events.a.3", "x")).await.unwrap();
    });
    let rest: Vec<u64> = tokio::time::timeout(
        Duration::from_secs(10),
        stream.map(|m| m.unwrap().seq).collect(),
    )
    .await
    .unwrap();
    assert_eq!(rest, vec![2, 3]);
}

#[tokio::test]
async fn publishing_after_close_is_refused() {
    let b = broker().await;
    b.close().await.unwrap();
    let e = b.publish(msg("events.a.1", "x")).await.unwrap_err();
    assert_eq!(e.kind(), &PublishErrorKind::BrokerUnavailable);
}

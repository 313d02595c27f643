//! The in-memory indexes of the embedded log (dedup window, last sequence
//! per subject) are rebuilt on open: after a clean close, after a drop
//! without close (as after a crash: only flushed publishes are on disk),
//! across a subject-index checkpoint, and after a filtered purge.

use std::path::Path;

use backbone_broker::{
    Broker, OutboundMessage, PublishErrorKind, StreamConfig,
    embedded::{EmbeddedBroker, EmbeddedOptions},
};

fn open(path: &Path) -> EmbeddedBroker {
    EmbeddedBroker::open(EmbeddedOptions {
        path: path.to_path_buf(),
        ..Default::default()
    })
    .unwrap()
}

async fn last_seq_on(b: &EmbeddedBroker, subject: &str) -> Option<u64> {
    b.last_on_subject("EVENTS", subject)
        .await
        .unwrap()
        .map(|m| m.seq)
}

#[tokio::test]
async fn dedup_and_subject_sequences_survive_a_drop_without_close() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        b.ensure_stream(&StreamConfig::event_log()).await.unwrap();
        for (subject, id) in [
            ("events.a.1", "m1"),
            ("events.a.1", "m2"),
            ("events.b.1", "m3"),
        ] {
            b.publish(OutboundMessage::new(subject, "x").with_msg_id(id))
                .await
                .unwrap();
        }
    }
    let b = open(dir.path());
    let again = b
        .publish(OutboundMessage::new("events.a.1", "x").with_msg_id("m2"))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.seq, 2);
    assert_eq!(last_seq_on(&b, "events.a.1").await, Some(2));
    assert_eq!(last_seq_on(&b, "events.b.1").await, Some(3));
    let stale = b
        .publish(OutboundMessage::new("events.a.1", "x").expecting_last_subject_seq(1))
        .await
        .unwrap_err();
    assert_eq!(
        stale.kind(),
        &PublishErrorKind::WrongLastSequence { actual: 2 }
    );
    let next = b
        .publish(OutboundMessage::new("events.a.1", "x").expecting_last_subject_seq(2))
        .await
        .unwrap();
    assert_eq!(next.seq, 4);
}

#[tokio::test]
async fn a_filtered_purge_forgets_its_subjects_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        let purgeable = StreamConfig {
            deny_purge: false,
            ..StreamConfig::event_log()
        };
        b.ensure_stream(&purgeable).await.unwrap();
        b.publish(OutboundMessage::new("events.a.1", "x"))
            .await
            .unwrap();
        b.publish(OutboundMessage::new("events.b.1", "x"))
            .await
            .unwrap();
        b.close().await.unwrap();
    }
    {
        let b = open(dir.path());
        assert_eq!(b.purge("EVENTS", Some("events.a.>")).await.unwrap(), 1);
        assert_eq!(last_seq_on(&b, "events.a.1").await, None);
    }
    let b = open(dir.path());
    assert_eq!(last_seq_on(&b, "events.a.1").await, None);
    assert_eq!(last_seq_on(&b, "events.b.1").await, Some(2));
    b.publish(OutboundMessage::new("events.a.1", "x").expecting_last_subject_seq(0))
        .await
        .unwrap();
}

#[tokio::test]
async fn subject_sequences_survive_a_checkpoint_then_a_drop() {
    let dir = tempfile::tempdir().unwrap();
    // More than one checkpoint interval (65 536 messages), so the open
    // combines a checkpoint with a replay of the log after it.
    let total = 70_000u64;
    {
        let b = open(dir.path());
        b.ensure_stream(&StreamConfig::event_log()).await.unwrap();
        let mut next = 1;
        while next <= total {
            let batch: Vec<_> = (next..(next + 1000).min(total + 1))
                .map(|i| OutboundMessage::new(format!("events.c.{}", i % 7), "x"))
                .collect();
            next += batch.len() as u64;
            for r in b.publish_batch(batch).await {
                r.unwrap();
            }
        }
    }
    let b = open(dir.path());
    for k in 0..7u64 {
        let expected = (1..=total).rev().find(|i| i % 7 == k);
        assert_eq!(
            last_seq_on(&b, &format!("events.c.{k}")).await,
            expected,
            "events.c.{k}"
        );
    }
}

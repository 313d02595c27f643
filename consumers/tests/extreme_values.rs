//! Read-model arithmetic never wraps: a balance or counter that would leave
//! its range is a permanent failure (dead-lettered with its reason), checked
//! against an exact model with extreme amounts. And input that is not for a
//! model is skipped by it: only the consumers of every type dead-letter a
//! message whose subject is not an event subject.

mod common;

use std::{sync::Arc, time::SystemTime};

use backbone_broker::{
    Broker, OutboundMessage, StoredMessage, memory::MemoryBroker, stream::DEAD_LETTER_STREAM,
};
use backbone_consumers::{
    HandlerError, ProjectionStore,
    dead_letter::{DLQ_CONSUMER, DLQ_ERROR},
    model::{Outcome, apply_message},
    models::{Audit, Billing, Notifications},
};
use common::*;
use proptest::prelude::*;

fn stored(seq: u64, env: &backbone_schemas::Envelope) -> StoredMessage {
    StoredMessage {
        stream: "EVENTS".into(),
        seq,
        subject: env.subject(),
        headers: env.headers(),
        payload: env.payload.clone(),
        time: SystemTime::now(),
        malformed_headers: None,
    }
}

fn amount() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MAX),
        Just(i64::MAX - 1),
        Just(i64::MAX / 2 + 1),
        Just(1i64),
        1i64..=i64::MAX,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Payments and refunds with amounts up to `i64::MAX`: the stored
    /// balance always equals the exact (i128) sum of what was applied, and
    /// every payment whose sum would not fit an i64 is a permanent failure.
    #[test]
    fn balances_never_wrap(ops in proptest::collection::vec((any::<bool>(), amount()), 1..12)) {
        let dir = tempfile::tempdir().unwrap();
        let store = ProjectionStore::open(dir.path()).unwrap();
        let mut exact: i128 = 0;
        let mut paid: Vec<(String, i64)> = Vec::new();
        for (i, (is_refund, amount)) in ops.into_iter().enumerate() {
            let seq = i as u64 + 1;
            let env = match (is_refund, paid.last()) {
                (true, Some((id, remaining))) => {
                    refund("u-1", &format!("r-{i}"), id, amount.min(*remaining))
                }
                _ => payment("u-1", &format!("p-{i}"), amount),
            };
            let mut tx = store.transaction();
            let outcome = apply_message(&Billing, &stored(seq, &env), &mut tx);
            store.commit(tx, seq).unwrap();
            let change: i128 = match (is_refund, paid.last()) {
                (true, Some((_, remaining))) => -i128::from(amount.min(*remaining)),
                _ => i128::from(amount),
            };
            let fits = i64::try_from(exact + change).is_ok();
            match outcome {
                Outcome::Applied => {
                    prop_assert!(fits);
                    exact += change;
                    if change > 0 {
                        paid.push((format!("p-{i}"), amount));
                    } else if let Some(last) = paid.last_mut() {
                        last.1 -= (-change) as i64;
                        if last.1 == 0 {
                            paid.pop();
                        }
                    }
                }
                Outcome::Failed(HandlerError::Permanent(_)) => prop_assert!(!fits),
                other => prop_assert!(false, "unexpected {:?}", other),
            }
            prop_assert_eq!(
                i128::from(Billing::balance(&store, "u-1", "USD").unwrap()),
                exact
            );
        }
    }
}

#[tokio::test]
async fn an_overflowing_payment_is_dead_lettered_with_its_reason() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let events = vec![
        payment("u-1", "p-1", i64::MAX),
        payment("u-1", "p-2", 1),
        payment("u-2", "p-3", 5),
    ];
    publish_all(broker.as_ref(), &events).await;
    let dir = tempfile::tempdir().unwrap();
    let store = run_until(
        broker.clone(),
        Arc::new(Billing),
        dir.path(),
        fast_config("billing"),
        3,
    )
    .await;
    assert_eq!(Billing::balance(&store, "u-1", "USD").unwrap(), i64::MAX);
    assert_eq!(Billing::balance(&store, "u-2", "USD").unwrap(), 5);
    let letter = broker.get(DEAD_LETTER_STREAM, 1).await.unwrap();
    assert_eq!(
        letter.headers.get("ce-id"),
        Some(events[1].id.to_string().as_str())
    );
    assert!(letter.headers.get(DLQ_ERROR).unwrap().contains("overflow"));
}

#[tokio::test]
async fn a_counter_at_its_limit_fails_permanently() {
    let dir = tempfile::tempdir().unwrap();
    let store = ProjectionStore::open(dir.path()).unwrap();
    // A follower count at u64::MAX, as no stream of events could reach.
    let mut tx = store.transaction();
    tx.put_json(
        &backbone_consumers::transaction::key(&[b"count", b"followers", b"u-2"]),
        &u64::MAX,
    );
    store.commit(tx, 1).unwrap();
    let mut tx = store.transaction();
    let outcome = apply_message(&Notifications, &stored(2, &follow("u-1", "u-2")), &mut tx);
    assert!(
        matches!(outcome, Outcome::Failed(HandlerError::Permanent(_))),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn only_consumers_of_every_type_dead_letter_an_invalid_subject() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    publish_all(broker.as_ref(), &[follow("u-1", "u-2")]).await;
    broker
        .publish(OutboundMessage::new("events.not-an-event", &b"junk"[..]))
        .await
        .unwrap();
    publish_all(broker.as_ref(), &[follow("u-3", "u-2")]).await;
    let dir = tempfile::tempdir().unwrap();
    for model in [
        Arc::new(Notifications) as Arc<dyn backbone_consumers::ReadModel>,
        Arc::new(Audit),
    ] {
        let config = fast_config(model.name());
        run_until(
            broker.clone(),
            model.clone(),
            &dir.path().join(model.name()),
            config,
            3,
        )
        .await;
    }
    let letters = broker.stream_info(DEAD_LETTER_STREAM).await.unwrap();
    assert_eq!(letters.messages, 1);
    let letter = broker
        .get(DEAD_LETTER_STREAM, letters.last_seq)
        .await
        .unwrap();
    assert_eq!(letter.headers.get(DLQ_CONSUMER), Some("audit"));

    // A typed model that a broad filter (nats-server 2.9: one filter per
    // consumer, `events.>`) hands the message to skips it.
    let invalid = broker.get("EVENTS", 2).await.unwrap();
    let store = ProjectionStore::open(dir.path().join("typed")).unwrap();
    for model in [
        &Notifications as &dyn backbone_consumers::ReadModel,
        &Billing,
    ] {
        let mut tx = store.transaction();
        assert_eq!(
            apply_message(model, &invalid, &mut tx),
            Outcome::NotForModel
        );
    }
}

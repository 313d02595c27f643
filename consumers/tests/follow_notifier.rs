//! The `follow-notifier` reactor on the in-memory adapter: exactly one
//! notification per event across a redelivery and a restart, none during a
//! rebuild.

mod common;

use std::{path::Path, sync::Arc, time::Duration};

use backbone_broker::{Broker, ConsumerConfig, DeliverPolicy, memory::MemoryBroker};
use backbone_consumers::{
    Metrics, ProjectionStore, ReactorRunner, RebuildOptions, RunMode,
    models::Notifications,
    reactor::Reactor,
    reactors::{FOLLOW_NOTIFIER, FollowNotifier, Outbox},
    rebuild, shutdown_channel,
};
use common::*;

/// Runs the notifier over `data` until its checkpoint reaches `target`.
async fn run_notifier(broker: Arc<dyn Broker>, data: &Path, mode: RunMode, target: u64) {
    let notifier = Arc::new(FollowNotifier::open(data).unwrap());
    let store = ProjectionStore::open(data.join(FOLLOW_NOTIFIER)).unwrap();
    let (trigger, shutdown) = shutdown_channel();
    let runner = ReactorRunner::new(
        broker,
        notifier,
        store.clone(),
        fast_config(FOLLOW_NOTIFIER),
        mode,
        &Metrics::new(),
    );
    let handle = tokio::spawn(runner.run(shutdown));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while store.checkpoint().unwrap() < target {
        assert!(tokio::time::Instant::now() < deadline, "reactor stuck");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    trigger.trigger();
    handle.await.unwrap().unwrap();
}

fn sent(data: &Path) -> Vec<String> {
    Outbox::read_all(FollowNotifier::outbox_path(data))
        .unwrap()
        .into_iter()
        .map(|n| n.idempotency_key)
        .collect()
}

#[tokio::test]
async fn fires_once_per_event_across_a_redelivery_and_a_restart() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let events = vec![
        follow("u-1", "u-2"),
        payment("u-1", "p-1", 5),
        follow("u-3", "u-2"),
    ];
    publish_all(broker.as_ref(), &events).await;
    let data = tempfile::tempdir().unwrap();

    // A previous process fetched every event, sent the first notification
    // and died before recording it or acking anything.
    {
        let consumer = broker
            .consumer(
                "EVENTS",
                ConsumerConfig {
                    deliver_policy: DeliverPolicy::ByStartSequence(1),
                    ack_wait: fast_config(FOLLOW_NOTIFIER).ack_wait,
                    max_deliver: Some(fast_config(FOLLOW_NOTIFIER).max_deliver),
                    max_ack_pending: 32,
                    ..ConsumerConfig::durable(FOLLOW_NOTIFIER)
                },
            )
            .await
            .unwrap();
        let deliveries = consumer.fetch(10, Duration::from_secs(1)).await.unwrap();
        assert_eq!(deliveries.len(), 3);
        let first = &deliveries[0].message;
        let envelope =
            backbone_schemas::Envelope::decode(&first.subject, &first.headers, &first.payload)
                .unwrap();
        FollowNotifier::open(data.path())
            .unwrap()
            .react(&envelope)
            .await
            .unwrap();
    }
    assert_eq!(sent(data.path()), vec![events[0].id.to_string()]);

    // The restarted notifier gets all three redelivered after the ack wait.
    run_notifier(broker.clone(), data.path(), RunMode::Live, 3).await;
    let expected = vec![events[0].id.to_string(), events[2].id.to_string()];
    assert_eq!(sent(data.path()), expected);

    // Restart again with a new event: only that one is sent.
    let later = follow("u-4", "u-2");
    publish_all(broker.as_ref(), std::slice::from_ref(&later)).await;
    run_notifier(broker.clone(), data.path(), RunMode::Live, 4).await;
    let mut expected = expected;
    expected.push(later.id.to_string());
    assert_eq!(sent(data.path()), expected);
}

#[tokio::test]
async fn never_fires_during_a_rebuild() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let events = vec![follow("u-1", "u-2"), follow("u-3", "u-2")];
    publish_all(broker.as_ref(), &events).await;
    let data = tempfile::tempdir().unwrap();

    // Rebuilding the follow graph runs no reactor.
    let report = rebuild(
        broker.as_ref(),
        &Notifications,
        data.path(),
        &RebuildOptions::default(),
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.checkpoint, 2);
    assert!(!FollowNotifier::outbox_path(data.path()).exists());

    // Catching the notifier up over history in rebuild mode records the
    // events without sending anything, so going live never re-sends them.
    run_notifier(broker.clone(), data.path(), RunMode::Rebuild, 2).await;
    assert!(sent(data.path()).is_empty());
    let store = ProjectionStore::open(data.path().join(FOLLOW_NOTIFIER)).unwrap();
    assert!(ReactorRunner::has_fired(&store, &events[0].id.to_string()));
    drop(store);
    let live = follow("u-5", "u-2");
    publish_all(broker.as_ref(), std::slice::from_ref(&live)).await;
    run_notifier(broker.clone(), data.path(), RunMode::Live, 3).await;
    assert_eq!(sent(data.path()), vec![live.id.to_string()]);
}

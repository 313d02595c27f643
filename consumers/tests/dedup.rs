//! Read models are idempotent on `ce-id` for their dedup horizon, not only
//! within the broker's duplicate window: an event republished byte for byte
//! after the broker's duplicate window (shortened here) changes nothing, across restarts, on every adapter; the
//! audit index records the copy as a duplicate of the first entry; a
//! rebuild reaches the same state. Past the horizon a copy is a new event.

mod common;

use std::{sync::Arc, time::Duration};

use backbone_broker::{Broker, StreamConfig, memory::MemoryBroker, stream::DEAD_LETTER_STREAM};
use backbone_consumers::{
    RuntimeConfig,
    model::ReadModel,
    models::{Audit, Billing, Notifications},
};
use backbone_schemas::Envelope;
use backbone_testkit::NatsServer;
use common::*;

/// The broker's duplicate window in these tests: copies published after it
/// are stored again, as a retry after an outage would be.
const WINDOW: Duration = Duration::from_millis(400);

/// Creates the event log with a short duplicate window and publishes `events`.
async fn publish_with_short_window(broker: &dyn Broker, events: &[Envelope]) {
    broker
        .ensure_stream(&StreamConfig {
            duplicate_window: WINDOW,
            ..StreamConfig::event_log()
        })
        .await
        .unwrap();
    for env in events {
        broker.publish(outbound(env)).await.unwrap();
    }
}

/// Publishes `env` again, byte for byte, once the duplicate window is over.
async fn publish_copy(broker: &dyn Broker, env: &Envelope) -> u64 {
    tokio::time::sleep(WINDOW + Duration::from_millis(200)).await;
    let receipt = broker.publish(outbound(env)).await.unwrap();
    assert!(!receipt.duplicate, "the broker still deduplicated the copy");
    receipt.seq
}

async fn run(broker: &Arc<dyn Broker>, model: &Arc<dyn ReadModel>, dir: &std::path::Path, to: u64) {
    run_until(
        broker.clone(),
        model.clone(),
        &dir.join(model.name()),
        fast_config(model.name()),
        to,
    )
    .await;
}

async fn copies_change_nothing(broker: Arc<dyn Broker>) {
    let followed = follow("u-1", "u-2");
    let paid = payment("u-1", "p-1", 700);
    // 1 follow, 2 unfollow, 3 payment.
    publish_with_short_window(
        broker.as_ref(),
        &[followed.clone(), unfollow("u-1", "u-2"), paid.clone()],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let models: Vec<Arc<dyn ReadModel>> =
        vec![Arc::new(Notifications), Arc::new(Billing), Arc::new(Audit)];
    // Where each model's checkpoint ends: notifications takes follows only
    // (on a server with several filters per consumer it never sees 3).
    let first_end = |m: &Arc<dyn ReadModel>| {
        if m.name() == "notifications" && broker.features().multiple_filter_subjects {
            2
        } else {
            3
        }
    };
    for model in &models {
        run(&broker, model, dir.path(), first_end(model)).await;
    }
    // The copies arrive after a restart of every model.
    let follow_copy = publish_copy(broker.as_ref(), &followed).await;
    let payment_copy = publish_copy(broker.as_ref(), &paid).await;
    assert_eq!((follow_copy, payment_copy), (4, 5));
    for model in &models {
        let end = if model.name() == "notifications" && broker.features().multiple_filter_subjects {
            4
        } else {
            5
        };
        run(&broker, model, dir.path(), end).await;
    }

    let open =
        |name: &str| backbone_consumers::ProjectionStore::open(dir.path().join(name)).unwrap();
    let notifications = open("notifications");
    assert!(
        Notifications::followers(&notifications, "u-2")
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        Notifications::follower_count(&notifications, "u-2").unwrap(),
        0
    );
    assert_eq!(
        Notifications::feed(&notifications, "u-2", 10)
            .unwrap()
            .len(),
        1
    );
    let billing = open("billing");
    assert_eq!(Billing::balance(&billing, "u-1", "USD").unwrap(), 700);
    assert_eq!(Billing::ledger(&billing, "u-1").unwrap().len(), 1);
    let audit = open("audit");
    let first = Audit::by_id(&audit, &followed.id.to_string())
        .unwrap()
        .unwrap();
    assert_eq!(first.seq, 1);
    assert_eq!(Audit::duplicate_of(&audit, 4).unwrap(), Some(1));
    assert_eq!(Audit::duplicate_of(&audit, 5).unwrap(), Some(3));
    assert_eq!(Audit::duplicate_of(&audit, 2).unwrap(), None);
    // No dead letter: a copy is not an invalid payment.
    assert_eq!(
        broker
            .stream_info(DEAD_LETTER_STREAM)
            .await
            .map(|i| i.messages)
            .unwrap_or(0),
        0
    );
    for (model, store) in models.iter().zip([notifications, billing, audit]) {
        assert_eq!(
            scratch_digest(broker.as_ref(), model.as_ref(), 5).await,
            store.digest().unwrap(),
            "{}",
            model.name()
        );
    }
}

#[tokio::test]
async fn memory_adapter_skips_copies() {
    copies_change_nothing(Arc::new(MemoryBroker::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_adapter_skips_copies() {
    let dir = tempfile::tempdir().unwrap();
    let broker = embedded_log(dir.path());
    copies_change_nothing(Arc::new(broker)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_adapter_skips_copies() {
    let server = NatsServer::new();
    let broker = jetstream(server.url()).await;
    copies_change_nothing(Arc::new(broker)).await;
}

#[tokio::test]
async fn a_copy_past_the_horizon_applies_as_a_new_event() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let paid = payment("u-1", "p-1", 700);
    publish_with_short_window(broker.as_ref(), std::slice::from_ref(&paid)).await;
    // The copy comes after the window and after this horizon.
    let horizon = Duration::from_millis(300);
    publish_copy(broker.as_ref(), &paid).await;
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        dedup_horizon: horizon,
        ..fast_config("billing")
    };
    let store = run_until(broker.clone(), Arc::new(Billing), dir.path(), config, 2).await;
    // Billing itself refuses a second payment with the same id: the copy
    // reached the model, which dead-lettered it.
    assert_eq!(Billing::balance(&store, "u-1", "USD").unwrap(), 700);
    assert_eq!(
        broker
            .stream_info(DEAD_LETTER_STREAM)
            .await
            .unwrap()
            .messages,
        1
    );
}

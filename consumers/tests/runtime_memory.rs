//! The projection runtime on the in-memory adapter: dead letters, retries
//! with backoff, restarts, rebuilds and reactors.

mod common;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use backbone_broker::{Broker, memory::MemoryBroker, stream::DEAD_LETTER_STREAM};
use backbone_consumers::{
    HandlerError, Metrics, ProjectionStore, ReactorRunner, RebuildErrorKind, RebuildOptions,
    RunMode, Transaction, dead_letter,
    model::ReadModel,
    models::{Billing, Notifications, billing::Billing as B},
    reactor::Reactor,
    rebuild, shutdown_channel,
};
use backbone_schemas::{Envelope, Event, user::v1::UserFollowed};
use common::*;

#[tokio::test]
async fn poison_event_is_dead_lettered_and_later_events_apply() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let events = vec![
        payment("u-1", "p-1", 1000),
        refund("u-1", "r-1", "p-1", 5000),
        payment("u-1", "p-2", 50),
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
    assert_eq!(B::balance(&store, "u-1", "USD").unwrap(), 1050);
    let letter = broker.get(DEAD_LETTER_STREAM, 1).await.unwrap();
    assert_eq!(
        letter.subject,
        "deadletter.billing.events.payment.refunded.u-1"
    );
    assert_eq!(letter.payload, events[1].payload);
    assert_eq!(
        letter.headers.get("ce-id"),
        Some(events[1].id.to_string().as_str())
    );
    assert_eq!(letter.headers.get(dead_letter::DLQ_SEQUENCE), Some("2"));
    assert_eq!(
        letter.headers.get(dead_letter::DLQ_CONSUMER),
        Some("billing")
    );
    assert!(
        letter
            .headers
            .get(dead_letter::DLQ_ERROR)
            .unwrap()
            .contains("exceeds")
    );
    assert_eq!(
        broker
            .stream_info(DEAD_LETTER_STREAM)
            .await
            .unwrap()
            .messages,
        1
    );
}

#[tokio::test]
async fn undecodable_message_is_dead_lettered() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    publish_all(broker.as_ref(), &[follow("u-1", "u-2")]).await;
    let mut garbage = outbound(&follow("u-3", "u-2"));
    garbage.payload = bytes::Bytes::from_static(b"\xff\xff\xff");
    broker.publish(garbage).await.unwrap();
    publish_all(broker.as_ref(), &[follow("u-4", "u-2")]).await;
    let dir = tempfile::tempdir().unwrap();
    let store = run_until(
        broker.clone(),
        Arc::new(Notifications),
        dir.path(),
        fast_config("notifications"),
        3,
    )
    .await;
    assert_eq!(
        Notifications::followers(&store, "u-2").unwrap(),
        vec!["u-1", "u-4"]
    );
    let letter = broker.get(DEAD_LETTER_STREAM, 1).await.unwrap();
    assert!(
        letter
            .headers
            .get(dead_letter::DLQ_ERROR)
            .unwrap()
            .contains("undecodable")
    );
}

/// Fails transiently a fixed number of times per event, recording attempt times.
#[derive(Debug)]
struct Flaky {
    failures: u32,
    attempts: AtomicU32,
    times: Mutex<Vec<std::time::Instant>>,
}

impl ReadModel for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }
    fn event_types(&self) -> &'static [&'static str] {
        &[]
    }
    fn apply(
        &self,
        seq: u64,
        _event: &Envelope,
        tx: &mut Transaction<'_>,
    ) -> Result<(), HandlerError> {
        if seq == 2 {
            self.times.lock().unwrap().push(std::time::Instant::now());
            if self.attempts.fetch_add(1, Ordering::SeqCst) < self.failures {
                return Err(HandlerError::transient("dependency down"));
            }
        }
        tx.put_json(&seq.to_be_bytes(), &seq);
        Ok(())
    }
}

#[tokio::test]
async fn transient_failure_succeeds_after_retries_with_backoff_in_order() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    publish_all(
        broker.as_ref(),
        &[
            follow("u-1", "u-2"),
            follow("u-3", "u-2"),
            follow("u-4", "u-2"),
        ],
    )
    .await;
    let model = Arc::new(Flaky {
        failures: 2,
        attempts: AtomicU32::new(0),
        times: Mutex::new(Vec::new()),
    });
    let dir = tempfile::tempdir().unwrap();
    let store = run_until(
        broker.clone(),
        model.clone(),
        dir.path(),
        fast_config("flaky"),
        3,
    )
    .await;
    assert_eq!(store.len(), 3);
    let times = model.times.lock().unwrap().clone();
    assert_eq!(times.len(), 3);
    assert!(times[1] - times[0] >= Duration::from_millis(50));
    assert!(times[2] - times[1] >= Duration::from_millis(100));
    assert!(
        broker
            .stream_info(DEAD_LETTER_STREAM)
            .await
            .unwrap()
            .messages
            == 0
    );
}

#[tokio::test]
async fn transient_failure_past_max_deliveries_is_dead_lettered() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    publish_all(
        broker.as_ref(),
        &[
            follow("u-1", "u-2"),
            follow("u-3", "u-2"),
            follow("u-4", "u-2"),
        ],
    )
    .await;
    let model = Arc::new(Flaky {
        failures: 100,
        attempts: AtomicU32::new(0),
        times: Mutex::new(Vec::new()),
    });
    let dir = tempfile::tempdir().unwrap();
    let store = run_until(
        broker.clone(),
        model.clone(),
        dir.path(),
        fast_config("flaky"),
        3,
    )
    .await;
    assert_eq!(store.len(), 2);
    assert_eq!(model.attempts.load(Ordering::SeqCst), 4);
    let letter = broker.get(DEAD_LETTER_STREAM, 1).await.unwrap();
    assert_eq!(letter.headers.get(dead_letter::DLQ_DELIVERIES), Some("4"));
    assert_eq!(letter.headers.get(dead_letter::DLQ_SEQUENCE), Some("2"));
}

#[tokio::test]
async fn restart_resumes_from_the_checkpoint_and_rebuild_matches_live() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let events = workload(300, 7);
    publish_all(broker.as_ref(), &events[..150]).await;
    let data = tempfile::tempdir().unwrap();
    let live = data.path().join("billing");
    let first = last_seq_for(&Billing, &events[..150]);
    drop(
        run_until(
            broker.clone(),
            Arc::new(Billing),
            &live,
            fast_config("billing"),
            first,
        )
        .await,
    );
    publish_all(broker.as_ref(), &events[150..]).await;
    let last = last_seq_for(&Billing, &events);
    let store = run_until(
        broker.clone(),
        Arc::new(Billing),
        &live,
        fast_config("billing"),
        last,
    )
    .await;
    let live_digest = store.digest().unwrap();
    assert_eq!(
        live_digest,
        scratch_digest(broker.as_ref(), &Billing, 300).await
    );
    drop(store);

    let mut progress = Vec::new();
    let options = RebuildOptions {
        batch_size: 100,
        durable_name: Some("billing".into()),
        ..Default::default()
    };
    let report = rebuild(broker.as_ref(), &Billing, data.path(), &options, &mut |p| {
        progress.push(p)
    })
    .await
    .unwrap();
    assert_eq!((report.checkpoint, report.digest), (300, live_digest));
    assert_eq!(progress.last().unwrap().current_seq, 300);
    assert!(progress.iter().all(|p| p.target_seq == 300));
    let swapped = ProjectionStore::open(&live).unwrap();
    assert_eq!(
        (swapped.checkpoint().unwrap(), swapped.digest().unwrap()),
        (300, live_digest)
    );
}

#[tokio::test]
async fn rebuild_refuses_a_store_held_by_a_service() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    publish_all(broker.as_ref(), &[payment("u-1", "p-1", 10)]).await;
    let data = tempfile::tempdir().unwrap();
    let _held = ProjectionStore::open(data.path().join("billing")).unwrap();
    let err = rebuild(
        broker.as_ref(),
        &Billing,
        data.path(),
        &RebuildOptions::default(),
        &mut |_| {},
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), &RebuildErrorKind::Locked);
}

#[derive(Debug, Default)]
struct Notifier {
    sent: Mutex<Vec<String>>,
}

#[async_trait]
impl Reactor for Notifier {
    fn name(&self) -> &'static str {
        "notifier"
    }
    fn event_types(&self) -> &'static [&'static str] {
        &[UserFollowed::TYPE]
    }
    async fn react(&self, event: &Envelope) -> Result<(), HandlerError> {
        self.sent.lock().unwrap().push(event.id.to_string());
        Ok(())
    }
}

async fn run_reactor(
    broker: Arc<dyn Broker>,
    reactor: Arc<Notifier>,
    dir: &std::path::Path,
    mode: RunMode,
    durable: &str,
    target: u64,
) {
    let store = ProjectionStore::open(dir).unwrap();
    let (trigger, shutdown) = shutdown_channel();
    let runner = ReactorRunner::new(
        broker,
        reactor,
        store.clone(),
        fast_config(durable),
        mode,
        &Metrics::new(),
    );
    let handle = tokio::spawn(runner.run(shutdown));
    while store.checkpoint().unwrap() < target {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    trigger.trigger();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn reactor_fires_once_per_event_and_never_in_rebuild_mode() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let events = vec![
        follow("u-1", "u-2"),
        payment("u-1", "p-1", 5),
        follow("u-3", "u-2"),
    ];
    publish_all(broker.as_ref(), &events).await;
    let dir = tempfile::tempdir().unwrap();
    let notifier = Arc::new(Notifier::default());
    run_reactor(
        broker.clone(),
        notifier.clone(),
        dir.path(),
        RunMode::Live,
        "notifier",
        3,
    )
    .await;
    assert_eq!(notifier.sent.lock().unwrap().len(), 2);
    // A second durable over the same fired-id store: redelivered history is not re-sent.
    run_reactor(
        broker.clone(),
        notifier.clone(),
        dir.path(),
        RunMode::Live,
        "notifier-2",
        3,
    )
    .await;
    assert_eq!(notifier.sent.lock().unwrap().len(), 2);

    let replay_dir = tempfile::tempdir().unwrap();
    let fenced = Arc::new(Notifier::default());
    run_reactor(
        broker.clone(),
        fenced.clone(),
        replay_dir.path(),
        RunMode::Rebuild,
        "notifier-replay",
        3,
    )
    .await;
    assert!(fenced.sent.lock().unwrap().is_empty());
    let store = ProjectionStore::open(replay_dir.path()).unwrap();
    assert!(ReactorRunner::has_fired(&store, &events[0].id.to_string()));
}

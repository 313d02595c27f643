//! A reactor's checkpoint is its ack floor: an event handed back for a
//! retry holds it down, so recreating the durable consumer (deleted by an
//! operator, or by the startup wait's bound) redelivers that event instead
//! of skipping it, and the fired ids keep the others from firing twice.

mod common;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use backbone_broker::{Broker, memory::MemoryBroker, stream::EVENT_STREAM};
use backbone_consumers::{
    HandlerError, Metrics, ProjectionStore, Reactor, ReactorRunner, RunMode, RuntimeConfig,
    shutdown_channel,
};
use backbone_schemas::{Envelope, Event, user::v1::UserFollowed};
use common::*;

/// Fires for follows; the follow by `u-bad` fails transiently until healed.
#[derive(Debug, Default)]
struct Flaky {
    healed: AtomicBool,
    fired: Mutex<Vec<String>>,
}

#[async_trait]
impl Reactor for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }

    fn event_types(&self) -> &'static [&'static str] {
        &[UserFollowed::TYPE]
    }

    async fn react(&self, event: &Envelope) -> Result<(), HandlerError> {
        let follow: UserFollowed = event.event().map_err(HandlerError::from)?;
        if follow.follower_id == "u-bad" && !self.healed.load(Ordering::SeqCst) {
            return Err(HandlerError::transient("provider down"));
        }
        self.fired.lock().unwrap().push(follow.follower_id);
        Ok(())
    }
}

/// Runs the reactor until `done` holds, then stops it.
async fn run_until(
    broker: Arc<dyn Broker>,
    reactor: Arc<Flaky>,
    store: ProjectionStore,
    config: RuntimeConfig,
    done: impl Fn(&[String]) -> bool,
) {
    let (trigger, shutdown) = shutdown_channel();
    let runner = ReactorRunner::new(
        broker,
        reactor.clone(),
        store,
        config,
        RunMode::Live,
        &Metrics::new(),
    );
    let handle = tokio::spawn(runner.run(shutdown));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done(&reactor.fired.lock().unwrap()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fired: {:?}",
            reactor.fired.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    trigger.trigger();
    handle.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_retried_event_is_not_skipped_when_the_durable_is_recreated() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let events = vec![
        follow("u-bad", "u-1"),
        follow("u-2", "u-1"),
        follow("u-3", "u-1"),
    ];
    publish_all(broker.as_ref(), &events).await;
    let dir = tempfile::tempdir().unwrap();
    let store = ProjectionStore::open(dir.path().join("flaky")).unwrap();
    let reactor = Arc::new(Flaky::default());
    // A long backoff keeps the failed event handed back while the later
    // ones fire.
    let slow_retry = RuntimeConfig {
        backoff_base: Duration::from_secs(60),
        backoff_max: Duration::from_secs(60),
        ..fast_config("flaky")
    };
    run_until(
        broker.clone(),
        reactor.clone(),
        store.clone(),
        slow_retry,
        |fired| fired.len() == 2,
    )
    .await;
    assert_eq!(
        store.checkpoint().unwrap(),
        0,
        "the retried event holds the floor"
    );

    broker.delete_consumer(EVENT_STREAM, "flaky").await.unwrap();
    reactor.healed.store(true, Ordering::SeqCst);
    run_until(
        broker.clone(),
        reactor.clone(),
        store.clone(),
        fast_config("flaky"),
        |fired| fired.len() >= 3,
    )
    .await;
    let mut fired = reactor.fired.lock().unwrap().clone();
    fired.sort();
    assert_eq!(
        fired,
        vec!["u-2", "u-3", "u-bad"],
        "each event fired exactly once"
    );
    assert_eq!(store.checkpoint().unwrap(), 3);
}

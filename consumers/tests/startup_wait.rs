//! The wait, after a restart, for deliveries made to the previous process:
//! logged at info level, bounded, and nothing is skipped either way.

mod common;

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use backbone_broker::{Broker, ConsumerConfig, DeliverPolicy, memory::MemoryBroker};
use backbone_consumers::{
    Metrics, ProjectionRunner, ProjectionStore,
    models::{Billing, billing::Billing as B},
    shutdown_channel,
};
use common::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Four payments; a previous process of durable `billing` fetched the first
/// two and never acked them. Returns those deliveries.
async fn crashed_previous_process(broker: &Arc<dyn Broker>) -> Vec<backbone_broker::Delivery> {
    let events: Vec<_> = (1..=4)
        .map(|i| payment("u-1", &format!("p-{i}"), i * 100))
        .collect();
    publish_all(broker.as_ref(), &events[..2]).await;
    let consumer = broker
        .consumer(
            "EVENTS",
            ConsumerConfig {
                deliver_policy: DeliverPolicy::ByStartSequence(1),
                ack_wait: Duration::from_secs(1),
                max_ack_pending: 32,
                ..ConsumerConfig::durable("billing")
            },
        )
        .await
        .unwrap();
    let strays = consumer.fetch(2, Duration::from_secs(1)).await.unwrap();
    assert_eq!(strays.len(), 2);
    publish_all(broker.as_ref(), &events[2..]).await;
    strays
}

async fn run_to_completion(
    broker: Arc<dyn Broker>,
    captured: &Captured,
) -> (tempfile::TempDir, ProjectionStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ProjectionStore::open(dir.path().join("billing")).unwrap();
    let mut config = fast_config("billing");
    config.ack_wait = Duration::from_secs(1);
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let captured = captured.clone();
            move || captured.clone()
        })
        .with_ansi(false)
        .finish();
    let _logs = tracing::subscriber::set_default(subscriber);
    let runner = ProjectionRunner::new(
        broker,
        Arc::new(Billing),
        store.clone(),
        config,
        &Metrics::new(),
    );
    let (trigger, shutdown) = shutdown_channel();
    let handle = tokio::spawn(runner.run(shutdown));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while store.checkpoint().unwrap() < 4 {
        assert!(tokio::time::Instant::now() < deadline, "never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    trigger.trigger();
    let report = handle.await.unwrap().unwrap();
    assert_eq!(report.skipped, 0, "nothing was skipped");
    (dir, store)
}

#[tokio::test]
async fn waits_for_the_previous_process_deliveries_and_logs_it() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    drop(crashed_previous_process(&broker).await);
    let captured = Captured::default();
    let (_dir, store) = run_to_completion(broker, &captured).await;
    assert_eq!(B::balance(&store, "u-1", "USD").unwrap(), 1000);
    let logs = captured.text();
    assert!(
        logs.contains("waiting for 2 deliveries of the previous process to expire (ack wait 1s)"),
        "{logs}"
    );
    assert!(logs.contains(" INFO "), "{logs}");
    assert!(!logs.contains("recreating"), "{logs}");
}

#[tokio::test]
async fn the_wait_is_bounded_when_strays_never_come_back() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    let strays = crashed_previous_process(&broker).await;
    // Something keeps the previous deliveries alive forever.
    let keeper = tokio::spawn(async move {
        loop {
            for d in &strays {
                let _ = d.in_progress().await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let captured = Captured::default();
    let (_dir, store) = run_to_completion(broker, &captured).await;
    keeper.abort();
    assert_eq!(B::balance(&store, "u-1", "USD").unwrap(), 1000);
    let logs = captured.text();
    assert!(logs.contains("recreating the durable consumer"), "{logs}");
}

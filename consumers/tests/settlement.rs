//! The runner settles each committed batch in the background while it
//! applies the next one: by the time a run returns, every delivery it
//! committed is acknowledged at the broker, on every adapter.

mod common;

use std::sync::Arc;

use backbone_broker::{Broker, memory::MemoryBroker, stream::EVENT_STREAM};
use backbone_consumers::{RuntimeConfig, models::Billing};
use backbone_testkit::NatsServer;
use common::*;

/// Runs billing over a workload in small batches (so many batches overlap
/// their settlements with the next batch), then checks the broker's view.
async fn every_committed_delivery_is_acknowledged(broker: Arc<dyn Broker>) {
    let events = workload(600, 21);
    publish_all(broker.as_ref(), &events).await;
    let last = last_seq_for(&Billing, &events);
    let dir = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        batch_size: 8,
        ..fast_config("billing")
    };
    let store = run_until(
        broker.clone(),
        Arc::new(Billing),
        &dir.path().join("billing"),
        config,
        last,
    )
    .await;
    assert_eq!(store.checkpoint().unwrap(), last);

    let info = broker.consumer_info(EVENT_STREAM, "billing").await.unwrap();
    assert_eq!(info.num_ack_pending, 0, "{info:?}");
    assert_eq!(info.num_pending, 0, "{info:?}");
    assert_eq!(info.num_redelivered, 0, "{info:?}");
    assert_eq!(
        store.digest().unwrap(),
        scratch_digest(broker.as_ref(), &Billing, last).await
    );
}

#[tokio::test]
async fn memory_adapter_ends_with_nothing_pending() {
    every_committed_delivery_is_acknowledged(Arc::new(MemoryBroker::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_adapter_ends_with_nothing_pending() {
    let dir = tempfile::tempdir().unwrap();
    let broker = embedded_log(dir.path());
    every_committed_delivery_is_acknowledged(Arc::new(broker)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_adapter_ends_with_nothing_pending() {
    let server = NatsServer::new();
    let broker = jetstream(server.url()).await;
    every_committed_delivery_is_acknowledged(Arc::new(broker)).await;
}

//! A rebuild records as its checkpoint the last entry it applied, never the
//! sequence it was asked to reach: a checkpoint past the log's end would make
//! the service skip the events stored there later.

mod common;

use std::sync::Arc;

use backbone_broker::{Broker, memory::MemoryBroker};
use backbone_consumers::{ProjectionStore, RebuildOptions, apply_log, models::Billing};
use common::*;

#[tokio::test]
async fn a_rebuild_past_the_end_of_the_log_stops_its_checkpoint_at_the_end() {
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    publish_all(
        broker.as_ref(),
        &[payment("u-1", "p-1", 10), payment("u-1", "p-2", 20)],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store = ProjectionStore::open(dir.path()).unwrap();
    let options = RebuildOptions {
        up_to: Some(10),
        ..Default::default()
    };
    let report = apply_log(broker.as_ref(), &Billing, &store, &options, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(report.checkpoint, 2);
    assert_eq!(store.checkpoint().unwrap(), 2);

    publish_all(broker.as_ref(), &[payment("u-1", "p-3", 30)]).await;
    let report = apply_log(broker.as_ref(), &Billing, &store, &options, &mut |_| {})
        .await
        .unwrap();
    assert_eq!((report.applied, report.checkpoint), (1, 3));
    assert_eq!(Billing::balance(&store, "u-1", "USD").unwrap(), 60);
}

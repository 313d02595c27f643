//! Property: for random event sequences, applying them incrementally in
//! random batches with duplicates and redeliveries (a crash between commit
//! and ack redelivers a whole batch) gives the same digest as rebuilding
//! from scratch.

mod common;

use std::sync::Arc;

use backbone_broker::{Broker, ReadRequest, memory::MemoryBroker};
use backbone_consumers::{
    HandlerError, ProjectionStore,
    model::{Outcome, apply_message},
    models,
};
use common::*;
use futures::StreamExt as _;
use proptest::prelude::*;

/// Drives the runtime's commit protocol through the public API: each
/// delivery window is applied in order from the checkpoint (seqs at or below
/// it are redeliveries and skipped; a window starting past the next seq is
/// held back, as the runtime holds out-of-order deliveries), then committed.
fn apply_incrementally(
    model: &dyn backbone_consumers::ReadModel,
    store: &ProjectionStore,
    messages: &[backbone_broker::StoredMessage],
    windows: &[(usize, usize)],
) {
    for &(start, len) in windows {
        let checkpoint = store.checkpoint().unwrap();
        let mut tx = store.transaction();
        let mut last = checkpoint;
        for m in messages.iter().skip(start).take(len) {
            if m.seq != last + 1 {
                continue;
            }
            match apply_message(model, m, &mut tx) {
                Outcome::Applied
                | Outcome::NotForModel
                | Outcome::NotForConsumer
                | Outcome::Duplicate { .. }
                | Outcome::Failed(HandlerError::Permanent(_)) => {}
                Outcome::Failed(e) => panic!("seed models never fail transiently: {e}"),
            }
            last = m.seq;
        }
        store.commit(tx, last).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn incremental_with_redeliveries_equals_rebuild(
        seed in any::<u64>(),
        n in 1usize..120,
        deliveries in proptest::collection::vec((0usize..120, 1usize..40), 1..60),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
            let events = workload(n, seed);
            publish_all(broker.as_ref(), &events).await;
            let messages: Vec<_> = broker
                .read("EVENTS", ReadRequest::default())
                .await
                .unwrap()
                .map(|m| m.unwrap())
                .collect()
                .await;
            for name in ["notifications", "billing", "audit"] {
                let model = models::read_model(name).unwrap();
                let dir = tempfile::tempdir().unwrap();
                let store = ProjectionStore::open(dir.path()).unwrap();
                apply_incrementally(model.as_ref(), &store, &messages, &deliveries);
                // Finish: deliver everything once more (a full redelivery).
                apply_incrementally(model.as_ref(), &store, &messages, &[(0, messages.len())]);
                let expected = scratch_digest(broker.as_ref(), model.as_ref(), n as u64).await;
                prop_assert_eq!(store.digest().unwrap(), expected, "model {}", name);
            }
            Ok(())
        })?;
    }
}

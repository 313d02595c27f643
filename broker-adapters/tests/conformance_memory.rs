//! The conformance suite on the in-memory adapter: one test per scenario.

use std::sync::Arc;

use backbone_broker::{Broker, memory::MemoryBroker};
use backbone_testkit::conformance::{Harness, SuiteFeatures};
use futures::future::BoxFuture;

/// A fresh in-memory broker; it cannot restart (nothing would survive).
struct MemoryHarness {
    broker: Arc<dyn Broker>,
}

impl Harness for MemoryHarness {
    fn broker(&self) -> BoxFuture<'_, Arc<dyn Broker>> {
        Box::pin(async move { Arc::clone(&self.broker) })
    }

    fn restart(&self) -> BoxFuture<'_, bool> {
        Box::pin(async { false })
    }

    fn features(&self) -> SuiteFeatures {
        SuiteFeatures {
            restartable: false,
            persistent: false,
            detects_double_ack: true,
            preserves_header_order: true,
        }
    }
}

async fn memory_harness() -> MemoryHarness {
    MemoryHarness {
        broker: Arc::new(MemoryBroker::new()),
    }
}

backbone_testkit::conformance_tests!(memory_harness);

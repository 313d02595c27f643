//! The conformance suite on the embedded sled log: one test per scenario,
//! each on its own temporary directory. Restart closes the broker and opens
//! the directory again.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use backbone_broker::{
    Broker, ConnectErrorKind,
    embedded::{EmbeddedBroker, EmbeddedOptions},
};
use backbone_testkit::conformance::{Harness, SuiteFeatures};
use futures::future::BoxFuture;
use tempfile::TempDir;
use tokio::sync::Mutex;

/// How long a reopen waits for handles of the previous broker (a publisher
/// mid-batch, a dropped consumer) to release the directory lock.
const REOPEN_PATIENCE: Duration = Duration::from_secs(30);

struct EmbeddedHarness {
    dir: TempDir,
    current: Mutex<Option<Arc<dyn Broker>>>,
}

impl EmbeddedHarness {
    async fn open(&self) -> Arc<dyn Broker> {
        let deadline = Instant::now() + REOPEN_PATIENCE;
        loop {
            let options = EmbeddedOptions {
                path: self.dir.path().join("log"),
                ..Default::default()
            };
            match EmbeddedBroker::open(options) {
                Ok(broker) => return Arc::new(broker),
                Err(e) if *e.kind() == ConnectErrorKind::Locked && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("opening the embedded log: {e}"),
            }
        }
    }
}

impl Harness for EmbeddedHarness {
    fn broker(&self) -> BoxFuture<'_, Arc<dyn Broker>> {
        Box::pin(async move {
            let mut current = self.current.lock().await;
            if current.is_none() {
                *current = Some(self.open().await);
            }
            Arc::clone(current.as_ref().expect("opened above"))
        })
    }

    fn restart(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let mut current = self.current.lock().await;
            if let Some(broker) = current.take() {
                // A scenario may have closed it already; closing twice is harmless here.
                let _ = broker.close().await;
            }
            *current = Some(self.open().await);
            true
        })
    }

    fn features(&self) -> SuiteFeatures {
        SuiteFeatures {
            restartable: true,
            persistent: true,
            detects_double_ack: true,
            preserves_header_order: true,
        }
    }
}

async fn embedded_harness() -> EmbeddedHarness {
    EmbeddedHarness {
        dir: tempfile::tempdir().expect("creating a temp dir"),
        current: Mutex::new(None),
    }
}

backbone_testkit::conformance_tests!(embedded_harness);

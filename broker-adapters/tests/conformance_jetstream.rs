//! The conformance suite on NATS JetStream: one test per scenario, each
//! against its own real `nats-server` (temporary store, free port). Restart
//! stops the server gracefully and starts it on the same port and store.

use std::sync::{Arc, Mutex as BlockingMutex};

use backbone_broker::{
    Broker,
    jetstream::{JetStreamBroker, JetStreamOptions},
};
use backbone_testkit::{
    NatsServer,
    conformance::{Harness, SuiteFeatures},
};
use futures::future::BoxFuture;
use tokio::sync::Mutex;

struct JetStreamHarness {
    server: Arc<BlockingMutex<NatsServer>>,
    url: String,
    current: Mutex<Arc<dyn Broker>>,
}

async fn connect(url: &str) -> Arc<dyn Broker> {
    let options = JetStreamOptions {
        urls: vec![url.to_owned()],
        name: Some("conformance".into()),
        ..Default::default()
    };
    let broker = JetStreamBroker::connect(options)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    Arc::new(broker)
}

impl Harness for JetStreamHarness {
    fn broker(&self) -> BoxFuture<'_, Arc<dyn Broker>> {
        Box::pin(async move { Arc::clone(&*self.current.lock().await) })
    }

    fn restart(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let mut current = self.current.lock().await;
            let server = Arc::clone(&self.server);
            tokio::task::spawn_blocking(move || {
                server.lock().expect("server lock poisoned").restart();
            })
            .await
            .expect("restarting nats-server");
            // Handles from before reconnect on their own; a fresh one also
            // replaces a broker a scenario closed.
            *current = connect(&self.url).await;
            true
        })
    }

    fn features(&self) -> SuiteFeatures {
        SuiteFeatures {
            restartable: true,
            persistent: true,
            // Plain acks of a no longer pending delivery get no error reply.
            detects_double_ack: false,
            // async-nats hands delivered headers over as a hash map.
            preserves_header_order: false,
        }
    }
}

async fn jetstream_harness() -> JetStreamHarness {
    let server = tokio::task::spawn_blocking(NatsServer::new)
        .await
        .expect("starting nats-server");
    let url = server.url();
    let broker = connect(&url).await;
    JetStreamHarness {
        server: Arc::new(BlockingMutex::new(server)),
        url,
        current: Mutex::new(broker),
    }
}

backbone_testkit::conformance_tests!(jetstream_harness);

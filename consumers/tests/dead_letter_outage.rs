//! An event that runs out of deliveries while its dead letter cannot be
//! stored (the dead-letter stream is missing) stays owed: nothing after it
//! passes the checkpoint, the runner reports itself unhealthy, and once the
//! stream is back the event is dead-lettered, exactly once, and the events
//! after it apply. Against a real nats-server (the stream missing) and the
//! embedded log (the stream refusing every letter).

mod common;

use std::{sync::Arc, time::Duration};

use backbone_broker::{
    Broker, StreamConfig, jetstream::JetStreamBroker, stream::DEAD_LETTER_STREAM,
};
use backbone_consumers::{
    HandlerError, Metrics, ProjectionRunner, ProjectionStore, RuntimeConfig, Transaction,
    dead_letter::DLQ_SEQUENCE, model::ReadModel, shutdown_channel,
};
use backbone_schemas::Envelope;
use backbone_testkit::NatsServer;
use common::*;

/// Fails every delivery of stream sequence 2, transiently.
#[derive(Debug)]
struct Doomed;

impl ReadModel for Doomed {
    fn name(&self) -> &'static str {
        "doomed"
    }
    fn event_types(&self) -> &'static [&'static str] {
        &[]
    }
    fn apply(&self, seq: u64, _: &Envelope, tx: &mut Transaction<'_>) -> Result<(), HandlerError> {
        if seq == 2 {
            return Err(HandlerError::transient("dependency down"));
        }
        tx.put_json(&seq.to_be_bytes(), &seq);
        Ok(())
    }
}

async fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How the dead-letter stream is made unavailable.
enum Outage {
    /// Deleted through JetStream's API (missing), then created again.
    Missing(JetStreamBroker),
    /// Limited to tiny messages, so every letter is refused, then restored.
    Refusing,
}

impl Outage {
    async fn begin(&self, broker: &dyn Broker) {
        match self {
            Self::Missing(jetstream) => {
                let deleted = jetstream
                    .client()
                    .request(
                        format!("$JS.API.STREAM.DELETE.{DEAD_LETTER_STREAM}"),
                        "".into(),
                    )
                    .await
                    .unwrap();
                assert!(String::from_utf8_lossy(&deleted.payload).contains("\"success\":true"));
            }
            Self::Refusing => {
                broker
                    .ensure_stream(&StreamConfig {
                        max_message_size: Some(16),
                        ..StreamConfig::dead_letters()
                    })
                    .await
                    .unwrap();
            }
        }
    }

    async fn end(&self, broker: &dyn Broker) {
        broker
            .ensure_stream(&StreamConfig::dead_letters())
            .await
            .unwrap();
    }
}

async fn an_exhausted_event_waits_for_its_dead_letter(broker: Arc<dyn Broker>, outage: Outage) {
    publish_all(broker.as_ref(), &[follow("u-1", "u-2")]).await;

    let dir = tempfile::tempdir().unwrap();
    let store = ProjectionStore::open(dir.path()).unwrap();
    let metrics = Metrics::new();
    metrics.health().set_unhealthy_after(Duration::ZERO);
    let config = RuntimeConfig {
        max_deliver: 2,
        ack_wait: Duration::from_secs(1),
        ..fast_config("doomed")
    };
    let (trigger, shutdown) = shutdown_channel();
    let runner = ProjectionRunner::new(
        broker.clone(),
        Arc::new(Doomed),
        store.clone(),
        config,
        &metrics,
    );
    let handle = tokio::spawn(runner.run(shutdown));
    wait_for("first event", 20, || store.checkpoint().unwrap() == 1).await;

    // The dead-letter stream becomes unavailable; then the doomed event
    // and one more arrive.
    outage.begin(broker.as_ref()).await;
    publish_all(
        broker.as_ref(),
        &[follow("u-3", "u-4"), follow("u-5", "u-6")],
    )
    .await;

    // Both deliveries fail, the letter cannot be stored: the runner holds.
    wait_for("unhealthy", 30, || !metrics.health().report().healthy).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        store.checkpoint().unwrap(),
        1,
        "the checkpoint passed an owed event"
    );
    assert!(!metrics.health().report().healthy);

    // The stream is back: the letter is stored once, the rest applies.
    outage.end(broker.as_ref()).await;
    wait_for("checkpoint past the owed event", 30, || {
        store.checkpoint().unwrap() == 3
    })
    .await;
    let info = broker.stream_info(DEAD_LETTER_STREAM).await.unwrap();
    let letters: Vec<_> = {
        let mut out = Vec::new();
        for seq in info.first_seq..=info.last_seq {
            if let Ok(letter) = broker.get(DEAD_LETTER_STREAM, seq).await {
                out.push(letter);
            }
        }
        out
    };
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].headers.get(DLQ_SEQUENCE), Some("2"));
    wait_for("healthy again", 10, || metrics.health().report().healthy).await;
    trigger.trigger();
    handle.await.unwrap().unwrap();
    assert_eq!(store.get(&3u64.to_be_bytes()).unwrap(), Some(b"3".to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_holds_an_event_while_the_dead_letter_stream_is_missing() {
    let server = NatsServer::new();
    let jetstream = jetstream(server.url()).await;
    let outage = Outage::Missing(jetstream.clone());
    an_exhausted_event_waits_for_its_dead_letter(Arc::new(jetstream), outage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_holds_an_event_while_the_dead_letter_stream_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let broker = embedded_log(dir.path());
    an_exhausted_event_waits_for_its_dead_letter(Arc::new(broker), Outage::Refusing).await;
}

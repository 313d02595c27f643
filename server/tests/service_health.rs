//! `/healthz` of the server on the in-memory adapter, through a broker
//! wrapper that can make the broker unreachable.

#[path = "../../consumers/tests/common/mod.rs"]
mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use backbone_broker::{
    Broker, Consumer, ConsumerConfig, ConsumerError, ConsumerErrorKind, ConsumerInfo, Delivery,
    Exhausted, Features, MessageStream, OutboundMessage, ProvisionOutcome, PublishError,
    PublishReceipt, ReadError, ReadRequest, StoredMessage, StreamConfig, StreamError, StreamInfo,
    memory::MemoryBroker,
};
use backbone_consumers::{Metrics, RunReport, shutdown_channel};
use backbone_server::{Server, ServerConfig, ServerError};
use common::*;

/// Delegates to a real broker; while `down` is set, consumers cannot be
/// created and fetches fail as if the broker were unreachable.
#[derive(Debug)]
struct Outage {
    inner: Arc<dyn Broker>,
    down: Arc<AtomicBool>,
}

fn unavailable() -> ConsumerError {
    ConsumerError::with_detail(ConsumerErrorKind::BrokerUnavailable, "simulated outage")
}

struct OutageConsumer {
    inner: Box<dyn Consumer>,
    down: Arc<AtomicBool>,
}

#[async_trait]
impl Consumer for OutageConsumer {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn stream(&self) -> &str {
        self.inner.stream()
    }
    async fn fetch(&self, max: usize, expires: Duration) -> Result<Vec<Delivery>, ConsumerError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(unavailable());
        }
        self.inner.fetch(max, expires).await
    }
    async fn info(&self) -> Result<ConsumerInfo, ConsumerError> {
        self.inner.info().await
    }
    async fn take_exhausted(&self) -> Result<Vec<Exhausted>, ConsumerError> {
        self.inner.take_exhausted().await
    }
}

#[async_trait]
impl Broker for Outage {
    fn features(&self) -> Features {
        self.inner.features()
    }
    async fn ensure_stream(&self, config: &StreamConfig) -> Result<ProvisionOutcome, StreamError> {
        self.inner.ensure_stream(config).await
    }
    async fn stream_info(&self, stream: &str) -> Result<StreamInfo, StreamError> {
        self.inner.stream_info(stream).await
    }
    async fn streams(&self) -> Result<Vec<StreamInfo>, StreamError> {
        self.inner.streams().await
    }
    async fn purge(&self, stream: &str, filter: Option<&str>) -> Result<u64, StreamError> {
        self.inner.purge(stream, filter).await
    }
    async fn publish(&self, message: OutboundMessage) -> Result<PublishReceipt, PublishError> {
        self.inner.publish(message).await
    }
    async fn publish_batch(
        &self,
        messages: Vec<OutboundMessage>,
    ) -> Vec<Result<PublishReceipt, PublishError>> {
        self.inner.publish_batch(messages).await
    }
    async fn get(&self, stream: &str, seq: u64) -> Result<StoredMessage, ReadError> {
        self.inner.get(stream, seq).await
    }
    async fn last_on_subject(
        &self,
        stream: &str,
        subject: &str,
    ) -> Result<Option<StoredMessage>, ReadError> {
        self.inner.last_on_subject(stream, subject).await
    }
    async fn read(&self, stream: &str, request: ReadRequest) -> Result<MessageStream, ReadError> {
        self.inner.read(stream, request).await
    }
    async fn consumer(
        &self,
        stream: &str,
        config: ConsumerConfig,
    ) -> Result<Box<dyn Consumer>, ConsumerError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(unavailable());
        }
        let inner = self.inner.consumer(stream, config).await?;
        Ok(Box::new(OutageConsumer {
            inner,
            down: self.down.clone(),
        }))
    }
    async fn consumer_info(&self, stream: &str, name: &str) -> Result<ConsumerInfo, ConsumerError> {
        self.inner.consumer_info(stream, name).await
    }
    async fn consumers(&self, stream: &str) -> Result<Vec<ConsumerInfo>, ConsumerError> {
        self.inner.consumers(stream).await
    }
    async fn delete_consumer(&self, stream: &str, name: &str) -> Result<(), ConsumerError> {
        self.inner.delete_consumer(stream, name).await
    }
    async fn close(&self) -> Result<(), PublishError> {
        self.inner.close().await
    }
}

fn config(data: &std::path::Path) -> ServerConfig {
    ServerConfig::from_toml(&format!(
        "data_dir = {:?}\nmodels = [\"billing\"]\nreactors = [\"follow-notifier\"]\n\
         fetch_wait = \"50ms\"\nack_wait = \"2s\"\nunhealthy_after = \"1s\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\n[backend]\nkind = \"embedded\"\npath = \"unused\"\n",
        data
    ))
    .unwrap()
}

type Running = tokio::task::JoinHandle<Result<Vec<(String, RunReport)>, ServerError>>;

/// Starts the server in this process on a port the system picks.
async fn start(
    data: &std::path::Path,
    broker: Arc<dyn Broker>,
    shutdown: backbone_consumers::Shutdown,
) -> (u16, Running) {
    let server = Server::start(&config(data), broker, Metrics::new())
        .await
        .unwrap();
    let port = server.local_addr().port();
    (port, tokio::spawn(server.run(shutdown)))
}

/// The status code and JSON body of `GET /healthz`.
async fn healthz(port: u16) -> Option<(u16, serde_json::Value)> {
    let response = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.ok()?))
}

/// Polls `/healthz` until it answers `status`; returns the body.
async fn wait_for_status(port: u16, status: u16) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((s, body)) = healthz(port).await
            && s == status
        {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/healthz never answered {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn healthz_turns_503_while_the_broker_stays_unreachable_and_recovers() {
    let memory: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    publish_all(memory.as_ref(), &[payment("u-1", "p-1", 10)]).await;
    let down = Arc::new(AtomicBool::new(false));
    let broker: Arc<dyn Broker> = Arc::new(Outage {
        inner: memory,
        down: down.clone(),
    });
    let data = tempfile::tempdir().unwrap();
    let (trigger, shutdown) = shutdown_channel();
    let (port, service) = start(data.path(), broker, shutdown).await;

    let body = wait_for_status(port, 200).await;
    assert_eq!(body["runners"], 2, "billing and follow-notifier: {body}");
    down.store(true, Ordering::SeqCst);
    let body = wait_for_status(port, 503).await;
    let failing = body["unhealthy"].as_array().unwrap();
    assert!(
        failing
            .iter()
            .all(|u| u["state"] == "failing" && u["error"].as_str().unwrap().starts_with("fetch")),
        "{body}"
    );
    assert!(failing.iter().any(|u| u["name"] == "billing"), "{body}");
    down.store(false, Ordering::SeqCst);
    wait_for_status(port, 200).await;

    trigger.trigger();
    let reports = service.await.unwrap().unwrap();
    assert_eq!(reports.len(), 2);
}

/// A broker that is down when the runners start does not stop them for
/// good: each keeps trying to bind its durable consumer, `/healthz` names
/// it as not bound yet with the error, and once the broker is back every
/// runner binds and the service is healthy.
#[tokio::test]
async fn healthz_names_a_runner_that_cannot_bind_until_the_broker_is_back() {
    let memory: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
    publish_all(memory.as_ref(), &[payment("u-1", "p-1", 10)]).await;
    let down = Arc::new(AtomicBool::new(true));
    let broker: Arc<dyn Broker> = Arc::new(Outage {
        inner: memory,
        down: down.clone(),
    });
    let data = tempfile::tempdir().unwrap();
    let (trigger, shutdown) = shutdown_channel();
    let (port, service) = start(data.path(), broker, shutdown).await;

    let body = wait_for_status(port, 503).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut body = body;
    while body["unhealthy"]
        .as_array()
        .is_none_or(|u| u.len() < 2 || u.iter().any(|r| r["error"].is_null()))
    {
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        body = healthz(port).await.map(|(_, b)| b).unwrap_or(body);
    }
    let waiting = body["unhealthy"].as_array().unwrap();
    assert!(
        waiting.iter().all(|u| u["state"] == "starting"
            && u["error"].as_str().unwrap().contains("broker unavailable")),
        "{body}"
    );
    down.store(false, Ordering::SeqCst);
    wait_for_status(port, 200).await;
    trigger.trigger();
    let reports = service.await.unwrap().unwrap();
    assert_eq!(reports.len(), 2);
}

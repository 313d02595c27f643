//! Tests of the suite itself: a healthy adapter passes it, and adapters with
//! a planted fault fail exactly the scenarios meant to catch that fault.

use std::sync::Arc;

use async_trait::async_trait;
use backbone_broker::{
    Broker, Consumer, ConsumerConfig, ConsumerError, ConsumerInfo, Features, MessageStream,
    OutboundMessage, ProvisionOutcome, PublishError, PublishErrorKind, PublishReceipt, ReadError,
    ReadRequest, StoredMessage, StreamConfig, StreamError, StreamInfo, memory::MemoryBroker,
    message::MSG_ID_HEADER,
};
use backbone_schemas::Headers;
use futures::future::BoxFuture;

use super::{Harness, Outcome, SCENARIOS, SuiteFeatures, run_all, run_scenario};

/// A defect planted in an otherwise correct broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// Publishes store no headers.
    DropsHeaders,
    /// Publishes ignore message ids, so nothing is deduplicated.
    ForgetsMsgIds,
    /// Unrouted subjects fail with `Rejected` instead of `NoStream`.
    WrongRoutingKind,
}

#[derive(Debug)]
struct FaultyBroker {
    inner: MemoryBroker,
    fault: Fault,
}

impl FaultyBroker {
    fn plant(&self, mut message: OutboundMessage) -> OutboundMessage {
        match self.fault {
            Fault::DropsHeaders => message.headers = Headers::new(),
            Fault::ForgetsMsgIds => {
                message.msg_id = None;
                message.headers.remove(MSG_ID_HEADER);
            }
            Fault::None | Fault::WrongRoutingKind => {}
        }
        message
    }

    fn misreport<T>(&self, result: Result<T, PublishError>) -> Result<T, PublishError> {
        match result {
            Err(e)
                if self.fault == Fault::WrongRoutingKind
                    && *e.kind() == PublishErrorKind::NoStream =>
            {
                Err(PublishError::new(PublishErrorKind::Rejected))
            }
            other => other,
        }
    }
}

#[async_trait]
impl Broker for FaultyBroker {
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
        self.misreport(self.inner.publish(self.plant(message)).await)
    }
    async fn publish_batch(
        &self,
        messages: Vec<OutboundMessage>,
    ) -> Vec<Result<PublishReceipt, PublishError>> {
        let planted = messages.into_iter().map(|m| self.plant(m)).collect();
        let results = self.inner.publish_batch(planted).await;
        results.into_iter().map(|r| self.misreport(r)).collect()
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
        self.inner.consumer(stream, config).await
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

struct FaultyHarness(Arc<dyn Broker>);

impl FaultyHarness {
    fn new(fault: Fault) -> Self {
        Self(Arc::new(FaultyBroker {
            inner: MemoryBroker::new(),
            fault,
        }))
    }
}

impl Harness for FaultyHarness {
    fn broker(&self) -> BoxFuture<'_, Arc<dyn Broker>> {
        Box::pin(async move { Arc::clone(&self.0) })
    }
    fn restart(&self) -> BoxFuture<'_, bool> {
        Box::pin(async { false })
    }
    fn features(&self) -> SuiteFeatures {
        SuiteFeatures {
            detects_double_ack: true,
            preserves_header_order: true,
            ..Default::default()
        }
    }
}

async fn outcome_of(fault: Fault, scenario: &str) -> Outcome {
    let scenario = SCENARIOS
        .iter()
        .find(|s| s.name == scenario)
        .expect("scenario exists");
    run_scenario(Arc::new(FaultyHarness::new(fault)), scenario).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_broker_passes_and_unclaimed_scenarios_are_skipped() {
    let report = run_all(FaultyHarness::new(Fault::None)).await;
    report.assert_passed();
    assert_eq!(report.outcomes.len(), SCENARIOS.len());
    let skipped: Vec<&str> = report
        .outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Skipped(_)))
        .map(|(name, _)| *name)
        .collect();
    assert_eq!(
        skipped,
        [
            "durable_survives_restart",
            "restart_during_publishes_loses_nothing"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_faults_fail_the_scenarios_that_target_them() {
    for (fault, scenario) in [
        (Fault::DropsHeaders, "publish_subscribe_headers_intact"),
        (Fault::ForgetsMsgIds, "dedup_window"),
        (Fault::WrongRoutingKind, "publish_routing_errors"),
    ] {
        let outcome = outcome_of(fault, scenario).await;
        assert!(
            matches!(outcome, Outcome::Failed(_)),
            "{scenario} did not catch {fault:?}: {outcome}"
        );
        assert_eq!(outcome_of(Fault::None, scenario).await, Outcome::Passed);
    }
}

//! Shared tools of the scenarios: failures, unique names, publishing,
//! receiving and reading with bounded waits.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use backbone_broker::{
    Broker, Consumer, Delivery, MessageStream, OutboundMessage, PublishReceipt, ReadRequest,
    StoredMessage, StreamConfig, error::Error,
};
use futures::StreamExt;

use super::harness::Harness;

/// How long a scenario waits for something that should happen. Generous on
/// purpose: the suite asserts behaviour, never speed.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// How long a scenario waits to be sure something does not happen.
pub(crate) const QUIET: Duration = Duration::from_millis(400);

/// Why a scenario failed, in words for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(String);

impl Failure {
    /// A failure described by `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a scenario returns.
pub type Verdict = Result<(), Failure>;

/// Fails the scenario with a formatted reason unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($reason:tt)+) => {
        if !$cond {
            return Err($crate::conformance::support::Failure::new(format!($($reason)+)));
        }
    };
}
pub(crate) use ensure;

/// Fails the scenario unless `left == right`, showing both.
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($what:tt)+) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            return Err($crate::conformance::support::Failure::new(format!(
                "{}: expected {:?}, got {:?}", format!($($what)+), right, left
            )));
        }
    }};
}
pub(crate) use ensure_eq;

/// Turns an adapter error into a failure naming the step that failed.
pub(crate) trait OrFail<T> {
    /// The value, or a failure "`step`: error".
    fn or_fail(self, step: &str) -> Result<T, Failure>;
}

impl<T, E: fmt::Debug> OrFail<T> for Result<T, E> {
    fn or_fail(self, step: &str) -> Result<T, Failure> {
        self.map_err(|e| Failure::new(format!("{step}: {e:?}")))
    }
}

/// Checks that `result` failed with exactly `expected`.
pub(crate) fn expect_kind<T: fmt::Debug, K: PartialEq + fmt::Debug>(
    result: Result<T, Error<K>>,
    expected: K,
    step: &str,
) -> Verdict {
    match result {
        Ok(value) => Err(Failure::new(format!(
            "{step}: expected error {expected:?}, got Ok({value:?})"
        ))),
        Err(e) if *e.kind() == expected => Ok(()),
        Err(e) => Err(Failure::new(format!(
            "{step}: expected error {expected:?}, got {e:?}"
        ))),
    }
}

/// A token no other scenario or run uses, valid in stream names and subjects.
fn unique_token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}x{}x{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// One scenario's view of the harness, with names nobody else uses.
pub(crate) struct Ctx {
    harness: Arc<dyn Harness>,
    token: String,
}

/// A stream created for one scenario, capturing `<prefix>.>`.
#[derive(Debug, Clone)]
pub(crate) struct TestStream {
    /// The stream's name.
    pub(crate) name: String,
    /// Every subject of the stream starts with this and a dot.
    pub(crate) prefix: String,
}

impl TestStream {
    /// The concrete subject `<prefix>.<rest>`.
    pub(crate) fn subject(&self, rest: &str) -> String {
        format!("{}.{rest}", self.prefix)
    }

    /// The pattern of every subject of the stream.
    pub(crate) fn all_subjects(&self) -> String {
        format!("{}.>", self.prefix)
    }
}

impl Ctx {
    pub(crate) fn new(harness: Arc<dyn Harness>) -> Self {
        Self {
            harness,
            token: unique_token(),
        }
    }

    pub(crate) fn harness(&self) -> &dyn Harness {
        &*self.harness
    }

    pub(crate) fn harness_arc(&self) -> Arc<dyn Harness> {
        Arc::clone(&self.harness)
    }

    pub(crate) async fn broker(&self) -> Arc<dyn Broker> {
        self.harness.broker().await
    }

    /// A durable name unique to this scenario run.
    pub(crate) fn durable(&self, name: &str) -> String {
        format!("{name}_{}", self.token)
    }

    /// The configuration of a stream `<label>` unique to this run, on top of
    /// `base` (name and subjects are replaced).
    pub(crate) fn stream_config(
        &self,
        label: &str,
        base: StreamConfig,
    ) -> (StreamConfig, TestStream) {
        let stream = TestStream {
            name: format!("CT_{label}_{}", self.token),
            prefix: format!("ct.{}.{label}", self.token),
        };
        let config = StreamConfig {
            name: stream.name.clone(),
            subjects: vec![stream.all_subjects()],
            description: Some(format!("conformance suite stream {label}")),
            ..base
        };
        (config, stream)
    }

    /// Creates a plain file-backed stream `<label>` unique to this run.
    pub(crate) async fn stream(&self, label: &str) -> Result<TestStream, Failure> {
        self.stream_with(label, StreamConfig::default()).await
    }

    /// Creates a stream `<label>` unique to this run from `base`.
    pub(crate) async fn stream_with(
        &self,
        label: &str,
        base: StreamConfig,
    ) -> Result<TestStream, Failure> {
        let (config, stream) = self.stream_config(label, base);
        self.broker()
            .await
            .ensure_stream(&config)
            .await
            .or_fail("ensure_stream")?;
        Ok(stream)
    }
}

/// The payload of message number `index`: its decimal text.
pub(crate) fn payload_of(index: usize) -> String {
    index.to_string()
}

/// The message number a payload from [`payload_of`] carries.
pub(crate) fn index_of(message: &StoredMessage) -> Result<usize, Failure> {
    std::str::from_utf8(&message.payload)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| Failure::new(format!("unexpected payload {:?}", message.payload)))
}

/// Publishes `count` messages numbered `0..count` with one batch, the subject
/// of each chosen by `subject_of`; all must be acknowledged, none duplicate.
pub(crate) async fn publish_numbered(
    broker: &dyn Broker,
    count: usize,
    subject_of: impl Fn(usize) -> String,
) -> Result<Vec<PublishReceipt>, Failure> {
    let messages = (0..count)
        .map(|i| OutboundMessage::new(subject_of(i), payload_of(i)))
        .collect();
    let mut receipts = Vec::with_capacity(count);
    for (i, result) in broker.publish_batch(messages).await.into_iter().enumerate() {
        let receipt = result.or_fail(&format!("publish_batch message {i}"))?;
        ensure!(
            !receipt.duplicate,
            "message {i} acknowledged as a duplicate"
        );
        receipts.push(receipt);
    }
    ensure_eq!(receipts.len(), count, "receipts of publish_batch");
    Ok(receipts)
}

/// Fetches until `count` deliveries arrived, acking each, within [`PATIENCE`].
pub(crate) async fn receive_acking(
    consumer: &dyn Consumer,
    count: usize,
) -> Result<Vec<Delivery>, Failure> {
    receive(consumer, count, true).await
}

/// Fetches until `count` deliveries arrived, within [`PATIENCE`]; acks them
/// when `ack` is set.
pub(crate) async fn receive(
    consumer: &dyn Consumer,
    count: usize,
    ack: bool,
) -> Result<Vec<Delivery>, Failure> {
    let deadline = Instant::now() + PATIENCE;
    let mut received = Vec::with_capacity(count);
    while received.len() < count {
        ensure!(
            Instant::now() < deadline,
            "consumer {} received {} of {count} messages within {PATIENCE:?}",
            consumer.name(),
            received.len()
        );
        let want = (count - received.len()).min(100);
        let batch = consumer
            .fetch(want, Duration::from_secs(1))
            .await
            .or_fail("fetch")?;
        ensure!(
            batch.len() <= want,
            "fetch({want}) returned {} deliveries",
            batch.len()
        );
        for delivery in batch {
            if ack {
                delivery.ack().await.or_fail("ack")?;
            }
            received.push(delivery);
        }
    }
    Ok(received)
}

/// Fetches once for [`QUIET`] and fails if anything is delivered.
pub(crate) async fn expect_nothing(consumer: &dyn Consumer, why: &str) -> Verdict {
    let batch = consumer.fetch(10, QUIET).await.or_fail("fetch")?;
    let seqs: Vec<u64> = batch.iter().map(|d| d.message.seq).collect();
    ensure!(
        seqs.is_empty(),
        "{why}: yet sequences {seqs:?} were delivered"
    );
    Ok(())
}

/// Fetches one delivery, waiting up to [`PATIENCE`].
pub(crate) async fn receive_one(consumer: &dyn Consumer) -> Result<Delivery, Failure> {
    let mut one = receive(consumer, 1, false).await?;
    one.pop()
        .ok_or_else(|| Failure::new("fetch returned no delivery"))
}

/// Reads a stream to its end (within [`PATIENCE`]) and returns every message.
pub(crate) async fn read_all(
    broker: &dyn Broker,
    stream: &str,
    request: ReadRequest,
) -> Result<Vec<StoredMessage>, Failure> {
    let messages: MessageStream = broker.read(stream, request).await.or_fail("read")?;
    let collected = tokio::time::timeout(PATIENCE, messages.collect::<Vec<_>>())
        .await
        .map_err(|_| Failure::new(format!("read of {stream} did not end within {PATIENCE:?}")))?;
    collected
        .into_iter()
        .map(|m| m.or_fail("read item"))
        .collect()
}

/// The stream sequences of `deliveries`, in order.
pub(crate) fn seqs(deliveries: &[Delivery]) -> Vec<u64> {
    deliveries.iter().map(|d| d.message.seq).collect()
}

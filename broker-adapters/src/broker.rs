//! The broker contract: the one interface services and tools use.

use std::fmt;

use async_trait::async_trait;

use crate::{
    consumer::{Consumer, ConsumerConfig, ConsumerInfo},
    error::{ConsumerError, PublishError, ReadError, StreamError},
    message::{OutboundMessage, PublishReceipt, StoredMessage},
    stream::{MessageStream, ProvisionOutcome, ReadRequest, StreamConfig, StreamInfo},
};

/// What an adapter offers beyond the contract's core. Callers and the
/// conformance suite check these instead of the adapter's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// Acknowledged messages survive a restart of the broker or process.
    pub persistent: bool,
    /// A consumer may filter on more than one subject pattern.
    pub multiple_filter_subjects: bool,
    /// Streams may keep more than one replica.
    pub replicas: bool,
}

/// A connection to a broker, or an open embedded log.
///
/// # Rules every adapter keeps
/// - **Order.** A stream assigns sequences 1, 2, 3, ... in the order it
///   stores messages. Messages published by one caller, one after another,
///   are stored in that order.
/// - **Durability.** A message is acknowledged (a [`PublishReceipt`] is
///   returned) only once the stream holds it; on a persistent adapter it then
///   survives a crash.
/// - **Deduplication.** A message whose id was stored within the stream's
///   duplicate window is acknowledged with `duplicate: true` and not stored
///   again. Retrying a failed publish with the same id is therefore safe.
/// - **Optimistic append.** With `expected_last_subject_seq`, the message is
///   stored only if the subject's last sequence matches; otherwise the publish
///   fails with `WrongLastSequence { actual }`.
/// - **Routing.** A subject is stored by the one stream whose subjects match
///   it; a subject no stream matches fails with `NoStream`.
/// - **Bounded waits.** Every call returns within the adapter's configured
///   timeouts, with `TimedOut` or `BrokerUnavailable` rather than hanging.
#[async_trait]
pub trait Broker: Send + Sync + fmt::Debug {
    /// What this adapter supports.
    fn features(&self) -> Features;

    /// Creates the stream, or updates it to match `config`. Idempotent.
    async fn ensure_stream(&self, config: &StreamConfig) -> Result<ProvisionOutcome, StreamError>;

    /// A stream's configuration and state.
    async fn stream_info(&self, stream: &str) -> Result<StreamInfo, StreamError>;

    /// Every stream, ordered by name.
    async fn streams(&self) -> Result<Vec<StreamInfo>, StreamError>;

    /// Removes every message of `stream` whose subject matches `filter` (all
    /// when `None`); returns how many. Fails with `Denied` on `deny_purge`.
    async fn purge(&self, stream: &str, filter: Option<&str>) -> Result<u64, StreamError>;

    /// Publishes one message and waits for its acknowledgement.
    async fn publish(&self, message: OutboundMessage) -> Result<PublishReceipt, PublishError>;

    /// Publishes messages with pipelined acknowledgements: up to the
    /// adapter's in-flight window are outstanding at once, so a large batch
    /// applies backpressure instead of buffering without bound. Results come
    /// back in input order; messages are stored in input order.
    async fn publish_batch(
        &self,
        messages: Vec<OutboundMessage>,
    ) -> Vec<Result<PublishReceipt, PublishError>>;

    /// The message with sequence `seq`.
    async fn get(&self, stream: &str, seq: u64) -> Result<StoredMessage, ReadError>;

    /// The last message stored on `subject`, if any.
    async fn last_on_subject(
        &self,
        stream: &str,
        subject: &str,
    ) -> Result<Option<StoredMessage>, ReadError>;

    /// Reads the stream in sequence order; see [`ReadRequest`].
    async fn read(&self, stream: &str, request: ReadRequest) -> Result<MessageStream, ReadError>;

    /// Creates the durable consumer `config.durable_name` on `stream`, or
    /// binds to it if it exists (updating settings that may change).
    async fn consumer(
        &self,
        stream: &str,
        config: ConsumerConfig,
    ) -> Result<Box<dyn Consumer>, ConsumerError>;

    /// A durable consumer's progress.
    async fn consumer_info(&self, stream: &str, name: &str) -> Result<ConsumerInfo, ConsumerError>;

    /// Every durable consumer of `stream`, ordered by name.
    async fn consumers(&self, stream: &str) -> Result<Vec<ConsumerInfo>, ConsumerError>;

    /// Deletes a durable consumer and its progress.
    async fn delete_consumer(&self, stream: &str, name: &str) -> Result<(), ConsumerError>;

    /// Waits until everything published so far is acknowledged and durable,
    /// then releases the connection or store. Publishing after close fails
    /// with `BrokerUnavailable`.
    async fn close(&self) -> Result<(), PublishError>;
}

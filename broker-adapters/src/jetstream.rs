//! The NATS JetStream adapter.
//!
//! Works against nats-server 2.9.10 (Debian's package) and newer. Features of
//! newer servers are detected from the server's version and degrade with a
//! typed `Unsupported` error naming both versions; see [`Features`].
//!
//! JetStream's JSON API is spoken directly (async-nats is built without its
//! `server_2_10` feature, whose consumer-creation subject 2.9 does not
//! serve); publishing uses async-nats' JetStream context for pipelined acks.
//!
//! # Header order
//! async-nats keeps headers in a hash map and writes them in that map's
//! order, so the JetStream adapter preserves the order of values under one
//! name but not the order between different names. Compare headers by name.
//!
//! ```no_run
//! # async fn demo() -> Result<(), backbone_broker::ConnectError> {
//! use backbone_broker::jetstream::{JetStreamBroker, JetStreamOptions};
//! let broker = JetStreamBroker::connect(JetStreamOptions {
//!     urls: vec!["nats://127.0.0.1:4222".into()],
//!     ..Default::default()
//! })
//! .await?;
//! # Ok(()) }
//! ```

mod api;
mod connect;
mod consumer;
mod delivery_counts;
mod errors;
mod exhausted;
mod options;
mod permissions;
mod provision;
mod publish;
mod publish_errors;
mod pull;
mod read;
mod recover;
mod version;
mod wire;

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use async_trait::async_trait;

pub use consumer::JetStreamConsumer;
pub(crate) use options::redact_url;
pub use options::{Auth, JetStreamOptions, ReconnectOptions, TlsOptions};
pub use version::ServerVersion;

use crate::{
    broker::{Broker, Features},
    consumer::{Consumer, ConsumerConfig, ConsumerInfo},
    error::{ConnectError, ConsumerError, PublishError, PublishErrorKind, ReadError, StreamError},
    message::{OutboundMessage, PublishReceipt, StoredMessage},
    stream::{MessageStream, ProvisionOutcome, ReadRequest, StreamConfig, StreamInfo},
};

/// What every part of the adapter shares: the connection and its settings.
pub(crate) struct Shared {
    client: async_nats::Client,
    context: async_nats::jetstream::Context,
    api: api::Api,
    options: JetStreamOptions,
    version: ServerVersion,
    violations: Arc<permissions::PermissionViolations>,
    closed: AtomicBool,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("options", &self.options)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A connection to NATS JetStream implementing [`Broker`].
#[derive(Clone)]
pub struct JetStreamBroker {
    shared: Arc<Shared>,
}

impl fmt::Debug for JetStreamBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamBroker")
            .field("urls", &self.shared.options.urls)
            .field("server_version", &self.shared.version)
            .finish()
    }
}

impl JetStreamBroker {
    /// Connects within `options.connect_timeout` and checks that JetStream
    /// answers.
    ///
    /// # Errors
    /// `Unreachable`, `AuthenticationFailed`, `Tls`, `InvalidOptions` or
    /// `JetStreamUnavailable`.
    pub async fn connect(options: JetStreamOptions) -> Result<Self, ConnectError> {
        let shared = connect::connect(options).await?;
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// The connected server's version.
    pub fn server_version(&self) -> ServerVersion {
        self.shared.version
    }

    /// The underlying async-nats client, for tools that need plain NATS.
    pub fn client(&self) -> &async_nats::Client {
        &self.shared.client
    }
}

#[async_trait]
impl Broker for JetStreamBroker {
    fn features(&self) -> Features {
        Features {
            persistent: true,
            multiple_filter_subjects: self.shared.version.supports_multiple_filters(),
            replicas: true,
        }
    }

    async fn ensure_stream(&self, config: &StreamConfig) -> Result<ProvisionOutcome, StreamError> {
        provision::ensure_stream(&self.shared, config).await
    }

    async fn stream_info(&self, stream: &str) -> Result<StreamInfo, StreamError> {
        provision::stream_info(&self.shared, stream).await
    }

    async fn streams(&self) -> Result<Vec<StreamInfo>, StreamError> {
        provision::streams(&self.shared).await
    }

    async fn purge(&self, stream: &str, filter: Option<&str>) -> Result<u64, StreamError> {
        provision::purge(&self.shared, stream, filter).await
    }

    async fn publish(&self, message: OutboundMessage) -> Result<PublishReceipt, PublishError> {
        publish::publish(&self.shared, message).await
    }

    async fn publish_batch(
        &self,
        messages: Vec<OutboundMessage>,
    ) -> Vec<Result<PublishReceipt, PublishError>> {
        publish::publish_batch(&self.shared, messages).await
    }

    async fn get(&self, stream: &str, seq: u64) -> Result<StoredMessage, ReadError> {
        read::get(&self.shared, stream, seq).await
    }

    async fn last_on_subject(
        &self,
        stream: &str,
        subject: &str,
    ) -> Result<Option<StoredMessage>, ReadError> {
        read::last_on_subject(&self.shared, stream, subject).await
    }

    async fn read(&self, stream: &str, request: ReadRequest) -> Result<MessageStream, ReadError> {
        read::read(&self.shared, stream, request).await
    }

    async fn consumer(
        &self,
        stream: &str,
        config: ConsumerConfig,
    ) -> Result<Box<dyn Consumer>, ConsumerError> {
        let bound = consumer::bind(&self.shared, stream, config).await?;
        Ok(Box::new(bound))
    }

    async fn consumer_info(&self, stream: &str, name: &str) -> Result<ConsumerInfo, ConsumerError> {
        consumer::info(&self.shared, stream, name)
            .await
            .map(|info| info.to_info())
            .map_err(errors::consumer_error)
    }

    async fn consumers(&self, stream: &str) -> Result<Vec<ConsumerInfo>, ConsumerError> {
        consumer::list(&self.shared, stream).await
    }

    async fn delete_consumer(&self, stream: &str, name: &str) -> Result<(), ConsumerError> {
        consumer::info(&self.shared, stream, name)
            .await
            .map_err(errors::consumer_error)?;
        self.shared
            .api
            .request::<serde_json::Value>(
                &format!("CONSUMER.DELETE.{stream}.{name}"),
                &serde_json::Value::Null,
            )
            .await
            .map(|_| ())
            .map_err(errors::consumer_error)
    }

    async fn close(&self) -> Result<(), PublishError> {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // Publishes return only once acknowledged, so everything acknowledged
        // is durable; flushing sends whatever else is buffered.
        self.shared
            .client
            .flush()
            .await
            .map_err(|e| PublishError::with_source(PublishErrorKind::BrokerUnavailable, e))?;
        self.shared
            .client
            .drain()
            .await
            .map_err(|e| PublishError::with_source(PublishErrorKind::BrokerUnavailable, e))
    }
}

//! The local engine behind the in-memory and embedded adapters.
//!
//! One implementation of every rule of [`crate::Broker`] and
//! [`crate::Consumer`], generic over [`storage::Storage`]: ordered trees of
//! bytes in memory or in sled. The engine encodes and checksums every value
//! itself, so both backends store the same bytes and behave the same.

mod codec;
mod consumer_state;
mod consumers;
mod core;
mod indexes;
mod publish;
mod read;
#[cfg(feature = "embedded")]
mod segment_log;
#[cfg(feature = "embedded")]
pub(crate) mod sled_storage;
pub(crate) mod storage;
mod streams;
use backbone_core::subject;

use std::{fmt, sync::Arc, sync::atomic::Ordering};

use async_trait::async_trait;

#[cfg(feature = "embedded")]
pub(crate) use self::core::FORMAT_VERSION;
use self::{
    consumers::{LocalAcker, LocalConsumer},
    core::Core,
    storage::Storage,
};
use crate::{
    broker::{Broker, Features},
    consumer::{Consumer, ConsumerConfig, ConsumerInfo},
    error::{
        ConnectError, ConsumerError, Error, PublishError, PublishErrorKind, ReadError, StreamError,
    },
    message::{OutboundMessage, PublishReceipt, StoredMessage},
    stream::{MessageStream, ProvisionOutcome, ReadRequest, StreamConfig, StreamInfo},
};

/// A [`Broker`] on local storage.
pub(crate) struct LocalBroker<S: Storage> {
    core: Arc<Core<S>>,
}

impl<S: Storage> LocalBroker<S> {
    /// Opens the engine on `storage`; `label` names the store in messages.
    pub(crate) fn open(
        storage: S,
        max_payload: usize,
        label: String,
    ) -> Result<Self, ConnectError> {
        Ok(Self {
            core: Arc::new(Core::open(storage, max_payload, label)?),
        })
    }
}

impl<S: Storage> fmt::Debug for LocalBroker<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalBroker({})", self.core.label)
    }
}

#[async_trait]
impl<S: Storage> Broker for LocalBroker<S> {
    fn features(&self) -> Features {
        Features {
            persistent: self.core.storage.persistent(),
            multiple_filter_subjects: true,
            replicas: false,
        }
    }

    async fn ensure_stream(&self, config: &StreamConfig) -> Result<ProvisionOutcome, StreamError> {
        let outcome = self.core.ensure_stream(config)?;
        let epoch = self.core.written.load(Ordering::SeqCst);
        self.core
            .wait_durable(epoch)
            .await
            .map_err(|e| Error::with_source(crate::error::StreamErrorKind::StorageFailure, e))?;
        Ok(outcome)
    }

    async fn stream_info(&self, stream: &str) -> Result<StreamInfo, StreamError> {
        self.core.stream_info(stream)
    }

    async fn streams(&self) -> Result<Vec<StreamInfo>, StreamError> {
        Ok(self.core.all_streams())
    }

    async fn purge(&self, stream: &str, filter: Option<&str>) -> Result<u64, StreamError> {
        let (purged, epoch) = self.core.purge_locked(stream, filter)?;
        self.core
            .wait_durable(epoch)
            .await
            .map_err(|e| Error::with_source(crate::error::StreamErrorKind::StorageFailure, e))?;
        Ok(purged)
    }

    async fn publish(&self, message: OutboundMessage) -> Result<PublishReceipt, PublishError> {
        self.core
            .publish_all(vec![message])
            .await
            .pop()
            .unwrap_or_else(|| Err(Error::new(PublishErrorKind::StorageFailure)))
    }

    async fn publish_batch(
        &self,
        messages: Vec<OutboundMessage>,
    ) -> Vec<Result<PublishReceipt, PublishError>> {
        self.core.publish_all(messages).await
    }

    async fn get(&self, stream: &str, seq: u64) -> Result<StoredMessage, ReadError> {
        self.core.get_message(stream, seq)
    }

    async fn last_on_subject(
        &self,
        stream: &str,
        subject: &str,
    ) -> Result<Option<StoredMessage>, ReadError> {
        self.core.last_message_on(stream, subject)
    }

    async fn read(&self, stream: &str, request: ReadRequest) -> Result<MessageStream, ReadError> {
        self.core.read_stream(stream, request)
    }

    async fn consumer(
        &self,
        stream: &str,
        config: ConsumerConfig,
    ) -> Result<Box<dyn Consumer>, ConsumerError> {
        let name = config.durable_name.clone();
        let epoch = self.core.bind_consumer(stream, config)?;
        self.core
            .wait_durable(epoch)
            .await
            .map_err(|e| Error::with_source(crate::error::ConsumerErrorKind::StorageFailure, e))?;
        let acker = Arc::new(LocalAcker {
            core: self.core.clone(),
            stream: stream.to_owned(),
            name: name.clone(),
        });
        Ok(Box::new(LocalConsumer {
            core: self.core.clone(),
            stream: stream.to_owned(),
            name,
            acker,
        }))
    }

    async fn consumer_info(&self, stream: &str, name: &str) -> Result<ConsumerInfo, ConsumerError> {
        self.core.consumer_progress(stream, name)
    }

    async fn consumers(&self, stream: &str) -> Result<Vec<ConsumerInfo>, ConsumerError> {
        self.core.all_consumers(stream)
    }

    async fn delete_consumer(&self, stream: &str, name: &str) -> Result<(), ConsumerError> {
        let epoch = self.core.remove_consumer(stream, name)?;
        self.core
            .wait_durable(epoch)
            .await
            .map_err(|e| Error::with_source(crate::error::ConsumerErrorKind::StorageFailure, e))
    }

    async fn close(&self) -> Result<(), PublishError> {
        self.core.closed.store(true, Ordering::SeqCst);
        self.core
            .checkpoint_all()
            .map_err(|e| Error::with_source(PublishErrorKind::StorageFailure, e))?;
        let epoch = self.core.bump_epoch();
        self.core
            .wait_durable(epoch)
            .await
            .map_err(|e| Error::with_source(PublishErrorKind::StorageFailure, e))
    }
}

/// Implements [`Broker`] for a newtype around a [`LocalBroker`] by delegation.
macro_rules! delegate_broker {
    ($outer:ty) => {
        #[async_trait::async_trait]
        impl $crate::broker::Broker for $outer {
            fn features(&self) -> $crate::broker::Features {
                self.inner.features()
            }
            async fn ensure_stream(
                &self,
                config: &$crate::stream::StreamConfig,
            ) -> Result<$crate::stream::ProvisionOutcome, $crate::error::StreamError> {
                self.inner.ensure_stream(config).await
            }
            async fn stream_info(
                &self,
                stream: &str,
            ) -> Result<$crate::stream::StreamInfo, $crate::error::StreamError> {
                self.inner.stream_info(stream).await
            }
            async fn streams(
                &self,
            ) -> Result<Vec<$crate::stream::StreamInfo>, $crate::error::StreamError> {
                self.inner.streams().await
            }
            async fn purge(
                &self,
                stream: &str,
                filter: Option<&str>,
            ) -> Result<u64, $crate::error::StreamError> {
                self.inner.purge(stream, filter).await
            }
            async fn publish(
                &self,
                message: $crate::message::OutboundMessage,
            ) -> Result<$crate::message::PublishReceipt, $crate::error::PublishError> {
                self.inner.publish(message).await
            }
            async fn publish_batch(
                &self,
                messages: Vec<$crate::message::OutboundMessage>,
            ) -> Vec<Result<$crate::message::PublishReceipt, $crate::error::PublishError>> {
                self.inner.publish_batch(messages).await
            }
            async fn get(
                &self,
                stream: &str,
                seq: u64,
            ) -> Result<$crate::message::StoredMessage, $crate::error::ReadError> {
                self.inner.get(stream, seq).await
            }
            async fn last_on_subject(
                &self,
                stream: &str,
                subject: &str,
            ) -> Result<Option<$crate::message::StoredMessage>, $crate::error::ReadError> {
                self.inner.last_on_subject(stream, subject).await
            }
            async fn read(
                &self,
                stream: &str,
                request: $crate::stream::ReadRequest,
            ) -> Result<$crate::stream::MessageStream, $crate::error::ReadError> {
                self.inner.read(stream, request).await
            }
            async fn consumer(
                &self,
                stream: &str,
                config: $crate::consumer::ConsumerConfig,
            ) -> Result<Box<dyn $crate::consumer::Consumer>, $crate::error::ConsumerError> {
                self.inner.consumer(stream, config).await
            }
            async fn consumer_info(
                &self,
                stream: &str,
                name: &str,
            ) -> Result<$crate::consumer::ConsumerInfo, $crate::error::ConsumerError> {
                self.inner.consumer_info(stream, name).await
            }
            async fn consumers(
                &self,
                stream: &str,
            ) -> Result<Vec<$crate::consumer::ConsumerInfo>, $crate::error::ConsumerError> {
                self.inner.consumers(stream).await
            }
            async fn delete_consumer(
                &self,
                stream: &str,
                name: &str,
            ) -> Result<(), $crate::error::ConsumerError> {
                self.inner.delete_consumer(stream, name).await
            }
            async fn close(&self) -> Result<(), $crate::error::PublishError> {
                self.inner.close().await
            }
        }
    };
}
pub(crate) use delegate_broker;

//! Backbone's broker contract and its adapters.
//!
//! Services and tools talk to the event log only through the [`Broker`] and
//! [`Consumer`] traits. Three adapters implement them with the same
//! semantics, proven by one conformance suite (`backbone-testkit`):
//!
//! - [`embedded`]: a sled-backed log on local disk, the default; no server.
//! - [`jetstream`]: NATS JetStream through async-nats, for production.
//! - [`memory`]: in process and not persistent, for unit tests.

pub mod backend;
pub mod broker;
pub mod consumer;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod error;
#[cfg(feature = "jetstream")]
pub mod jetstream;
mod local;
pub mod memory;
pub mod message;
#[cfg(feature = "typed")]
pub mod publisher;
pub mod record;
pub mod stream;

pub use backend::Backend;
pub use broker::{Broker, Features};
pub use consumer::{
    AckKind, Acker, Consumer, ConsumerConfig, ConsumerInfo, DeliverPolicy, Delivery, Exhausted,
};
pub use error::{
    AckError, AckErrorKind, ConnectError, ConnectErrorKind, ConsumerError, ConsumerErrorKind,
    PublishError, PublishErrorKind, ReadError, ReadErrorKind, StreamError, StreamErrorKind,
};
pub use message::{MalformedHeaders, OutboundMessage, PublishReceipt, StoredMessage};
#[cfg(feature = "typed")]
pub use publisher::{EventPublishError, EventPublishErrorKind, EventPublisher};
pub use stream::{
    MessageStream, ProvisionOutcome, ReadRequest, ReadStart, StorageKind, StreamConfig, StreamInfo,
};

//! Durable pull consumers: configuration, deliveries and acknowledgements.
//!
//! # The rules every adapter keeps
//! - A durable consumer remembers, across restarts of the consumer and (for
//!   persistent adapters) of the broker, which messages were acknowledged: a
//!   recreated durable of the same name never redelivers an acked message.
//! - Delivery is at least once. A message not acked within `ack_wait` is
//!   delivered again with `delivery_count` one higher; `nak` with a delay
//!   redelivers no earlier than the delay; `term` never redelivers.
//! - With `max_ack_pending = 1` messages come in stream order and the next is
//!   not delivered before the current one is acked or termed.
//! - When a message reaches `max_deliver` deliveries without an ack or term it
//!   is not delivered again, and the next [`Consumer::take_exhausted`] reports
//!   it, so nothing is dropped silently.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;

use crate::{
    error::{AckError, ConsumerError},
    message::StoredMessage,
};

/// Which messages a new durable consumer starts with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeliverPolicy {
    /// Every stored message.
    #[default]
    All,
    /// Only messages stored after the consumer was created.
    New,
    /// Messages from this stream sequence on.
    ByStartSequence(u64),
    /// Messages stored at or after this time.
    ByStartTime(SystemTime),
}

/// A durable consumer's configuration. Build one with `..Default::default()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Durable name: letters, digits, `-` and `_`.
    pub durable_name: String,
    /// Human-readable description.
    pub description: Option<String>,
    /// Where a new consumer starts; ignored when binding an existing one.
    pub deliver_policy: DeliverPolicy,
    /// Only subjects matching one of these patterns; empty means all. More
    /// than one needs a server with that feature (see [`crate::Features`]).
    pub filter_subjects: Vec<String>,
    /// How long a delivery may stay unacknowledged before redelivery.
    pub ack_wait: Duration,
    /// Deliveries per message before it is given up; `None` is unlimited.
    pub max_deliver: Option<u32>,
    /// Redelivery delays after each failed attempt, instead of `ack_wait`;
    /// the last entry repeats.
    pub backoff: Vec<Duration>,
    /// Deliveries outstanding at once; 1 gives strict order.
    pub max_ack_pending: usize,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            durable_name: String::new(),
            description: None,
            deliver_policy: DeliverPolicy::All,
            filter_subjects: Vec::new(),
            ack_wait: Duration::from_secs(30),
            max_deliver: None,
            backoff: Vec::new(),
            max_ack_pending: 1000,
        }
    }
}

impl ConsumerConfig {
    /// A consumer named `durable_name` with every other setting at its default.
    pub fn durable(durable_name: impl Into<String>) -> Self {
        Self {
            durable_name: durable_name.into(),
            ..Default::default()
        }
    }
}

/// A durable consumer's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// The stream consumed.
    pub stream: String,
    /// The durable name.
    pub name: String,
    /// Highest stream sequence delivered so far.
    pub delivered_stream_seq: u64,
    /// Every message up to this stream sequence is acknowledged or termed.
    pub ack_floor_stream_seq: u64,
    /// Matching messages not yet delivered (the consumer's lag).
    pub num_pending: u64,
    /// Deliveries awaiting an acknowledgement.
    pub num_ack_pending: u64,
    /// Messages delivered more than once and still pending.
    pub num_redelivered: u64,
}

/// How a delivery is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckKind {
    /// Processed: never deliver again.
    Ack,
    /// Failed: deliver again, no earlier than `delay` (or the consumer's
    /// backoff when `None`).
    Nak {
        /// Minimum time before redelivery.
        delay: Option<Duration>,
    },
    /// Still working: restart the ack wait.
    Progress,
    /// Give up: never deliver again.
    Term {
        /// Why, for the broker's advisory and logs.
        reason: Option<String>,
    },
}

/// Settles deliveries; each adapter has its own.
#[async_trait]
pub trait Acker: Send + Sync + fmt::Debug {
    /// Settles the delivery of `stream_seq` that this acker was handed with.
    async fn settle(&self, stream_seq: u64, kind: AckKind) -> Result<(), AckError>;
}

/// One delivery of a message to a consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message.
    pub message: StoredMessage,
    /// 1 on the first delivery, higher on redeliveries.
    pub delivery_count: u32,
    /// Matching messages still to be delivered after this one.
    pub pending: u64,
    acker: Arc<dyn Acker>,
}

impl Delivery {
    /// A delivery settled through `acker`. For adapter implementations.
    pub fn new(
        message: StoredMessage,
        delivery_count: u32,
        pending: u64,
        acker: Arc<dyn Acker>,
    ) -> Self {
        Self {
            message,
            delivery_count,
            pending,
            acker,
        }
    }

    /// Marks the message processed.
    pub async fn ack(&self) -> Result<(), AckError> {
        self.settle(AckKind::Ack).await
    }

    /// Asks for redelivery after `delay` (the consumer's backoff when `None`).
    pub async fn nak(&self, delay: Option<Duration>) -> Result<(), AckError> {
        self.settle(AckKind::Nak { delay }).await
    }

    /// Restarts the ack wait for a long-running handler.
    pub async fn in_progress(&self) -> Result<(), AckError> {
        self.settle(AckKind::Progress).await
    }

    /// Gives the message up for good.
    pub async fn term(&self, reason: impl Into<String>) -> Result<(), AckError> {
        self.settle(AckKind::Term {
            reason: Some(reason.into()),
        })
        .await
    }

    /// Settles the delivery with any [`AckKind`].
    pub async fn settle(&self, kind: AckKind) -> Result<(), AckError> {
        self.acker.settle(self.message.seq, kind).await
    }
}

/// A message whose deliveries ran out without an ack or term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exhausted {
    /// Its stream sequence.
    pub stream_seq: u64,
    /// How many times it was delivered.
    pub deliveries: u32,
}

/// A bound durable pull consumer.
#[async_trait]
pub trait Consumer: Send + Sync {
    /// The durable name.
    fn name(&self) -> &str;

    /// The stream consumed.
    fn stream(&self) -> &str;

    /// Waits up to `expires` for messages and returns at most `max`; an empty
    /// batch means none arrived in time. Never hangs past `expires` by more
    /// than the broker's request timeout.
    async fn fetch(&self, max: usize, expires: Duration) -> Result<Vec<Delivery>, ConsumerError>;

    /// The consumer's current progress.
    async fn info(&self) -> Result<ConsumerInfo, ConsumerError>;

    /// Messages that ran out of deliveries since the last call.
    async fn take_exhausted(&self) -> Result<Vec<Exhausted>, ConsumerError>;
}

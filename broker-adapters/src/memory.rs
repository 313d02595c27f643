//! The in-memory adapter: every rule of the contract, nothing persisted.
//!
//! It runs the same engine as [`crate::embedded`] on `BTreeMap`s instead of
//! sled, so unit tests see exactly the embedded log's behaviour, minus
//! durability ([`crate::Features::persistent`] is false).

use crate::local::{LocalBroker, delegate_broker, storage::MemoryStorage};

/// The largest message the in-memory broker accepts, like NATS' default.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// A broker living in process memory; dropped with its last handle.
#[derive(Debug)]
pub struct MemoryBroker {
    inner: LocalBroker<MemoryStorage>,
}

impl MemoryBroker {
    /// An empty broker with no streams and a 1 MiB message limit.
    pub fn new() -> Self {
        Self::with_max_payload(DEFAULT_MAX_PAYLOAD)
    }

    /// An empty broker accepting messages of up to `max_payload` bytes
    /// (counted as [`crate::OutboundMessage::wire_size`]).
    pub fn with_max_payload(max_payload: usize) -> Self {
        let inner = LocalBroker::open(
            MemoryStorage::default(),
            max_payload,
            "in-memory broker".into(),
        )
        .unwrap_or_else(|e| unreachable!("fresh in-memory storage cannot fail to open: {e}"));
        Self { inner }
    }
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new()
    }
}

delegate_broker!(MemoryBroker);

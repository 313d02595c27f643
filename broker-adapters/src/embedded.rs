//! The embedded adapter: the event log in append-only segment files on
//! local disk, its metadata in sled.
//!
//! The default backend: no server to run. It shares its engine with
//! [`crate::memory`]; what it adds is durability. A publish is acknowledged
//! only after the segment file holding it is synced (`fdatasync`), and
//! concurrent publishers share syncs (group commit), so a batch costs one
//! write and one sync however large it is. The dedup window and the subject
//! index live in memory and are rebuilt from the log on open. Consumer
//! progress is written within 10 ms (acks are batched) and flushed with the
//! next flush (sled also flushes in the background every
//! [`EmbeddedOptions::background_flush`]); after a crash an ack not yet
//! flushed leads to one more delivery, which at-least-once consumers
//! absorb. The on-disk layout is described in
//! `docs/embedded-log-format.md`.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    error::{ConnectError, ConnectErrorKind, Error},
    local::{
        FORMAT_VERSION, LocalBroker, delegate_broker,
        sled_storage::{SledOpenError, SledStorage},
    },
};

/// How to open an embedded log. Build one with `..Default::default()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedOptions {
    /// The directory holding the sled database; created when missing.
    pub path: PathBuf,
    /// Largest accepted message in bytes, counted as
    /// [`crate::OutboundMessage::wire_size`]; 1 MiB like NATS. A stream's
    /// `max_message_size` can only lower it.
    pub max_payload: usize,
    /// How often sled flushes in the background (covering consumer
    /// progress); `None` leaves it to publishes and [`crate::Broker::close`].
    #[serde(with = "humantime_serde")]
    pub background_flush: Option<Duration>,
    /// Bytes of sled page cache. sled holds only the log's metadata
    /// (counters, consumer state, the subject-index checkpoint, index
    /// points); messages are read from the segment files through the
    /// operating system's page cache, so a small cache does not slow reads.
    pub cache_capacity: u64,
    /// Bytes after which a segment file of the log is closed and the next
    /// one started (64 MiB). A full purge deletes whole segments; smaller
    /// ones only matter for tests.
    pub segment_size: u64,
}

/// The default [`EmbeddedOptions::segment_size`]: 64 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;

/// The default [`EmbeddedOptions::cache_capacity`]: 16 MiB.
pub const DEFAULT_CACHE_CAPACITY: u64 = 16 * 1024 * 1024;

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            path: PathBuf::from("backbone-data"),
            max_payload: crate::memory::DEFAULT_MAX_PAYLOAD,
            background_flush: Some(Duration::from_millis(500)),
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            segment_size: DEFAULT_SEGMENT_SIZE,
        }
    }
}

/// An open embedded log. One process holds a directory at a time; the lock
/// is released when the broker and every consumer and read from it are
/// dropped.
#[derive(Debug)]
pub struct EmbeddedBroker {
    inner: LocalBroker<SledStorage>,
}

impl EmbeddedBroker {
    /// The on-disk format version this build reads and writes.
    pub const FORMAT_VERSION: u8 = FORMAT_VERSION;

    /// Opens (creating if needed) the log in `options.path`.
    ///
    /// Fails with `Locked` when another process or another open in this one
    /// holds the directory, `UnsupportedFormat` when it was written by an
    /// incompatible version, `Corrupted` when its metadata fails its
    /// checksums, and `Io` for file-system errors.
    pub fn open(options: EmbeddedOptions) -> Result<Self, ConnectError> {
        let path = options.path.clone();
        let storage = SledStorage::open(
            &path,
            options.background_flush,
            options.cache_capacity,
            options.segment_size,
        )
        .map_err(|e| match e {
            SledOpenError::Locked(why) => Error::with_detail(
                ConnectErrorKind::Locked,
                format!(
                    "embedded log {} is in use by another process or broker ({why})",
                    path.display()
                ),
            ),
            SledOpenError::Other(err) => Error::with_source(ConnectErrorKind::Io, err)
                .detail(format!("opening embedded log {}", path.display())),
        })?;
        let inner = LocalBroker::open(
            storage,
            options.max_payload,
            format!("embedded log {}", path.display()),
        )?;
        Ok(Self { inner })
    }
}

delegate_broker!(EmbeddedBroker);

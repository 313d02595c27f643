//! Error kinds of the consumer runtime, one enum per operation.
//!
//! Like the broker contract, every operation returns `Error<ItsKind>`
//! ([`backbone_schemas::Error`]); kinds are `PartialEq` so tests and callers
//! branch on them.

use std::fmt;

use backbone_schemas::DecodeError;

pub use backbone_schemas::Error;

/// Why a handler could not apply an event.
///
/// The runtime's failure policy follows the variant: a transient failure is
/// retried (nak with exponential backoff) until the consumer's deliveries run
/// out; a permanent one goes straight to the dead-letter stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerError {
    /// Might succeed later (a dependency is down, a timeout): retry.
    Transient(String),
    /// Will never succeed (undecodable, unknown type, an invalid event such
    /// as a refund above what was paid): dead-letter with this reason.
    Permanent(String),
}

impl HandlerError {
    /// A transient failure with this reason.
    pub fn transient(reason: impl Into<String>) -> Self {
        Self::Transient(reason.into())
    }

    /// A permanent failure with this reason.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self::Permanent(reason.into())
    }

    /// The reason, whichever the variant.
    pub fn reason(&self) -> &str {
        match self {
            Self::Transient(r) | Self::Permanent(r) => r,
        }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transient(r) => write!(f, "transient: {r}"),
            Self::Permanent(r) => write!(f, "permanent: {r}"),
        }
    }
}

impl std::error::Error for HandlerError {}

impl From<DecodeError> for HandlerError {
    /// A message that is not a valid event never becomes one: permanent.
    fn from(e: DecodeError) -> Self {
        Self::Permanent(format!("undecodable event: {e}"))
    }
}

impl From<StoreError> for HandlerError {
    /// A failing local store may recover (disk full, I/O): transient.
    fn from(e: StoreError) -> Self {
        Self::Transient(format!("read-model store: {e}"))
    }
}

/// Why opening, reading or committing a read-model store failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// Another process (or handle) holds the store.
    Locked,
    /// The store was written by an incompatible format version.
    UnsupportedFormat {
        /// The version byte found on disk.
        found: u8,
    },
    /// The store holds the state of another key layout of its model
    /// ([`crate::ReadModel::layout`]): rebuild the model.
    ModelLayout {
        /// The layout the store was built with.
        found: u8,
        /// The layout this build of the model writes.
        expected: u8,
    },
    /// A stored value does not decode (damaged or foreign data).
    Corrupted,
    /// The local file system or sled failed.
    Io,
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Locked => f.write_str("read-model store is locked by another process"),
            Self::UnsupportedFormat { found } => {
                write!(f, "unsupported read-model store format version {found}")
            }
            Self::ModelLayout { found, expected } => write!(
                f,
                "read-model store was built with key layout {found}; this build writes {expected}"
            ),
            Self::Corrupted => f.write_str("read-model store holds a corrupted value"),
            Self::Io => f.write_str("read-model store I/O error"),
        }
    }
}

/// Error of a read-model store.
pub type StoreError = Error<StoreErrorKind>;

/// Why a consumer run stopped with an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunErrorKind {
    /// The durable consumer could not be created or bound.
    Consumer,
    /// Fetching from the broker kept failing.
    Fetch,
    /// The read-model store failed to commit.
    Store,
    /// The dead-letter stream could not be provisioned.
    DeadLetterStream,
}

impl fmt::Display for RunErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Consumer => "cannot create or bind the durable consumer",
            Self::Fetch => "fetching from the broker failed",
            Self::Store => "the read-model store failed",
            Self::DeadLetterStream => "cannot provision the dead-letter stream",
        })
    }
}

/// Error of a consumer run.
pub type RunError = Error<RunErrorKind>;

/// Why a rebuild failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebuildErrorKind {
    /// The live store is held by a running service: stop it first.
    Locked,
    /// The stream does not exist or cannot be read.
    Read,
    /// The shadow or live store failed.
    Store,
    /// An event of the log could not be applied and the rebuild was told
    /// not to skip such events.
    Apply {
        /// The event's stream sequence.
        seq: u64,
    },
    /// Swapping the shadow store into place failed.
    Swap,
}

impl fmt::Display for RebuildErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Locked => f.write_str("the live read model is in use; stop its service first"),
            Self::Read => f.write_str("reading the log failed"),
            Self::Store => f.write_str("the read-model store failed"),
            Self::Apply { seq } => write!(f, "event {seq} could not be applied"),
            Self::Swap => f.write_str("swapping the rebuilt store into place failed"),
        }
    }
}

/// Error of a rebuild.
pub type RebuildError = Error<RebuildErrorKind>;

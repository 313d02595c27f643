//! Error kinds, one enum per operation.
//!
//! Every operation returns `Error<ItsKind>` (see [`backbone_core::Error`]).
//! Kinds are `PartialEq` so tests assert them and callers branch on them; the
//! same failure has the same kind on every adapter.

use std::fmt;

pub use backbone_core::Error;

macro_rules! kind_display {
    ($kind:ty { $($pat:pat => $text:expr),+ $(,)? }) => {
        impl fmt::Display for $kind {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                #[allow(unused_imports)]
                use $kind::*;
                match self { $($pat => write!(f, "{}", $text)),+ }
            }
        }
    };
}

/// Why opening or connecting to a broker failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectErrorKind {
    /// No server answered within the connect timeout.
    Unreachable,
    /// The server refused the credentials.
    AuthenticationFailed,
    /// TLS could not be set up (bad certificate, key or CA).
    Tls,
    /// The options themselves are invalid (bad URL, unreadable creds file, ...).
    InvalidOptions,
    /// The server has no JetStream, or it is disabled for this account.
    JetStreamUnavailable,
    /// The embedded store is held by another process.
    Locked,
    /// The embedded store failed its integrity checks.
    Corrupted,
    /// The embedded store was written by an incompatible format version.
    UnsupportedFormat {
        /// The version byte found on disk.
        found: u8,
    },
    /// An I/O error from the local file system.
    Io,
}

kind_display!(ConnectErrorKind {
    Unreachable => "broker unreachable",
    AuthenticationFailed => "authentication failed",
    Tls => "TLS setup failed",
    InvalidOptions => "invalid connection options",
    JetStreamUnavailable => "JetStream is not enabled on the server",
    Locked => "store is locked by another process",
    Corrupted => "store is corrupted",
    UnsupportedFormat { found } => format!("unsupported store format version {found}"),
    Io => "I/O error",
});

/// Why a publish failed. A failed publish was not acknowledged: retrying it
/// with the same message id is safe (deduplicated within the window).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishErrorKind {
    /// No stream captures the subject.
    NoStream,
    /// The subject is not a valid publish subject (empty, wildcard, bad token).
    InvalidSubject,
    /// The payload is larger than the broker accepts.
    PayloadTooLarge {
        /// Size of the rejected message in bytes.
        size: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// Optimistic append failed: the subject's last sequence differs.
    WrongLastSequence {
        /// The subject's actual last sequence (0 when it has no message).
        actual: u64,
    },
    /// No acknowledgement arrived within the publish timeout.
    TimedOut,
    /// The broker is down or the connection is closed.
    BrokerUnavailable,
    /// The credentials in use may not publish to this subject.
    PermissionDenied,
    /// The local store failed to write.
    StorageFailure,
    /// The broker rejected the message for another reason (see detail).
    Rejected,
}

kind_display!(PublishErrorKind {
    NoStream => "no stream captures the subject",
    InvalidSubject => "invalid subject",
    PayloadTooLarge { size, max } => format!("payload of {size} bytes exceeds the limit of {max} bytes"),
    WrongLastSequence { actual } => format!("wrong last sequence for subject (actual {actual})"),
    TimedOut => "publish timed out",
    BrokerUnavailable => "broker unavailable",
    PermissionDenied => "permission denied",
    StorageFailure => "storage failure",
    Rejected => "publish rejected",
});

impl PublishErrorKind {
    /// The kind's name, e.g. `"PayloadTooLarge"`: how the server's HTTP
    /// errors and the bridges' dead letters name it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::NoStream => "NoStream",
            Self::InvalidSubject => "InvalidSubject",
            Self::PayloadTooLarge { .. } => "PayloadTooLarge",
            Self::WrongLastSequence { .. } => "WrongLastSequence",
            Self::TimedOut => "TimedOut",
            Self::BrokerUnavailable => "BrokerUnavailable",
            Self::PermissionDenied => "PermissionDenied",
            Self::StorageFailure => "StorageFailure",
            Self::Rejected => "Rejected",
        }
    }

    /// Whether the broker may take the same message later (it is down or
    /// slow), so retrying, spooling or holding it upstream makes sense;
    /// the other kinds fail the same way every time.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::BrokerUnavailable | Self::TimedOut)
    }

    /// Whether the message itself is refused, so the same message fails
    /// the same way on any broker state: too large, not a publish subject,
    /// or no stream captures it. The other kinds (the broker is down,
    /// full, failing to write, or denies the credentials) are about the
    /// broker, and the message may be taken later.
    pub fn refuses_the_message(&self) -> bool {
        matches!(
            self,
            Self::PayloadTooLarge { .. } | Self::InvalidSubject | Self::NoStream
        )
    }
}

/// Why reading the log failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadErrorKind {
    /// The stream does not exist.
    StreamNotFound,
    /// No message has this sequence (never written, or deleted).
    MessageNotFound,
    /// The request is inconsistent (e.g. an end before its start, bad filter).
    InvalidRequest,
    /// A stored entry failed its checksum; it is never returned as data.
    Corrupted,
    /// The broker did not answer in time.
    TimedOut,
    /// The broker is down or the connection is closed.
    BrokerUnavailable,
    /// The credentials in use may not read this stream.
    PermissionDenied,
    /// The local store failed to read.
    StorageFailure,
    /// A bounded read ended before its bound although the stream holds
    /// messages up to it (the server stopped delivering them).
    Incomplete,
}

kind_display!(ReadErrorKind {
    StreamNotFound => "stream not found",
    MessageNotFound => "message not found",
    InvalidRequest => "invalid read request",
    Corrupted => "stored entry is corrupted",
    Incomplete => "read ended before its end",
    TimedOut => "read timed out",
    BrokerUnavailable => "broker unavailable",
    PermissionDenied => "permission denied",
    StorageFailure => "storage failure",
});

/// Why creating, updating, inspecting or purging a stream failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamErrorKind {
    /// The stream does not exist.
    StreamNotFound,
    /// The configuration is invalid (bad name, overlapping subjects, ...).
    InvalidConfig,
    /// The change touches a setting that cannot change on a live stream.
    ImmutableSetting {
        /// The setting's name, e.g. `storage`.
        setting: String,
    },
    /// The server lacks a feature the configuration needs.
    Unsupported,
    /// The stream forbids the operation (`deny_purge`, `deny_delete`).
    Denied,
    /// The broker did not answer in time.
    TimedOut,
    /// The broker is down or the connection is closed.
    BrokerUnavailable,
    /// The credentials in use may not manage streams.
    PermissionDenied,
    /// The local store failed.
    StorageFailure,
}

kind_display!(StreamErrorKind {
    StreamNotFound => "stream not found",
    InvalidConfig => "invalid stream configuration",
    ImmutableSetting { setting } => format!("stream setting `{setting}` cannot be changed"),
    Unsupported => "not supported by this server",
    Denied => "operation denied by the stream's configuration",
    TimedOut => "stream request timed out",
    BrokerUnavailable => "broker unavailable",
    PermissionDenied => "permission denied",
    StorageFailure => "storage failure",
});

/// Why creating, binding or fetching from a consumer failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerErrorKind {
    /// The stream does not exist.
    StreamNotFound,
    /// The durable consumer does not exist.
    ConsumerNotFound,
    /// The configuration is invalid, or conflicts with the existing durable.
    InvalidConfig,
    /// The server lacks a feature the configuration needs (see detail).
    Unsupported,
    /// The broker did not answer in time.
    TimedOut,
    /// The broker is down or the connection is closed.
    BrokerUnavailable,
    /// The credentials in use may not use this consumer.
    PermissionDenied,
    /// The local store failed.
    StorageFailure,
}

kind_display!(ConsumerErrorKind {
    StreamNotFound => "stream not found",
    ConsumerNotFound => "consumer not found",
    InvalidConfig => "invalid consumer configuration",
    Unsupported => "not supported by this server",
    TimedOut => "consumer request timed out",
    BrokerUnavailable => "broker unavailable",
    PermissionDenied => "permission denied",
    StorageFailure => "storage failure",
});

/// Why acknowledging a delivery failed. The message will then be redelivered
/// after its ack wait: handlers must be idempotent, projections skip by
/// checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckErrorKind {
    /// The delivery is no longer pending (acked, termed, or redelivered).
    NotPending,
    /// The broker did not confirm in time.
    TimedOut,
    /// The broker is down or the connection is closed.
    BrokerUnavailable,
    /// The local store failed.
    StorageFailure,
}

kind_display!(AckErrorKind {
    NotPending => "delivery is no longer pending",
    TimedOut => "acknowledgement timed out",
    BrokerUnavailable => "broker unavailable",
    StorageFailure => "storage failure",
});

/// Error opening or connecting to a broker.
pub type ConnectError = Error<ConnectErrorKind>;
/// Error publishing a message.
pub type PublishError = Error<PublishErrorKind>;
/// Error reading the log.
pub type ReadError = Error<ReadErrorKind>;
/// Error managing or inspecting a stream.
pub type StreamError = Error<StreamErrorKind>;
/// Error creating, binding or fetching from a consumer.
pub type ConsumerError = Error<ConsumerErrorKind>;
/// Error acknowledging a delivery.
pub type AckError = Error<AckErrorKind>;

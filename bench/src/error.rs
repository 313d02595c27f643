//! The benchmark's error: one kind per way a run can fail.

use std::fmt;

/// A failed benchmark run.
pub(crate) type BenchError = backbone_schemas::Error<BenchErrorKind>;

/// Why a benchmark run failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BenchErrorKind {
    /// No nats-server could be started or reached.
    ServerUnavailable,
    /// The raw async-nats client failed (connect, publish, consume).
    RawClient,
    /// A Backbone adapter, runtime or read model failed.
    Backbone,
    /// Fewer events arrived than were published before the scenario's deadline.
    Incomplete {
        /// Events expected.
        expected: u64,
        /// Events seen.
        seen: u64,
    },
    /// The arguments are inconsistent (e.g. zero events).
    InvalidArguments,
    /// Writing results, the plot or temporary stores failed.
    Io,
}

impl fmt::Display for BenchErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ServerUnavailable => f.write_str("nats-server unavailable"),
            Self::RawClient => f.write_str("raw async-nats client failed"),
            Self::Backbone => f.write_str("Backbone component failed"),
            Self::Incomplete { expected, seen } => {
                write!(f, "saw {seen} of {expected} events before the deadline")
            }
            Self::InvalidArguments => f.write_str("invalid benchmark arguments"),
            Self::Io => f.write_str("I/O error"),
        }
    }
}

//! [`BridgeError`]: what a bridge reports, with a kind tests assert on.

use std::fmt;

/// What went wrong in a bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeErrorKind {
    /// The configuration cannot run (names the setting).
    Config,
    /// The external broker cannot be reached or refused the connection;
    /// the bridge reconnects with backoff.
    Unreachable,
    /// The external broker refused or did not confirm a message; it is
    /// sent again.
    NotConfirmed,
    /// Backbone's log could not be read, published to or acknowledged;
    /// retried.
    Log,
    /// This build has no client for the configured broker (a cargo
    /// feature is off).
    Unsupported,
}

impl fmt::Display for BridgeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Config => "invalid bridge configuration",
            Self::Unreachable => "the external broker is unreachable",
            Self::NotConfirmed => "the external broker did not confirm",
            Self::Log => "Backbone's log failed",
            Self::Unsupported => "this build has no client for the broker",
        })
    }
}

/// Error of a bridge.
pub type BridgeError = backbone_core::Error<BridgeErrorKind>;

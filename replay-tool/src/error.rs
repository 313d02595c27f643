//! The one error type of the CLI and its documented exit codes.

use backbone_broker::{
    ConnectError, ConnectErrorKind, ConsumerError, ConsumerErrorKind, PublishError,
    PublishErrorKind, ReadError, ReadErrorKind, StreamError, StreamErrorKind,
};
use backbone_consumers::{RebuildError, RebuildErrorKind, RunError, StoreError, StoreErrorKind};
use backbone_schemas::evolution::lock::{LockError, LockErrorKind};

/// The process exit codes: one name per code, used by `--help`,
/// [`CliError::exit_code`] and the tests alike.
pub mod exit {
    /// Success (also when standard output was closed by its reader).
    pub const SUCCESS: u8 = 0;
    /// A failure, or a verification mismatch.
    pub const FAILURE: u8 = 1;
    /// Bad arguments or options.
    pub const USAGE: u8 = 2;
    /// Input that cannot be used.
    pub const BAD_INPUT: u8 = 3;
    /// The broker cannot be reached or stopped answering.
    pub const UNAVAILABLE: u8 = 4;
    /// Another process holds the embedded log or a read model.
    pub const LOCKED: u8 = 5;
    /// What was asked for does not exist.
    pub const NOT_FOUND: u8 = 6;

    /// Each code with what it means, in order, as `--help` prints them.
    pub const MEANINGS: [(u8, &str); 7] = [
        (SUCCESS, "success"),
        (
            FAILURE,
            "failure, or a verification mismatch (rebuild/demo digests differ)",
        ),
        (
            USAGE,
            "usage error: bad arguments or options (reported by the parser)",
        ),
        (
            BAD_INPUT,
            "bad input: malformed JSON/TOML, unknown event type, invalid key or field",
        ),
        (
            UNAVAILABLE,
            "broker unavailable: cannot connect, or the broker stopped answering",
        ),
        (
            LOCKED,
            "store locked: another process holds the embedded log or a read model",
        ),
        (
            NOT_FOUND,
            "not found: stream, consumer, message or read model does not exist",
        ),
    ];
}

/// The exit codes and the settings' precedence, for `--help`.
pub(crate) fn exit_codes_help() -> String {
    let mut text = String::from("Exit codes:\n");
    for (code, meaning) in exit::MEANINGS {
        text.push_str(&format!("  {code}  {meaning}\n"));
    }
    text.push_str(
        "\nPrecedence of settings: command-line flags > BACKBONE_* environment\n\
         variables > the --config TOML file > built-in defaults.",
    );
    text
}

/// Everything that makes a command fail, each with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Arguments that parse but make no sense together.
    #[error("usage: {0}")]
    Usage(String),
    /// Input data (JSON, TOML, predicates, times) that cannot be used.
    #[error("bad input: {0}")]
    BadInput(String),
    /// A verification found a difference.
    #[error("verification failed: {0}")]
    Verification(String),
    /// Any other failure.
    #[error("{0}")]
    Failed(String),
    /// Standard output was closed by its reader (`| head`): not a failure.
    #[error("output closed")]
    OutputClosed,
    /// Opening the store or connecting to the broker failed.
    #[error("{prefix}{0}{hint}", prefix = connect_prefix(.0), hint = connect_hint(.0))]
    Connect(#[from] ConnectError),
    /// Managing or inspecting a stream failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// Reading the log failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Publishing failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// A consumer operation failed.
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    /// A read-model store failed (opening, reading or committing it).
    #[error("{0}{hint}", hint = store_hint(.0))]
    Store(#[from] StoreError),
    /// A rebuild failed; nothing was swapped in.
    #[error("{0}{hint}", hint = rebuild_hint(.0))]
    Rebuild(#[from] RebuildError),
    /// A consumer run (the demo's live read models) failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The schema lock file could not be checked.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Reading or writing a file or a stream of the process failed.
    #[error("I/O error: {0}")]
    Io(#[source] std::io::Error),
    /// A running server did not answer, or refused.
    #[error(transparent)]
    Server(Box<crate::server_client::ServerFailure>),
}

/// The class of a connect failure, as the other errors name theirs.
fn connect_prefix(e: &ConnectError) -> &'static str {
    match e.kind() {
        ConnectErrorKind::Locked => "store locked: ",
        ConnectErrorKind::InvalidOptions => "usage: ",
        ConnectErrorKind::Corrupted | ConnectErrorKind::UnsupportedFormat { .. } => "",
        _ => "broker unavailable: ",
    }
}

/// What to do about a store another process holds.
fn connect_hint(e: &ConnectError) -> &'static str {
    match e.kind() {
        ConnectErrorKind::Locked => {
            " (is a service or another replay-tool using this data dir? stop it or use its broker)"
        }
        ConnectErrorKind::UnsupportedFormat { .. } => {
            " (written by another Backbone version; there is no migration before release: \
             publish into a new data dir, or open it with the version that wrote it)"
        }
        _ => "",
    }
}

/// What to do about a read model another process holds.
fn store_hint(e: &StoreError) -> &'static str {
    match e.kind() {
        StoreErrorKind::Locked => {
            " (a running consumer service?); stop it first: nothing was changed"
        }
        StoreErrorKind::ModelLayout { .. } => "; rebuild it: replay-tool rebuild <read model>",
        _ => "",
    }
}

/// What to do about a rebuild refused because the live model is in use.
fn rebuild_hint(e: &RebuildError) -> &'static str {
    match e.kind() {
        RebuildErrorKind::Locked => {
            "; the read model is held by a running service: stop it first (nothing was changed)"
        }
        _ => "",
    }
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::OutputClosed => exit::SUCCESS,
            Self::Failed(_) | Self::Verification(_) | Self::Io(_) => exit::FAILURE,
            Self::Usage(_) => exit::USAGE,
            Self::Server(failure) => match failure.status {
                None | Some(502..=504) => exit::UNAVAILABLE,
                Some(401 | 403 | 400) => exit::BAD_INPUT,
                Some(404) => exit::NOT_FOUND,
                Some(_) => exit::FAILURE,
            },
            Self::BadInput(_) => exit::BAD_INPUT,
            Self::Connect(e) => match e.kind() {
                ConnectErrorKind::Locked => exit::LOCKED,
                ConnectErrorKind::InvalidOptions => exit::USAGE,
                ConnectErrorKind::Corrupted | ConnectErrorKind::UnsupportedFormat { .. } => {
                    exit::FAILURE
                }
                _ => exit::UNAVAILABLE,
            },
            Self::Stream(e) => match e.kind() {
                StreamErrorKind::StreamNotFound => exit::NOT_FOUND,
                StreamErrorKind::InvalidConfig | StreamErrorKind::ImmutableSetting { .. } => {
                    exit::BAD_INPUT
                }
                StreamErrorKind::TimedOut | StreamErrorKind::BrokerUnavailable => exit::UNAVAILABLE,
                _ => exit::FAILURE,
            },
            Self::Read(e) => match e.kind() {
                ReadErrorKind::StreamNotFound | ReadErrorKind::MessageNotFound => exit::NOT_FOUND,
                ReadErrorKind::InvalidRequest => exit::BAD_INPUT,
                ReadErrorKind::TimedOut | ReadErrorKind::BrokerUnavailable => exit::UNAVAILABLE,
                _ => exit::FAILURE,
            },
            Self::Publish(e) => match e.kind() {
                PublishErrorKind::InvalidSubject | PublishErrorKind::PayloadTooLarge { .. } => {
                    exit::BAD_INPUT
                }
                PublishErrorKind::NoStream => exit::NOT_FOUND,
                PublishErrorKind::TimedOut | PublishErrorKind::BrokerUnavailable => {
                    exit::UNAVAILABLE
                }
                _ => exit::FAILURE,
            },
            Self::Store(e) => match e.kind() {
                StoreErrorKind::Locked => exit::LOCKED,
                _ => exit::FAILURE,
            },
            Self::Rebuild(e) => match e.kind() {
                RebuildErrorKind::Locked => exit::LOCKED,
                RebuildErrorKind::Read => exit::UNAVAILABLE,
                _ => exit::FAILURE,
            },
            // A runner waits out an unreachable broker itself; what ends
            // its run is not a connectivity problem.
            Self::Run(_) => exit::FAILURE,
            Self::Lock(e) => match e.kind() {
                LockErrorKind::Missing => exit::NOT_FOUND,
                LockErrorKind::Malformed => exit::BAD_INPUT,
                _ => exit::FAILURE,
            },
            Self::Consumer(e) => match e.kind() {
                ConsumerErrorKind::StreamNotFound | ConsumerErrorKind::ConsumerNotFound => {
                    exit::NOT_FOUND
                }
                ConsumerErrorKind::InvalidConfig => exit::BAD_INPUT,
                ConsumerErrorKind::TimedOut | ConsumerErrorKind::BrokerUnavailable => {
                    exit::UNAVAILABLE
                }
                _ => exit::FAILURE,
            },
        }
    }

    /// A bad-input error from anything printable.
    pub(crate) fn bad_input(message: impl std::fmt::Display) -> Self {
        Self::BadInput(message.to_string())
    }

    /// A generic failure from anything printable.
    pub(crate) fn failed(message: impl std::fmt::Display) -> Self {
        Self::Failed(message.to_string())
    }
}

impl From<backbone_consumers::status::StatusError> for CliError {
    fn from(e: backbone_consumers::status::StatusError) -> Self {
        match e {
            backbone_consumers::status::StatusError::Streams(e) => Self::Stream(e),
            backbone_consumers::status::StatusError::Consumers(e) => Self::Consumer(e),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Self::OutputClosed;
        }
        Self::Io(e)
    }
}

/// The result of a command.
pub(crate) type CliResult<T = ()> = Result<T, CliError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_kinds_map_to_documented_exit_codes() {
        let locked: CliError = ConnectError::new(ConnectErrorKind::Locked).into();
        assert_eq!(locked.exit_code(), exit::LOCKED);
        let down: CliError = ConnectError::new(ConnectErrorKind::Unreachable).into();
        assert_eq!(down.exit_code(), exit::UNAVAILABLE);
        let missing: CliError = ReadError::new(ReadErrorKind::MessageNotFound).into();
        assert_eq!(missing.exit_code(), exit::NOT_FOUND);
    }

    #[test]
    fn store_rebuild_and_lock_kinds_map_to_documented_exit_codes() {
        let held: CliError = StoreError::new(StoreErrorKind::Locked).into();
        assert_eq!(held.exit_code(), exit::LOCKED);
        let corrupted: CliError = StoreError::new(StoreErrorKind::Corrupted).into();
        assert_eq!(corrupted.exit_code(), exit::FAILURE);
        let in_use: CliError = RebuildError::new(RebuildErrorKind::Locked).into();
        assert_eq!(in_use.exit_code(), exit::LOCKED);
        let unreadable: CliError = RebuildError::new(RebuildErrorKind::Read).into();
        assert_eq!(unreadable.exit_code(), exit::UNAVAILABLE);
        let no_lock: CliError = LockError::new(LockErrorKind::Missing).into();
        assert_eq!(no_lock.exit_code(), exit::NOT_FOUND);
        let bad_lock: CliError = LockError::new(LockErrorKind::Malformed).into();
        assert_eq!(bad_lock.exit_code(), exit::BAD_INPUT);
    }
}

//! The one error type of the CLI and its documented exit codes.

use backbone_broker::{
    ConnectError, ConnectErrorKind, ConsumerError, ConsumerErrorKind, PublishError,
    PublishErrorKind, ReadError, ReadErrorKind, StreamError, StreamErrorKind,
};

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
    /// The broker cannot be reached or stopped answering.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// Another process holds the store.
    #[error("store locked: {0}")]
    Locked(String),
    /// The thing asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A verification found a difference.
    #[error("verification failed: {0}")]
    Verification(String),
    /// Any other failure.
    #[error("{0}")]
    Failed(String),
    /// Standard output was closed by its reader (`| head`): not a failure.
    #[error("output closed")]
    OutputClosed,
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::OutputClosed => exit::SUCCESS,
            Self::Failed(_) | Self::Verification(_) => exit::FAILURE,
            Self::Usage(_) => exit::USAGE,
            Self::BadInput(_) => exit::BAD_INPUT,
            Self::Unavailable(_) => exit::UNAVAILABLE,
            Self::Locked(_) => exit::LOCKED,
            Self::NotFound(_) => exit::NOT_FOUND,
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

impl From<ConnectError> for CliError {
    fn from(e: ConnectError) -> Self {
        match e.kind() {
            ConnectErrorKind::Locked => Self::Locked(format!(
                "{e} (is a service or another replay-tool using this data dir? stop it or use its broker)"
            )),
            ConnectErrorKind::InvalidOptions => Self::Usage(e.to_string()),
            ConnectErrorKind::Corrupted | ConnectErrorKind::UnsupportedFormat { .. } => {
                Self::Failed(e.to_string())
            }
            _ => Self::Unavailable(e.to_string()),
        }
    }
}

impl From<StreamError> for CliError {
    fn from(e: StreamError) -> Self {
        match e.kind() {
            StreamErrorKind::StreamNotFound => Self::NotFound(e.to_string()),
            StreamErrorKind::InvalidConfig | StreamErrorKind::ImmutableSetting { .. } => {
                Self::BadInput(e.to_string())
            }
            StreamErrorKind::TimedOut | StreamErrorKind::BrokerUnavailable => {
                Self::Unavailable(e.to_string())
            }
            _ => Self::Failed(e.to_string()),
        }
    }
}

impl From<ReadError> for CliError {
    fn from(e: ReadError) -> Self {
        match e.kind() {
            ReadErrorKind::StreamNotFound | ReadErrorKind::MessageNotFound => {
                Self::NotFound(e.to_string())
            }
            ReadErrorKind::InvalidRequest => Self::BadInput(e.to_string()),
            ReadErrorKind::TimedOut | ReadErrorKind::BrokerUnavailable => {
                Self::Unavailable(e.to_string())
            }
            _ => Self::Failed(e.to_string()),
        }
    }
}

impl From<PublishError> for CliError {
    fn from(e: PublishError) -> Self {
        match e.kind() {
            PublishErrorKind::InvalidSubject | PublishErrorKind::PayloadTooLarge { .. } => {
                Self::BadInput(e.to_string())
            }
            PublishErrorKind::NoStream => Self::NotFound(e.to_string()),
            PublishErrorKind::TimedOut | PublishErrorKind::BrokerUnavailable => {
                Self::Unavailable(e.to_string())
            }
            _ => Self::Failed(e.to_string()),
        }
    }
}

impl From<ConsumerError> for CliError {
    fn from(e: ConsumerError) -> Self {
        match e.kind() {
            ConsumerErrorKind::StreamNotFound | ConsumerErrorKind::ConsumerNotFound => {
                Self::NotFound(e.to_string())
            }
            ConsumerErrorKind::InvalidConfig => Self::BadInput(e.to_string()),
            ConsumerErrorKind::TimedOut | ConsumerErrorKind::BrokerUnavailable => {
                Self::Unavailable(e.to_string())
            }
            _ => Self::Failed(e.to_string()),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Self::OutputClosed;
        }
        Self::Failed(format!("I/O error: {e}"))
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
}

//! Streams: their configuration, their state, and reading them in order.

use std::time::{Duration, SystemTime};

use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::{
    error::{ReadError, StreamError, StreamErrorKind},
    message::StoredMessage,
};

/// The stream holding every event: it captures `events.>`.
pub const EVENT_STREAM: &str = "EVENTS";
/// The subjects of [`EVENT_STREAM`].
pub const EVENT_SUBJECTS: &str = "events.>";
/// The stream holding dead letters: it captures `deadletter.>`.
pub const DEAD_LETTER_STREAM: &str = "DEADLETTER";
/// The subjects of [`DEAD_LETTER_STREAM`].
pub const DEAD_LETTER_SUBJECTS: &str = "deadletter.>";

/// Where a stream keeps its messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// On disk; survives restarts.
    #[default]
    File,
    /// In memory; lost on restart.
    Memory,
}

/// A stream's configuration. Build one with `..Default::default()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamConfig {
    /// Name: letters, digits, `-` and `_`.
    pub name: String,
    /// Subjects captured, wildcards allowed; streams must not overlap.
    pub subjects: Vec<String>,
    /// Human-readable description.
    pub description: Option<String>,
    /// Where messages are kept.
    pub storage: StorageKind,
    /// Copies kept in a cluster (JetStream only; 1 elsewhere).
    pub replicas: usize,
    /// How long a message id is remembered for deduplication (in config
    /// files a duration like `"2m"`).
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// Largest accepted message in bytes; `None` takes the broker's limit.
    pub max_message_size: Option<usize>,
    /// Refuse deleting single messages (the log is immutable).
    pub deny_delete: bool,
    /// Refuse purging (the log is immutable).
    pub deny_purge: bool,
    /// Serve direct gets from any replica (JetStream).
    pub allow_direct: bool,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            subjects: Vec::new(),
            description: None,
            storage: StorageKind::File,
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            max_message_size: None,
            deny_delete: false,
            deny_purge: false,
            allow_direct: true,
        }
    }
}

impl StreamConfig {
    /// The settings by which `wanted` differs from this, the current
    /// configuration, in a fixed order. `ImmutableSetting` for a change no
    /// adapter makes: the storage kind, or turning `deny_delete` or
    /// `deny_purge` off (an immutable log stays immutable).
    pub fn changes_to(&self, wanted: &StreamConfig) -> Result<Vec<String>, StreamError> {
        let current = self;
        let immutable = |setting: &str, why: &str| {
            StreamError::with_detail(
                StreamErrorKind::ImmutableSetting {
                    setting: setting.into(),
                },
                format!("stream {}: {why}", wanted.name),
            )
        };
        if current.storage != wanted.storage {
            return Err(immutable("storage", "a stream's storage cannot change"));
        }
        if current.deny_delete && !wanted.deny_delete {
            return Err(immutable("deny_delete", "deny_delete cannot be turned off"));
        }
        if current.deny_purge && !wanted.deny_purge {
            return Err(immutable("deny_purge", "deny_purge cannot be turned off"));
        }
        let mut changed = Vec::new();
        let mut check = |name: &str, differs: bool| {
            if differs {
                changed.push(name.to_owned());
            }
        };
        check("subjects", current.subjects != wanted.subjects);
        check("description", current.description != wanted.description);
        check("replicas", current.replicas != wanted.replicas.max(1));
        check(
            "duplicate_window",
            current.duplicate_window != wanted.duplicate_window,
        );
        check(
            "max_message_size",
            current.max_message_size != wanted.max_message_size,
        );
        check("deny_delete", current.deny_delete != wanted.deny_delete);
        check("deny_purge", current.deny_purge != wanted.deny_purge);
        check("allow_direct", current.allow_direct != wanted.allow_direct);
        Ok(changed)
    }

    /// The event log: [`EVENT_STREAM`] on [`EVENT_SUBJECTS`], immutable
    /// (`deny_delete` and `deny_purge` on), file storage.
    pub fn event_log() -> Self {
        Self {
            name: EVENT_STREAM.into(),
            subjects: vec![EVENT_SUBJECTS.into()],
            description: Some("Backbone event log".into()),
            deny_delete: true,
            deny_purge: true,
            ..Default::default()
        }
    }

    /// The dead-letter stream: [`DEAD_LETTER_STREAM`] on
    /// [`DEAD_LETTER_SUBJECTS`]; purgeable once letters are handled.
    pub fn dead_letters() -> Self {
        Self {
            name: DEAD_LETTER_STREAM.into(),
            subjects: vec![DEAD_LETTER_SUBJECTS.into()],
            description: Some("Backbone dead letters".into()),
            ..Default::default()
        }
    }
}

/// Creates the event log ([`StreamConfig::event_log`]) when `stream` is
/// [`EVENT_STREAM`] and does not exist yet, so a fresh embedded log takes
/// events; any other stream, or an existing one, is the operator's
/// (`replay-tool provision`) and left as it is.
pub async fn ensure_event_log(broker: &dyn crate::Broker, stream: &str) -> Result<(), StreamError> {
    if stream != EVENT_STREAM {
        return Ok(());
    }
    match broker.stream_info(stream).await {
        Err(e) if e.kind() == &StreamErrorKind::StreamNotFound => broker
            .ensure_stream(&StreamConfig::event_log())
            .await
            .map(|_| ()),
        _ => Ok(()),
    }
}

/// What [`crate::Broker::ensure_stream`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionOutcome {
    /// The stream did not exist and was created.
    Created,
    /// The stream existed and the listed settings were changed.
    Updated(Vec<String>),
    /// The stream already matched the configuration.
    Unchanged,
}

/// A stream's configuration and current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// The configuration in force.
    pub config: StreamConfig,
    /// Messages stored.
    pub messages: u64,
    /// Bytes stored, as the broker counts them.
    pub bytes: u64,
    /// Sequence of the first stored message (0 when empty).
    pub first_seq: u64,
    /// Sequence of the last stored message (0 when nothing was ever stored).
    pub last_seq: u64,
    /// Store time of the first message.
    pub first_time: Option<SystemTime>,
    /// Store time of the last message.
    pub last_time: Option<SystemTime>,
    /// Durable consumers on the stream.
    pub consumers: usize,
}

/// Where an ordered read starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReadStart {
    /// The first stored message.
    #[default]
    First,
    /// The first message with a sequence at or above this one.
    Sequence(u64),
    /// The first message stored at or after this time.
    Time(SystemTime),
}

/// An ordered read of a stream. Build one with `..Default::default()`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadRequest {
    /// Where to start.
    pub start: ReadStart,
    /// Last sequence to return (inclusive).
    pub end_seq: Option<u64>,
    /// Stop before the first message stored after this time.
    pub end_time: Option<SystemTime>,
    /// Only subjects matching this pattern (`*` and `>` wildcards).
    pub filter: Option<String>,
    /// Keep following new messages instead of ending at the stream's last
    /// sequence as of the call.
    pub follow: bool,
}

/// Messages of an ordered read, in sequence order with no gaps among the
/// matching messages. A `Corrupted` error is returned in place of a damaged
/// entry; the stream may continue after it.
pub type MessageStream = BoxStream<'static, Result<StoredMessage, ReadError>>;

pub use backbone_core::subject::subject_matches;

#[cfg(test)]
mod tests {
    use super::subject_matches;

    #[test]
    fn wildcards_match_like_nats() {
        assert!(subject_matches("events.>", "events.user.followed.u-1"));
        assert!(!subject_matches("events.>", "events"));
        assert!(subject_matches(
            "events.user.*.*",
            "events.user.followed.u-1"
        ));
        assert!(!subject_matches(
            "events.user.*",
            "events.user.followed.u-1"
        ));
        assert!(subject_matches(
            "events.*.*.u-1",
            "events.user.followed.u-1"
        ));
        assert!(!subject_matches(
            "events.payment.>",
            "events.user.followed.u-1"
        ));
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("a.b", "a.b.c"));
    }
}

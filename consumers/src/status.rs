//! [`StatusReport`]: the state of a backbone at a glance, as
//! `replay-tool status` prints it and the server's `GET /v1/admin/status`
//! answers it: streams, durable consumers and their lag, dead-letter
//! depth, and every read model's checkpoint.
//!
//! One type for both, so a `replay-tool status` that goes through a
//! running server prints exactly what it prints from the data directory.

use std::{path::Path, time::SystemTime};

use backbone_broker::{Broker, ConsumerError, StreamError, stream::DEAD_LETTER_STREAM};
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    ProjectionStore, StoreErrorKind,
    layout::read_models_dir,
    models::READ_MODEL_NAMES,
    rebuild::{live_path, shadow_path},
};

/// Why the broker's part of a status could not be read.
#[derive(Debug)]
pub enum StatusError {
    /// Listing the streams failed.
    Streams(StreamError),
    /// Listing a stream's consumers failed.
    Consumers(ConsumerError),
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Streams(e) => write!(f, "listing streams: {e}"),
            Self::Consumers(e) => write!(f, "listing consumers: {e}"),
        }
    }
}

impl std::error::Error for StatusError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Streams(e) => Some(e),
            Self::Consumers(e) => Some(e),
        }
    }
}

/// Everything `status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Every stream.
    pub streams: Vec<StreamRow>,
    /// Every durable consumer of every stream.
    pub consumers: Vec<ConsumerRow>,
    /// Every seed read model, present or not.
    pub read_models: Vec<ReadModelRow>,
    /// Messages in the dead-letter stream.
    pub dead_letters: u64,
}

/// One stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRow {
    /// Its name.
    pub stream: String,
    /// Its subjects, comma-separated.
    pub subjects: String,
    /// Messages stored.
    pub messages: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// First sequence.
    pub first_seq: u64,
    /// Last sequence.
    pub last_seq: u64,
    /// When the last message was stored, RFC 3339.
    pub last_time: Option<String>,
}

/// One durable consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerRow {
    /// Its stream.
    pub stream: String,
    /// Its durable name.
    pub consumer: String,
    /// The last stream sequence delivered.
    pub delivered: u64,
    /// The stream sequence below which everything is acknowledged.
    pub ack_floor: u64,
    /// Matching messages not yet delivered.
    pub lag: u64,
    /// Delivered, not yet acknowledged.
    pub ack_pending: u64,
    /// Messages delivered more than once.
    pub redelivered: u64,
}

/// One read model's store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadModelRow {
    /// Its name.
    pub read_model: String,
    /// The last stream sequence applied, when readable.
    pub checkpoint: Option<u64>,
    /// Entries in its store, when readable.
    pub entries: Option<u64>,
    /// `ok`, `absent`, `held by a running service`, or why not readable.
    pub state: String,
}

/// The state written for a store another process holds.
pub const HELD: &str = "held by a running service";

impl ReadModelRow {
    /// The row of an open store.
    pub fn of_store(name: &str, store: &ProjectionStore, rebuild_pending: bool) -> Self {
        let state = if rebuild_pending {
            "ok (interrupted rebuild pending)"
        } else {
            "ok"
        };
        Self {
            read_model: name.to_owned(),
            checkpoint: store.checkpoint().ok(),
            entries: Some(store.len() as u64),
            state: state.to_owned(),
        }
    }

    fn without_store(name: &str, state: impl Into<String>) -> Self {
        Self {
            read_model: name.to_owned(),
            checkpoint: None,
            entries: None,
            state: state.into(),
        }
    }
}

/// One row per seed read model in `data_dir`; `held` answers for a store
/// the caller holds (the server's own: the store, or the state to show
/// while it must not be opened), else each is opened for the moment it is
/// read.
pub fn read_model_rows(
    data_dir: &Path,
    held: impl Fn(&str) -> Option<Result<ProjectionStore, String>>,
) -> Vec<ReadModelRow> {
    let dir = read_models_dir(data_dir);
    READ_MODEL_NAMES
        .iter()
        .map(|name| {
            let (live, shadow) = (live_path(&dir, name), shadow_path(&dir, name));
            match held(name) {
                Some(Ok(store)) => return ReadModelRow::of_store(name, &store, shadow.exists()),
                Some(Err(state)) => return ReadModelRow::without_store(name, state),
                None => {}
            }
            if !live.exists() {
                return ReadModelRow::without_store(name, "absent");
            }
            match ProjectionStore::open(&live) {
                Ok(store) => ReadModelRow::of_store(name, &store, shadow.exists()),
                Err(e) if e.kind() == &StoreErrorKind::Locked => {
                    ReadModelRow::without_store(name, HELD)
                }
                Err(e) => ReadModelRow::without_store(name, e.to_string()),
            }
        })
        .collect()
}

fn rfc3339(time: SystemTime) -> String {
    OffsetDateTime::from(time)
        .format(&Rfc3339)
        .unwrap_or_default()
}

impl StatusReport {
    /// The broker's streams and consumers with `read_models`.
    pub async fn collect(
        broker: &dyn Broker,
        read_models: Vec<ReadModelRow>,
    ) -> Result<Self, StatusError> {
        let mut report = Self {
            streams: Vec::new(),
            consumers: Vec::new(),
            read_models,
            dead_letters: 0,
        };
        for info in broker.streams().await.map_err(StatusError::Streams)? {
            if info.config.name == DEAD_LETTER_STREAM {
                report.dead_letters = info.messages;
            }
            report.streams.push(StreamRow {
                stream: info.config.name.clone(),
                subjects: info.config.subjects.join(","),
                messages: info.messages,
                bytes: info.bytes,
                first_seq: info.first_seq,
                last_seq: info.last_seq,
                last_time: info.last_time.map(rfc3339),
            });
            let consumers = broker
                .consumers(&info.config.name)
                .await
                .map_err(StatusError::Consumers)?;
            report
                .consumers
                .extend(consumers.into_iter().map(|c| ConsumerRow {
                    stream: c.stream,
                    consumer: c.name,
                    delivered: c.delivered_stream_seq,
                    ack_floor: c.ack_floor_stream_seq,
                    lag: c.num_pending,
                    ack_pending: c.num_ack_pending,
                    redelivered: c.num_redelivered,
                }));
        }
        Ok(report)
    }
}

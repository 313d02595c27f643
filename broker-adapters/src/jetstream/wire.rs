//! The JSON shapes of JetStream's API (as served by 2.9 and later) and their
//! conversion to and from the contract's types.

use std::{
    str::FromStr as _,
    time::{Duration, SystemTime},
};

use backbone_core::Headers;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    message::{MalformedHeaders, StoredMessage},
    stream::{StorageKind, StreamConfig, StreamInfo},
};

/// A stream's configuration as the server reports it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct WireStreamConfig {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) subjects: Vec<String>,
    #[serde(default)]
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) storage: String,
    #[serde(default)]
    pub(crate) num_replicas: usize,
    #[serde(default)]
    pub(crate) duplicate_window: u64,
    #[serde(default)]
    pub(crate) max_msg_size: i64,
    #[serde(default)]
    pub(crate) deny_delete: bool,
    #[serde(default)]
    pub(crate) deny_purge: bool,
    #[serde(default)]
    pub(crate) allow_direct: bool,
}

impl WireStreamConfig {
    pub(crate) fn to_config(&self) -> StreamConfig {
        StreamConfig {
            name: self.name.clone(),
            subjects: self.subjects.clone(),
            description: self.description.clone().filter(|d| !d.is_empty()),
            storage: if self.storage == "memory" {
                StorageKind::Memory
            } else {
                StorageKind::File
            },
            replicas: self.num_replicas.max(1),
            duplicate_window: Duration::from_nanos(self.duplicate_window),
            max_message_size: usize::try_from(self.max_msg_size).ok().filter(|&n| n > 0),
            deny_delete: self.deny_delete,
            deny_purge: self.deny_purge,
            allow_direct: self.allow_direct,
        }
    }
}

/// The JSON body creating or updating `config`.
pub(crate) fn stream_config_json(config: &StreamConfig) -> Value {
    json!({
        "name": config.name,
        "subjects": config.subjects,
        "description": config.description,
        "retention": "limits",
        "max_consumers": -1,
        "max_msgs": -1,
        "max_bytes": -1,
        "max_age": 0,
        "max_msgs_per_subject": -1,
        "max_msg_size": config.max_message_size.map_or(-1, |n| n as i64),
        "storage": match config.storage {
            StorageKind::File => "file",
            StorageKind::Memory => "memory",
        },
        "discard": "old",
        "num_replicas": config.replicas,
        "duplicate_window": duration_nanos(config.duplicate_window),
        "deny_delete": config.deny_delete,
        "deny_purge": config.deny_purge,
        "allow_direct": config.allow_direct,
        "allow_rollup_hdrs": false,
    })
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct WireStreamState {
    #[serde(default)]
    messages: u64,
    #[serde(default)]
    bytes: u64,
    #[serde(default)]
    first_seq: u64,
    #[serde(default)]
    first_ts: Option<String>,
    #[serde(default)]
    last_seq: u64,
    #[serde(default)]
    last_ts: Option<String>,
    #[serde(default)]
    consumer_count: usize,
}

/// A stream info answer.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct WireStreamInfo {
    pub(crate) config: WireStreamConfig,
    state: WireStreamState,
}

impl WireStreamInfo {
    pub(crate) fn to_info(&self) -> StreamInfo {
        let state = &self.state;
        let nonzero_time = |ts: &Option<String>| {
            ts.as_deref()
                .and_then(parse_time)
                .filter(|t| *t > SystemTime::UNIX_EPOCH)
        };
        StreamInfo {
            config: self.config.to_config(),
            messages: state.messages,
            bytes: state.bytes,
            first_seq: if state.messages == 0 {
                0
            } else {
                state.first_seq
            },
            last_seq: state.last_seq,
            first_time: if state.messages == 0 {
                None
            } else {
                nonzero_time(&state.first_ts)
            },
            last_time: nonzero_time(&state.last_ts),
            consumers: state.consumer_count,
        }
    }

    pub(crate) fn last_seq(&self) -> u64 {
        self.state.last_seq
    }
}

/// A page of `STREAM.LIST`.
#[derive(Debug, Deserialize)]
pub(crate) struct WireStreamList {
    #[serde(default)]
    pub(crate) total: usize,
    #[serde(default)]
    pub(crate) streams: Option<Vec<WireStreamInfo>>,
}

/// A page of `STREAM.NAMES`.
#[derive(Debug, Deserialize)]
pub(crate) struct WireStreamNames {
    #[serde(default)]
    pub(crate) streams: Option<Vec<String>>,
}

/// A stored message from `STREAM.MSG.GET`.
#[derive(Debug, Deserialize)]
pub(crate) struct WireStoredMessage {
    subject: String,
    seq: u64,
    #[serde(default)]
    hdrs: Option<String>,
    #[serde(default)]
    data: Option<String>,
    time: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WireMsgGet {
    pub(crate) message: WireStoredMessage,
}

impl WireStoredMessage {
    /// The message, with headers parsed from their wire form so their order
    /// is exactly as published. A header block that is not one (see
    /// [`parse_header_block`]) is kept in
    /// [`StoredMessage::malformed_headers`] instead.
    pub(crate) fn into_stored(self, stream: &str) -> Result<StoredMessage, String> {
        let (headers, malformed_headers) = match self.hdrs.as_deref().filter(|h| !h.is_empty()) {
            Some(encoded) => {
                let raw = STANDARD
                    .decode(encoded)
                    .map_err(|e| format!("headers: {e}"))?;
                match parse_header_block(&raw) {
                    Ok(headers) => (headers, None),
                    Err(reason) => (
                        Headers::new(),
                        Some(MalformedHeaders {
                            raw: Bytes::from(raw),
                            reason,
                        }),
                    ),
                }
            }
            None => (Headers::new(), None),
        };
        let payload = match self.data.as_deref().filter(|d| !d.is_empty()) {
            Some(encoded) => {
                Bytes::from(STANDARD.decode(encoded).map_err(|e| format!("data: {e}"))?)
            }
            None => Bytes::new(),
        };
        Ok(StoredMessage {
            stream: stream.to_owned(),
            seq: self.seq,
            subject: self.subject,
            headers,
            payload,
            time: parse_time(&self.time).ok_or_else(|| format!("bad time {}", self.time))?,
            malformed_headers,
        })
    }
}

/// Parses `NATS/1.0\r\nName: value\r\n...\r\n\r\n` keeping order, by the
/// rules of the async-nats client that delivers messages: UTF-8 throughout,
/// the `NATS/1.0` version line, `name: value` lines with names async-nats
/// accepts, and lines starting with whitespace continuing the value above.
/// A block it refuses makes async-nats drop the connection that receives it,
/// so the adapter must recognise exactly those blocks.
pub(crate) fn parse_header_block(raw: &[u8]) -> Result<Headers, String> {
    let text = std::str::from_utf8(raw).map_err(|e| {
        let at = e.valid_up_to();
        format!(
            "header block is not valid UTF-8 (byte {:#04x} at offset {at})",
            raw.get(at).copied().unwrap_or_default()
        )
    })?;
    let mut lines = text.lines().peekable();
    let version = lines.next().unwrap_or_default();
    if !version.starts_with("NATS/1.0") {
        return Err(format!("bad header version line {version:?}"));
    }
    let mut headers = Headers::new();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("header line without a colon: {line:?}"))?;
        async_nats::HeaderName::from_str(name)
            .map_err(|e| format!("invalid header name {name:?}: {e}"))?;
        let mut value = value.trim_start().to_owned();
        while let Some(more) = lines.next_if(|l| l.starts_with(char::is_whitespace)) {
            value.push_str(more);
        }
        headers.append(name.trim(), value.trim_end());
    }
    Ok(headers)
}

/// Parses JetStream's RFC 3339 timestamps (nanosecond precision).
pub(crate) fn parse_time(text: &str) -> Option<SystemTime> {
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(SystemTime::from)
}

/// Formats a time as RFC 3339 for `opt_start_time`.
pub(crate) fn format_time(time: SystemTime) -> String {
    OffsetDateTime::from(time)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// Nanoseconds as JetStream's JSON wants them.
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_blocks_keep_order_and_repeats() {
        let raw = b"NATS/1.0\r\nb: 1\r\na: 2\r\nb: 3\r\n\r\n";
        let headers = parse_header_block(raw).unwrap();
        assert_eq!(
            headers.iter().collect::<Vec<_>>(),
            vec![("b", "1"), ("a", "2"), ("b", "3")]
        );
    }

    #[test]
    fn blocks_the_client_cannot_parse_are_refused_with_the_reason() {
        let not_utf8 = parse_header_block(b"NATS/1.0\r\nce-id: caf\xff\r\n\r\n").unwrap_err();
        assert!(
            not_utf8.contains("UTF-8") && not_utf8.contains("0xff"),
            "{not_utf8}"
        );
        assert!(parse_header_block(b"NATS/1.0\r\nno colon here\r\n\r\n").is_err());
        assert!(parse_header_block(b"NATS/1.0\r\nbad name: v\r\n\r\n").is_err());
        assert!(parse_header_block(b"HTTP/1.1\r\n\r\n").is_err());
        let folded = parse_header_block(b"NATS/1.0\r\na: one\r\n two\r\n\r\n").unwrap();
        assert_eq!(folded.get("a"), Some("one two"));
    }

    #[test]
    fn times_round_trip_through_rfc3339() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        assert_eq!(parse_time(&format_time(t)), Some(t));
    }
}

//! [`Outbox`]: notifications waiting for a delivery worker, one JSON object
//! per line in an append-only file.
//!
//! # File format (version 1)
//! UTF-8 text; each line is one [`Notification`] as a JSON object ending in
//! `\n`, in the order they were sent. The `idempotency_key` (the event id
//! that caused the notification) is unique in the file: appending a key that
//! is already there does nothing, so a reactor that fires again for the same
//! event (it crashed after appending, before recording the event as fired)
//! does not send twice. Each append is flushed to disk (`fsync`) before the
//! reactor reports success. A delivery worker in another process tails the
//! file, consumes only complete lines (ending in `\n`) and passes the key on
//! to the provider. A crash in the middle of an append leaves an incomplete
//! last line; opening the outbox cuts it off (that event was not recorded as
//! fired, so it is appended again on its redelivery).

use std::{
    collections::HashSet,
    fs::{File, OpenOptions},
    io::{BufRead as _, BufReader, Seek as _, SeekFrom, Write as _},
    path::{Path, PathBuf},
    sync::Mutex,
};

use serde::{Deserialize, Serialize};

use crate::error::{StoreError, StoreErrorKind};

/// The outbox format version, written as `"v":1` in every line.
pub const OUTBOX_FORMAT_VERSION: u8 = 1;

/// One notification to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The outbox format version, [`OUTBOX_FORMAT_VERSION`].
    pub v: u8,
    /// The id of the event behind it; the provider's idempotency key.
    pub idempotency_key: String,
    /// Who is notified.
    pub recipient: String,
    /// Who acted.
    pub actor: String,
    /// The rendered text.
    pub text: String,
    /// When the event was published, RFC 3339.
    pub event_time: String,
}

#[derive(Debug)]
struct Appender {
    file: File,
    keys: HashSet<String>,
}

/// An append-only, de-duplicated notification outbox.
#[derive(Debug)]
pub struct Outbox {
    path: PathBuf,
    appender: Mutex<Appender>,
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::with_source(StoreErrorKind::Io, e)
}

impl Outbox {
    /// Opens (creating if needed) the outbox file at `path`, cutting off an
    /// incomplete last line. Fails with `Corrupted` when a complete line is
    /// not a notification and with `UnsupportedFormat` for another version.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        let mut keys = HashSet::new();
        let mut complete = 0u64;
        let mut reader = BufReader::new(&file);
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader.read_line(&mut line).map_err(io)?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            let notification = parse_line(&line, complete)?;
            keys.insert(notification.idempotency_key);
            complete += n as u64;
        }
        drop(reader);
        if file.metadata().map_err(io)?.len() > complete {
            tracing::warn!(path = %path.display(), "cutting off an incomplete last outbox line");
            file.set_len(complete).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        Ok(Self {
            path,
            appender: Mutex::new(Appender { file, keys }),
        })
    }

    /// The outbox file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `notification` unless its idempotency key is already in the
    /// outbox; true when it was appended. Durable on return.
    pub fn append(&self, notification: &Notification) -> Result<bool, StoreError> {
        let mut appender = self.appender.lock().unwrap_or_else(|p| p.into_inner());
        if appender.keys.contains(&notification.idempotency_key) {
            return Ok(false);
        }
        let mut line = serde_json::to_vec(notification)
            .map_err(|e| StoreError::with_source(StoreErrorKind::Corrupted, e))?;
        line.push(b'\n');
        appender.file.write_all(&line).map_err(io)?;
        appender.file.sync_data().map_err(io)?;
        appender.keys.insert(notification.idempotency_key.clone());
        Ok(true)
    }

    /// Every notification in the file, in append order (what a delivery
    /// worker reads).
    pub fn read_all(path: impl AsRef<Path>) -> Result<Vec<Notification>, StoreError> {
        let file = File::open(path).map_err(io)?;
        let mut out = Vec::new();
        let mut offset = 0u64;
        for line in BufReader::new(file).split(b'\n') {
            let line = line.map_err(io)?;
            let text = String::from_utf8(line)
                .map_err(|e| StoreError::with_source(StoreErrorKind::Corrupted, e))?;
            out.push(parse_line(&text, offset)?);
            offset += text.len() as u64 + 1;
        }
        Ok(out)
    }
}

fn parse_line(line: &str, offset: u64) -> Result<Notification, StoreError> {
    let notification: Notification =
        serde_json::from_str(line.trim_end_matches('\n')).map_err(|e| {
            StoreError::with_source(StoreErrorKind::Corrupted, e)
                .detail(format!("outbox line at byte {offset}"))
        })?;
    if notification.v != OUTBOX_FORMAT_VERSION {
        return Err(StoreError::new(StoreErrorKind::UnsupportedFormat {
            found: notification.v,
        }));
    }
    Ok(notification)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(key: &str) -> Notification {
        Notification {
            v: OUTBOX_FORMAT_VERSION,
            idempotency_key: key.into(),
            recipient: "u-2".into(),
            actor: "u-1".into(),
            text: "u-1 followed you".into(),
            event_time: "2025-06-01T12:00:00Z".into(),
        }
    }

    #[test]
    fn appends_each_key_once_across_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.jsonl");
        let outbox = Outbox::open(&path).unwrap();
        assert!(outbox.append(&note("a")).unwrap());
        assert!(!outbox.append(&note("a")).unwrap());
        assert!(outbox.append(&note("b")).unwrap());
        drop(outbox);
        let outbox = Outbox::open(&path).unwrap();
        assert!(!outbox.append(&note("b")).unwrap());
        let keys: Vec<_> = Outbox::read_all(&path)
            .unwrap()
            .into_iter()
            .map(|n| n.idempotency_key)
            .collect();
        assert_eq!(keys, vec!["a", "b"]);
    }

    #[test]
    fn an_incomplete_last_line_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.jsonl");
        Outbox::open(&path).unwrap().append(&note("a")).unwrap();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"v\":1,\"idempotency_key\":\"b").unwrap();
        drop(file);
        let outbox = Outbox::open(&path).unwrap();
        assert!(outbox.append(&note("b")).unwrap());
        assert_eq!(Outbox::read_all(&path).unwrap().len(), 2);
    }

    #[test]
    fn a_damaged_line_is_corrupted_and_a_foreign_version_unsupported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.jsonl");
        std::fs::write(&path, b"not json\n").unwrap();
        let err = Outbox::open(&path).unwrap_err();
        assert_eq!(err.kind(), &StoreErrorKind::Corrupted);
        let mut other = note("a");
        other.v = 7;
        let line = serde_json::to_string(&other).unwrap() + "\n";
        std::fs::write(&path, line).unwrap();
        let err = Outbox::open(&path).unwrap_err();
        assert_eq!(err.kind(), &StoreErrorKind::UnsupportedFormat { found: 7 });
    }
}

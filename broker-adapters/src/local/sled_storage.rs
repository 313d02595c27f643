//! The embedded backend of the local engine: stream logs in segment files
//! under `<path>/segments/`, every tree in the sled database at `<path>`.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;

use super::{
    segment_log::SegmentLog,
    storage::{Entry, Storage, StorageError, Tree},
};

/// The directory under the store's that holds one directory of segment
/// files per stream.
pub(crate) const SEGMENTS_DIR: &str = "segments";

/// A sled database for the trees and a segment log per stream.
#[derive(Debug, Clone)]
pub(crate) struct SledStorage {
    db: sled::Db,
    path: PathBuf,
    /// Every log opened, for flushes.
    logs: Arc<Mutex<Vec<SegmentLog>>>,
    segment_bytes: u64,
}

/// Why sled refused to open a directory.
#[derive(Debug)]
pub(crate) enum SledOpenError {
    /// Another process (or another open in this one) holds the lock.
    Locked(String),
    /// Anything else.
    Other(sled::Error),
}

impl SledStorage {
    /// Opens (creating if needed) the database in `path`.
    pub(crate) fn open(
        path: &Path,
        background_flush: Option<Duration>,
        cache_capacity: u64,
        segment_bytes: u64,
    ) -> Result<Self, SledOpenError> {
        let every_ms =
            background_flush.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1));
        let config = sled::Config::new()
            .path(path)
            // Appends and whole-log scans dominate; sled's default optimises
            // for small space instead.
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_capacity)
            .flush_every_ms(every_ms);
        let open = || {
            config.open().map_err(|err| match err {
                // sled 0.34 reports a held file lock as a generic I/O error
                // whose text is the only distinguishing mark.
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    SledOpenError::Locked(io.to_string())
                }
                other => SledOpenError::Other(other),
            })
        };
        let db = backbone_core::release::retry_while_locked(open, |e| {
            matches!(e, SledOpenError::Locked(_))
        })?;
        Ok(Self {
            db,
            path: path.to_path_buf(),
            logs: Arc::default(),
            segment_bytes,
        })
    }

    fn logs(&self) -> Vec<SegmentLog> {
        self.logs
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }
}

fn sync_logs(logs: &[SegmentLog]) -> Result<(), StorageError> {
    logs.iter().try_for_each(SegmentLog::sync)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|join| StorageError(format!("flush task failed: {join}")))?
}

fn storage_error(err: sled::Error) -> StorageError {
    StorageError(format!("sled: {err}"))
}

impl Storage for SledStorage {
    type Tree = sled::Tree;
    type Log = SegmentLog;

    fn open_tree(&self, name: &str) -> Result<sled::Tree, StorageError> {
        self.db.open_tree(name).map_err(storage_error)
    }

    fn open_log(&self, stream: &str, next_seq: u64) -> Result<SegmentLog, StorageError> {
        let log = SegmentLog::open(
            self.path.join(SEGMENTS_DIR).join(stream),
            self.segment_bytes,
            self.open_tree(&format!("idx/{stream}"))?,
            self.open_tree(&format!("gone/{stream}"))?,
            next_seq,
        )?;
        self.logs
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(log.clone());
        Ok(log)
    }

    fn persistent(&self) -> bool {
        true
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StorageError>> {
        let (db, logs) = (self.db.clone(), self.logs());
        Box::pin(blocking(move || {
            sync_logs(&logs)?;
            db.flush().map(|_| ()).map_err(storage_error)
        }))
    }

    fn flush_logs(&self) -> BoxFuture<'static, Result<(), StorageError>> {
        let logs = self.logs();
        Box::pin(blocking(move || sync_logs(&logs)))
    }
}

impl Tree for sled::Tree {
    type Value = sled::IVec;

    fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, StorageError> {
        sled::Tree::get(self, key).map_err(storage_error)
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        sled::Tree::insert(self, key, value)
            .map(|_| ())
            .map_err(storage_error)
    }

    fn remove(&self, key: &[u8]) -> Result<(), StorageError> {
        sled::Tree::remove(self, key)
            .map(|_| ())
            .map_err(storage_error)
    }

    fn scan(&self, from: &[u8], limit: usize) -> Result<Vec<Entry<Self>>, StorageError> {
        self.range(from..)
            .take(limit)
            .map(|kv| kv.map_err(storage_error))
            .collect()
    }
}

//! The sled backend of the local engine.

use std::{path::Path, time::Duration};

use futures::future::BoxFuture;

use super::storage::{Entry, Storage, StorageError, Tree};

/// A sled database: one tree per engine tree, one flush for all of them.
#[derive(Debug, Clone)]
pub(crate) struct SledStorage {
    db: sled::Db,
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
        Ok(Self { db })
    }
}

fn storage_error(err: sled::Error) -> StorageError {
    StorageError(format!("sled: {err}"))
}

impl Storage for SledStorage {
    type Tree = sled::Tree;

    fn open_tree(&self, name: &str) -> Result<sled::Tree, StorageError> {
        self.db.open_tree(name).map_err(storage_error)
    }

    fn persistent(&self) -> bool {
        true
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StorageError>> {
        let db = self.db.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || db.flush())
                .await
                .map_err(|join| StorageError(format!("flush task failed: {join}")))?
                .map(|_| ())
                .map_err(storage_error)
        })
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

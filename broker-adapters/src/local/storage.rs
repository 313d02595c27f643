//! The storage the local engine runs on: one message log per stream, and
//! named, ordered key-value trees for everything else.
//!
//! The engine does every encoding, checksum and rule itself; a backend only
//! keeps bytes in order and makes them durable on [`Storage::flush`].
//! [`MemoryStorage`] keeps them in `BTreeMap`s; the embedded backend keeps
//! logs in segment files (`segment_log.rs`) and trees in sled
//! (`sled_storage.rs`).

use std::{
    collections::BTreeMap,
    fmt,
    ops::{Bound, Range},
    sync::{Arc, RwLock},
};

use bytes::Bytes;

use futures::future::BoxFuture;

use super::codec;

/// A failure of the storage backend (I/O, sled internals).
#[derive(Debug)]
pub(crate) struct StorageError(pub(crate) String);

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StorageError {}

/// A key-value pair read from a tree.
pub(crate) type Entry<T> = (<T as Tree>::Value, <T as Tree>::Value);

/// A set of stream logs and named trees with one durability point.
pub(crate) trait Storage: Send + Sync + 'static {
    /// The handle of one tree; cheap to clone.
    type Tree: Tree;
    /// The handle of one stream's log; cheap to clone.
    type Log: Log;

    /// Opens (creating if needed) the tree `name`.
    fn open_tree(&self, name: &str) -> Result<Self::Tree, StorageError>;

    /// Opens (creating if needed) the message log of `stream`; an empty
    /// new log starts at sequence `next_seq`.
    fn open_log(&self, stream: &str, next_seq: u64) -> Result<Self::Log, StorageError>;

    /// True when flushed data survives the process.
    fn persistent(&self) -> bool;

    /// Makes every write done so far durable: logs and trees.
    fn flush(&self) -> BoxFuture<'static, Result<(), StorageError>>;

    /// Makes every log append done so far durable (what a publish receipt
    /// promises); tree writes may stay in memory.
    fn flush_logs(&self) -> BoxFuture<'static, Result<(), StorageError>>;
}

/// Frames for [`Log::append`], encoded once: each a frame header
/// ([`codec::frame_header`]) and the message's sealed value, so the segment
/// log writes the buffer as it is and the memory log slices values out.
#[derive(Debug, Default)]
pub(crate) struct LogBatch {
    /// The frames, back to back.
    pub(crate) frames: Vec<u8>,
    /// Sequence and the range of its sealed value in `frames`, per frame.
    pub(crate) values: Vec<(u64, Range<usize>)>,
}

impl LogBatch {
    /// Adds the frame of message `seq`.
    pub(crate) fn push_message<'a>(
        &mut self,
        seq: u64,
        nanos: u64,
        subject: &str,
        headers: impl Iterator<Item = (&'a str, &'a str)>,
        payload: &[u8],
    ) {
        let frame = self.frames.len();
        self.frames.extend_from_slice(&[0; codec::FRAME_HEADER]);
        let value = self.frames.len();
        codec::encode_message_into(&mut self.frames, nanos, subject, headers, payload);
        let len = u32::try_from(self.frames.len() - value).unwrap_or(u32::MAX);
        self.frames[frame..value].copy_from_slice(&codec::frame_header(len, seq));
        self.values.push((seq, value..self.frames.len()));
    }
}

/// One stream's messages, in sequence order: appended at the end, read by
/// sequence, removed by purges. Sequences are never reused.
pub(crate) trait Log: Clone + Send + Sync + 'static {
    /// Appends `batch`, whose sequences follow the last appended one. Once
    /// it returns, reads see the messages (durability is
    /// [`Storage::flush_logs`]).
    fn append(&self, batch: &LogBatch) -> Result<(), StorageError>;
    /// The sealed value of `seq`; `None` when it is not stored.
    fn get(&self, seq: u64) -> Result<Option<Bytes>, StorageError>;
    /// Up to `limit` stored messages from sequence `from` on, in order. A
    /// message whose frame is damaged is returned with an empty value, so
    /// it reads as corrupted in its place.
    fn scan(&self, from: u64, limit: usize) -> Result<Vec<(u64, Bytes)>, StorageError>;
    /// Removes the messages `seqs` (a filtered purge).
    fn remove(&self, seqs: &[u64]) -> Result<(), StorageError>;
    /// Removes every message (a full purge); the next append continues the
    /// sequence.
    fn clear(&self) -> Result<(), StorageError>;
    /// The sequence the next append starts at: one above the last message
    /// ever appended, or the start of an empty new log.
    fn next_seq(&self) -> u64;
}

/// One ordered tree of byte keys to byte values.
pub(crate) trait Tree: Clone + Send + Sync + 'static {
    /// Bytes handed out by the tree: shared with it where the backend
    /// allows, so reads do not copy.
    type Value: std::ops::Deref<Target = [u8]> + Send + 'static;

    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Self::Value>, StorageError>;
    /// Stores `value` under `key`.
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError>;
    /// Removes `key`.
    fn remove(&self, key: &[u8]) -> Result<(), StorageError>;
    /// Up to `limit` entries with keys at or after `from`, in key order.
    fn scan(&self, from: &[u8], limit: usize) -> Result<Vec<Entry<Self>>, StorageError>;
}

/// Trees in process memory; nothing survives the process.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemoryStorage {
    trees: Arc<RwLock<BTreeMap<String, MemoryTree>>>,
}

/// A `BTreeMap` behind a lock; keys and values are shared, so reads only
/// count references.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemoryTree(Arc<RwLock<SharedMap>>);

/// Shared keys to shared values.
type SharedMap = BTreeMap<Arc<[u8]>, Arc<[u8]>>;

fn poisoned() -> StorageError {
    StorageError("memory storage lock poisoned by a panicking thread".into())
}

impl Storage for MemoryStorage {
    type Tree = MemoryTree;
    type Log = MemoryLog;

    fn open_tree(&self, name: &str) -> Result<MemoryTree, StorageError> {
        let mut trees = self.trees.write().map_err(|_| poisoned())?;
        Ok(trees.entry(name.to_owned()).or_default().clone())
    }

    fn open_log(&self, _stream: &str, next_seq: u64) -> Result<MemoryLog, StorageError> {
        Ok(MemoryLog(Arc::new(RwLock::new(MemoryLogState {
            messages: BTreeMap::new(),
            next_seq,
        }))))
    }

    fn persistent(&self) -> bool {
        false
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StorageError>> {
        Box::pin(async { Ok(()) })
    }

    fn flush_logs(&self) -> BoxFuture<'static, Result<(), StorageError>> {
        Box::pin(async { Ok(()) })
    }
}

/// A stream log in a `BTreeMap` of sequence to sealed value.
#[derive(Debug, Clone)]
pub(crate) struct MemoryLog(Arc<RwLock<MemoryLogState>>);

#[derive(Debug)]
struct MemoryLogState {
    messages: BTreeMap<u64, Bytes>,
    next_seq: u64,
}

impl Log for MemoryLog {
    fn append(&self, batch: &LogBatch) -> Result<(), StorageError> {
        let mut log = self.0.write().map_err(|_| poisoned())?;
        for (seq, range) in &batch.values {
            log.messages
                .insert(*seq, Bytes::copy_from_slice(&batch.frames[range.clone()]));
            log.next_seq = seq + 1;
        }
        Ok(())
    }

    fn get(&self, seq: u64) -> Result<Option<Bytes>, StorageError> {
        Ok(self
            .0
            .read()
            .map_err(|_| poisoned())?
            .messages
            .get(&seq)
            .cloned())
    }

    fn scan(&self, from: u64, limit: usize) -> Result<Vec<(u64, Bytes)>, StorageError> {
        let log = self.0.read().map_err(|_| poisoned())?;
        Ok(log
            .messages
            .range(from..)
            .take(limit)
            .map(|(seq, v)| (*seq, v.clone()))
            .collect())
    }

    fn remove(&self, seqs: &[u64]) -> Result<(), StorageError> {
        let mut log = self.0.write().map_err(|_| poisoned())?;
        for seq in seqs {
            log.messages.remove(seq);
        }
        Ok(())
    }

    fn clear(&self) -> Result<(), StorageError> {
        self.0.write().map_err(|_| poisoned())?.messages.clear();
        Ok(())
    }

    fn next_seq(&self) -> u64 {
        self.0.read().map_or(1, |log| log.next_seq)
    }
}

impl Tree for MemoryTree {
    type Value = Arc<[u8]>;

    fn get(&self, key: &[u8]) -> Result<Option<Arc<[u8]>>, StorageError> {
        Ok(self.0.read().map_err(|_| poisoned())?.get(key).cloned())
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.0
            .write()
            .map_err(|_| poisoned())?
            .insert(Arc::from(key), Arc::from(value));
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<(), StorageError> {
        self.0.write().map_err(|_| poisoned())?.remove(key);
        Ok(())
    }

    fn scan(&self, from: &[u8], limit: usize) -> Result<Vec<Entry<Self>>, StorageError> {
        let map = self.0.read().map_err(|_| poisoned())?;
        Ok(map
            .range::<[u8], _>((Bound::Included(from), Bound::Unbounded))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_tree_scans_in_key_order_from_a_bound() {
        let storage = MemoryStorage::default();
        let tree = storage.open_tree("t").unwrap();
        for k in [3u64, 1, 2, 5] {
            tree.insert(&k.to_be_bytes(), b"v").unwrap();
        }
        let keys: Vec<_> = tree
            .scan(&2u64.to_be_bytes(), 2)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k.to_vec())
            .collect();
        assert_eq!(
            keys,
            vec![2u64.to_be_bytes().to_vec(), 3u64.to_be_bytes().to_vec()]
        );
        assert_eq!(
            storage.open_tree("t").unwrap().scan(&[], 10).unwrap().len(),
            4
        );
    }
}

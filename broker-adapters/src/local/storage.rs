//! The storage the local engine runs on: named, ordered key-value trees.
//!
//! The engine does every encoding, checksum and rule itself; a backend only
//! keeps bytes in key order and makes them durable on [`Storage::flush`].
//! [`MemoryStorage`] keeps them in `BTreeMap`s; the sled backend lives in
//! `sled_storage.rs`.

use std::{
    collections::BTreeMap,
    fmt,
    ops::Bound,
    sync::{Arc, RwLock},
};

use futures::future::BoxFuture;

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

/// A set of named trees with one durability point.
pub(crate) trait Storage: Send + Sync + 'static {
    /// The handle of one tree; cheap to clone.
    type Tree: Tree;

    /// Opens (creating if needed) the tree `name`.
    fn open_tree(&self, name: &str) -> Result<Self::Tree, StorageError>;

    /// True when flushed data survives the process.
    fn persistent(&self) -> bool;

    /// Makes every write done so far durable.
    fn flush(&self) -> BoxFuture<'static, Result<(), StorageError>>;
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

    fn open_tree(&self, name: &str) -> Result<MemoryTree, StorageError> {
        let mut trees = self.trees.write().map_err(|_| poisoned())?;
        Ok(trees.entry(name.to_owned()).or_default().clone())
    }

    fn persistent(&self) -> bool {
        false
    }

    fn flush(&self) -> BoxFuture<'static, Result<(), StorageError>> {
        Box::pin(async { Ok(()) })
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

//! [`ProjectionStore`]: one read model's state in its own sled database.
//!
//! # On-disk format (version 1)
//! Each read model lives in its own directory holding one sled database, so
//! an operator rebuild can build a shadow copy next to it and swap it in with
//! a rename, and a store held by a running service fails to open with
//! [`StoreErrorKind::Locked`]. All keys live in sled's default tree:
//!
//! | key                    | value                                        |
//! |------------------------|----------------------------------------------|
//! | `m` `format`           | one byte: the format version, `1`            |
//! | `m` `checkpoint`       | u64 big-endian: last applied stream sequence |
//! | `m` `layout`           | one byte: the model's key layout ([`crate::ReadModel::layout`]); absent in a store with state means 1 |
//! | `m` `fenced` 0x1F id   | empty: event `id` (its `ce-id`) was dead-lettered by this consumer and its redrive has not applied yet |
//! | `m` `applied` 0x1F id  | u64 BE stream sequence, u64 BE store time (ns since the epoch): the entry that first applied event `id` ([`crate::dedup`]) |
//! | `d` + model key        | the read model's value (JSON, by convention) |
//!
//! The `fenced` and `applied` keys (added within this version, readable by
//! any reader of version 1, which ignores unknown `m` keys) are runtime
//! metadata: the digest and [`ProjectionStore::len`] cover only `d` keys. A
//! store written before the `applied` keys existed remembers no ids: its
//! dedup horizon starts with the first batch committed after the upgrade.
//!
//! A batch of model writes and the new checkpoint are written with one
//! `apply_batch` (atomic) and flushed before any delivery of the batch is
//! acknowledged, so after a crash the store holds either the whole batch or
//! none of it, and redeliveries at or below the checkpoint are skipped.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use serde::de::DeserializeOwned;

use crate::{
    dedup::{self, Applied},
    digest::Digest,
    error::{StoreError, StoreErrorKind},
    transaction::{Transaction, Write},
};

/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u8 = 1;

const DATA: u8 = b'd';
const FORMAT_KEY: &[u8] = b"mformat";
const CHECKPOINT_KEY: &[u8] = b"mcheckpoint";
const FENCE_PREFIX: &[u8] = b"mfenced\x1f";
const LAYOUT_KEY: &[u8] = b"mlayout";

fn fence_key(event_id: &str) -> Vec<u8> {
    let mut k = FENCE_PREFIX.to_vec();
    k.extend_from_slice(event_id.as_bytes());
    k
}

/// How a [`ProjectionStore`] is opened. Build one with `..Default::default()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Bytes of sled page cache. Bounds the store's resident memory: sled's
    /// own default (1 GiB) lets a large read model or a long rebuild grow
    /// the process by its whole working set. Reads of entries outside the
    /// cache go to disk; nothing is lost or slowed beyond that.
    pub cache_capacity: u64,
}

impl StoreOptions {
    /// The page cache of a store opened with [`ProjectionStore::open`].
    pub const DEFAULT_CACHE_CAPACITY: u64 = 64 * 1024 * 1024;
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            cache_capacity: Self::DEFAULT_CACHE_CAPACITY,
        }
    }
}

/// A read model's store: its state plus its checkpoint.
#[derive(Debug, Clone)]
pub struct ProjectionStore {
    db: sled::Db,
    path: PathBuf,
    /// The sweep of the applied-event records (in memory: after a restart
    /// it starts over).
    prune_sweep: Arc<Mutex<PruneSweep>>,
}

/// Where commits stand in sweeping the applied-event records.
#[derive(Debug)]
struct PruneSweep {
    /// Where the next slice starts (empty: at the first record).
    cursor: Vec<u8>,
    /// The oldest store time among the records the current pass kept or
    /// added.
    pass_oldest: u64,
    /// No record is older than this (0: unknown). A commit whose cutoff is
    /// not above it has nothing to prune and reads nothing: without it every
    /// commit would read a slice of records still inside the horizon.
    oldest: u64,
}

impl Default for PruneSweep {
    fn default() -> Self {
        Self {
            cursor: Vec::new(),
            pass_oldest: u64::MAX,
            oldest: 0,
        }
    }
}

pub(crate) fn io_error(e: sled::Error) -> StoreError {
    match &e {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            StoreError::with_source(StoreErrorKind::Locked, e)
        }
        sled::Error::Corruption { .. } => StoreError::with_source(StoreErrorKind::Corrupted, e),
        _ => StoreError::with_source(StoreErrorKind::Io, e),
    }
}

pub(crate) fn data_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(DATA);
    k.extend_from_slice(key);
    k
}

impl ProjectionStore {
    /// Opens (creating if needed) the store in directory `path`.
    ///
    /// First completes or undoes a rebuild swap of this store that was
    /// interrupted ([`crate::swap::recover`]). Fails with `Locked` when
    /// another process or handle holds it (after up to a second, in case
    /// sled is still releasing a handle just dropped) and with
    /// `UnsupportedFormat` when it was written by another format version.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, &StoreOptions::default())
    }

    /// [`ProjectionStore::open`] with explicit options.
    pub fn open_with(path: impl AsRef<Path>, options: &StoreOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        crate::swap::recover(&path)?;
        let config = sled::Config::new()
            .path(&path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(options.cache_capacity);
        let db = backbone_core::release::retry_while_locked(
            || config.open().map_err(io_error),
            |e| e.kind() == &StoreErrorKind::Locked,
        )?;
        match db.get(FORMAT_KEY).map_err(io_error)? {
            None => {
                db.insert(FORMAT_KEY, &[FORMAT_VERSION]).map_err(io_error)?;
                db.flush().map_err(io_error)?;
            }
            Some(v) if v.as_ref() == [FORMAT_VERSION] => {}
            Some(v) => {
                let found = v.first().copied().unwrap_or(0);
                return Err(StoreError::new(StoreErrorKind::UnsupportedFormat { found }));
            }
        }
        Ok(Self {
            db,
            path,
            prune_sweep: Arc::default(),
        })
    }

    /// The directory holding the store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last applied stream sequence (0 when nothing was applied).
    pub fn checkpoint(&self) -> Result<u64, StoreError> {
        let value = self.db.get(CHECKPOINT_KEY).map_err(io_error)?;
        decode_checkpoint(value.as_deref())
    }

    /// Checks that the store holds model state of key layout `layout`
    /// ([`crate::ReadModel::layout`]), recording it in a store that holds no
    /// model key yet; the runtime and rebuilds claim before applying anything.
    /// Fails with `ModelLayout` for another layout.
    pub fn claim_layout(&self, layout: u8) -> Result<(), StoreError> {
        if self.check_layout(layout)? {
            self.db.insert(LAYOUT_KEY, &[layout]).map_err(io_error)?;
            self.flush()?;
        }
        Ok(())
    }

    /// [`ProjectionStore::claim_layout`] for readers: records nothing. True
    /// when the store holds no model key (any layout fits).
    pub fn check_layout(&self, layout: u8) -> Result<bool, StoreError> {
        let found = match self.db.get(LAYOUT_KEY).map_err(io_error)? {
            Some(v) => match *v {
                [found] => found,
                _ => {
                    return Err(StoreError::with_detail(
                        StoreErrorKind::Corrupted,
                        "key layout",
                    ));
                }
            },
            // No model key yet (a partial rebuild's shadow may already hold
            // its start checkpoint).
            None if self.db.scan_prefix([DATA]).next().is_none() => return Ok(true),
            // Stores from before layouts were recorded hold layout 1.
            None => 1,
        };
        if found == layout {
            Ok(false)
        } else {
            Err(StoreError::new(StoreErrorKind::ModelLayout {
                found,
                expected: layout,
            }))
        }
    }

    /// Makes every write so far durable.
    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(io_error)
    }

    /// True while event `event_id` (its `ce-id`) was dead-lettered by this
    /// consumer and no redrive of it has applied yet.
    pub fn is_fenced(&self, event_id: &str) -> Result<bool, StoreError> {
        self.db.contains_key(fence_key(event_id)).map_err(io_error)
    }

    /// The committed value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .db
            .get(data_key(key))
            .map_err(io_error)?
            .map(|v| v.to_vec()))
    }

    /// The committed value of `key`, decoded from JSON.
    pub fn get_json<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.get(key)?.map(|v| decode_json(&v)).transpose()
    }

    /// Committed entries whose key starts with `prefix`, in key order.
    pub fn scan_prefix(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + '_ {
        self.db.scan_prefix(data_key(prefix)).map(|entry| {
            let (k, v) = entry.map_err(io_error)?;
            Ok((k[1..].to_vec(), v.to_vec()))
        })
    }

    /// A new transaction reading this store's committed state.
    pub fn transaction(&self) -> Transaction<'_> {
        Transaction::new(self)
    }

    /// Writes the transaction's changes and the new `checkpoint` atomically,
    /// then flushes them to disk.
    pub fn commit(&self, tx: Transaction<'_>, checkpoint: u64) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let writes = tx.into_writes();
        for (key, write) in writes.data {
            let key = data_key(&key);
            let below = match write {
                Write::Append(_) => self.db.get(&key).map_err(io_error)?,
                Write::Put(_) | Write::Delete => None,
            };
            match write.over(below.as_deref()) {
                Some(v) => batch.insert(key, v),
                None => batch.remove(key),
            }
        }
        for (event_id, set) in writes.fences {
            if set {
                batch.insert(fence_key(&event_id), &[]);
            } else {
                batch.remove(fence_key(&event_id));
            }
        }
        self.prune_applied(&mut batch, writes.prune_before, &writes.applied)?;
        for (event_id, record) in &writes.applied {
            batch.insert(dedup::applied_key(event_id), &record.encode());
        }
        batch.insert(CHECKPOINT_KEY, &checkpoint.to_be_bytes());
        self.db.apply_batch(batch).map_err(io_error)?;
        self.flush()
    }

    /// Where this model first applied `event_id`, if it still remembers
    /// ([`crate::dedup`]).
    pub(crate) fn applied(&self, event_id: &str) -> Result<Option<Applied>, StoreError> {
        let value = self
            .db
            .get(dedup::applied_key(event_id))
            .map_err(io_error)?;
        value
            .map(|v| {
                Applied::decode(&v).ok_or_else(|| {
                    StoreError::with_detail(StoreErrorKind::Corrupted, "applied-event record")
                })
            })
            .transpose()
    }

    /// Adds to `batch` the removal of the applied-event records, among the
    /// next [`dedup::PRUNE_STEP`] of the sweep, of entries stored before
    /// `cutoff`, except those `fresh` records replace.
    fn prune_applied(
        &self,
        batch: &mut sled::Batch,
        cutoff: u64,
        fresh: &std::collections::BTreeMap<String, Applied>,
    ) -> Result<(), StoreError> {
        if cutoff == 0 {
            return Ok(());
        }
        let fresh_oldest = fresh.values().map(|r| r.time).min().unwrap_or(u64::MAX);
        let mut sweep = self.prune_sweep.lock().expect("prune sweep lock");
        if cutoff <= sweep.oldest {
            sweep.oldest = sweep.oldest.min(fresh_oldest);
            return Ok(());
        }
        let prefix = dedup::applied_prefix();
        let from = if sweep.cursor.starts_with(prefix) {
            sweep.cursor.clone()
        } else {
            prefix.to_vec()
        };
        let mut pass_oldest = sweep.pass_oldest.min(fresh_oldest);
        let mut seen = 0;
        let mut last = None;
        for entry in self.db.range(from..) {
            let (key, value) = entry.map_err(io_error)?;
            if !key.starts_with(prefix) || seen == dedup::PRUNE_STEP {
                break;
            }
            seen += 1;
            let record = Applied::decode(&value);
            let id = std::str::from_utf8(&key[prefix.len()..]).unwrap_or_default();
            match record {
                Some(r) if r.time >= cutoff => pass_oldest = pass_oldest.min(r.time),
                _ if fresh.contains_key(id) => {}
                _ => batch.remove(key.as_ref()),
            }
            last = Some(key);
        }
        // Continue after the last key next time; at the end, start over
        // once a record can have left the horizon.
        match (last, seen == dedup::PRUNE_STEP) {
            (Some(key), true) => {
                let mut next = key.to_vec();
                next.push(0);
                sweep.cursor = next;
                sweep.pass_oldest = pass_oldest;
            }
            _ => {
                sweep.cursor = Vec::new();
                sweep.pass_oldest = u64::MAX;
                sweep.oldest = pass_oldest;
            }
        }
        Ok(())
    }

    /// A stable hash of the full model state, excluding the checkpoint: two
    /// stores that applied the same events compare equal.
    pub fn digest(&self) -> Result<u64, StoreError> {
        let mut digest = Digest::new();
        for entry in self.scan_prefix(b"") {
            let (k, v) = entry?;
            digest.entry(&k, &v);
        }
        Ok(digest.finish())
    }

    /// Number of model entries (excluding the checkpoint).
    pub fn len(&self) -> usize {
        self.db.scan_prefix([DATA]).count()
    }

    /// True when the model holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn decode_checkpoint(value: Option<&[u8]>) -> Result<u64, StoreError> {
    match value {
        None => Ok(0),
        Some(bytes) => bytes
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::with_detail(StoreErrorKind::Corrupted, "checkpoint")),
    }
}

pub(crate) fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::with_source(StoreErrorKind::Corrupted, e))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    /// Commits one applied record per id, entry `seq` stored `secs` after
    /// the epoch, under `horizon`.
    fn apply_at(store: &ProjectionStore, ids: &[&str], seq: u64, secs: u64, horizon: Duration) {
        let mut tx = store.transaction();
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        for id in ids {
            tx.record_application(id, seq, time, horizon);
        }
        store.commit(tx, seq).unwrap();
    }

    #[test]
    fn records_that_leave_the_horizon_are_pruned_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProjectionStore::open(dir.path()).unwrap();
        let horizon = Duration::from_secs(100);
        let old: Vec<String> = (0..dedup::PRUNE_STEP + 10)
            .map(|i| format!("old-{i}"))
            .collect();
        let old: Vec<&str> = old.iter().map(String::as_str).collect();
        apply_at(&store, &old, 1, 1_000, horizon);
        // Inside the horizon: the sweep has nothing to remove, and after one
        // pass it stops reading until a record can have left.
        for seq in 2..5 {
            apply_at(&store, &[&format!("new-{seq}")], seq, 1_050, horizon);
        }
        assert!(store.applied("old-0").unwrap().is_some());
        assert_eq!(store.prune_sweep.lock().unwrap().oldest, 1_000_000_000_000);
        // Past it: the old records go within a few commits, the recent stay.
        for seq in 5..9 {
            apply_at(&store, &[&format!("new-{seq}")], seq, 1_120, horizon);
        }
        for id in &old {
            assert_eq!(store.applied(id).unwrap(), None, "{id}");
        }
        for seq in 2..9 {
            assert!(store.applied(&format!("new-{seq}")).unwrap().is_some());
        }
    }

    #[test]
    fn commit_writes_state_and_checkpoint_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProjectionStore::open(dir.path()).unwrap();
        assert_eq!(store.checkpoint().unwrap(), 0);
        let mut tx = store.transaction();
        tx.put(b"a", b"1".to_vec());
        store.commit(tx, 7).unwrap();
        drop(store);
        let store = ProjectionStore::open(dir.path()).unwrap();
        assert_eq!(store.checkpoint().unwrap(), 7);
        assert_eq!(store.get(b"a").unwrap(), Some(b"1".to_vec()));
    }

    #[test]
    fn digest_ignores_the_checkpoint() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (sa, sb) = (
            ProjectionStore::open(a.path()).unwrap(),
            ProjectionStore::open(b.path()).unwrap(),
        );
        for (store, cp) in [(&sa, 3), (&sb, 99)] {
            let mut tx = store.transaction();
            tx.put(b"k", b"v".to_vec());
            store.commit(tx, cp).unwrap();
        }
        assert_eq!(sa.digest().unwrap(), sb.digest().unwrap());
        let mut tx = sb.transaction();
        tx.put(b"k", b"w".to_vec());
        sb.commit(tx, 100).unwrap();
        assert_ne!(sa.digest().unwrap(), sb.digest().unwrap());
    }

    #[test]
    fn a_store_larger_than_its_cache_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            cache_capacity: 256 * 1024,
        };
        let value = vec![7u8; 1024];
        {
            let store = ProjectionStore::open_with(dir.path(), &options).unwrap();
            for chunk in 0..8u32 {
                let mut tx = store.transaction();
                for i in 0..256u32 {
                    tx.put(&(chunk * 256 + i).to_be_bytes(), value.clone());
                }
                store.commit(tx, u64::from(chunk) + 1).unwrap();
            }
        }
        let store = ProjectionStore::open_with(dir.path(), &options).unwrap();
        assert_eq!(store.checkpoint().unwrap(), 8);
        assert_eq!(store.len(), 2048);
        for key in [0u32, 1000, 2047] {
            assert_eq!(store.get(&key.to_be_bytes()).unwrap(), Some(value.clone()));
        }
    }

    #[test]
    fn applied_records_leave_the_index_past_the_horizon() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProjectionStore::open(dir.path()).unwrap();
        let horizon = Duration::from_secs(60);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut tx = store.transaction();
        tx.record_application("old", 1, t0, horizon);
        store.commit(tx, 1).unwrap();
        let mut tx = store.transaction();
        tx.record_application("new", 2, t0 + horizon * 2, horizon);
        store.commit(tx, 2).unwrap();
        assert_eq!(store.applied("old").unwrap(), None);
        assert_eq!(store.applied("new").unwrap().map(|r| r.seq), Some(2));
        let tx = store.transaction();
        assert_eq!(
            tx.first_application("new", t0 + horizon * 2, horizon)
                .unwrap(),
            Some(2)
        );
    }

    #[test]
    fn a_held_store_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _held = ProjectionStore::open(dir.path()).unwrap();
        let err = ProjectionStore::open(dir.path()).unwrap_err();
        assert_eq!(err.kind(), &StoreErrorKind::Locked);
    }

    #[test]
    fn a_foreign_format_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            db.insert(FORMAT_KEY, &[9u8]).unwrap();
            db.flush().unwrap();
        }
        let err = ProjectionStore::open(dir.path()).unwrap_err();
        assert_eq!(err.kind(), &StoreErrorKind::UnsupportedFormat { found: 9 });
    }

    #[test]
    fn a_damaged_checkpoint_is_corrupted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = ProjectionStore::open(dir.path()).unwrap();
            store.db.insert(CHECKPOINT_KEY, &[1u8, 2]).unwrap();
            store.db.flush().unwrap();
        }
        let store = ProjectionStore::open(dir.path()).unwrap();
        assert_eq!(
            store.checkpoint().unwrap_err().kind(),
            &StoreErrorKind::Corrupted
        );
    }
}

//! [`Transaction`]: a handler's view of a read model while a batch applies.
//!
//! Writes go to an overlay, so a handler reads its own writes and those of
//! earlier events of the same batch; nothing reaches the store until the
//! runtime commits the batch together with the checkpoint. Each event's
//! writes are staged separately and dropped when its handler fails, so a
//! failed event leaves no partial state behind.
//!
//! [`Transaction::append`] adds bytes to a value without reading it: the
//! appends of a batch collect in the overlay and the commit reads the stored
//! value once. Posting lists (a key's events, in stream order) cost one store
//! write per batch that way, where a key per posting costs one per event.
//!
//! Besides model writes a transaction carries the runtime's *fences*: ids of
//! events this consumer dead-lettered, kept in the store's metadata (outside
//! the model's keys and its digest) until their redrive applies (see
//! [`crate::redrive`]).

use std::collections::BTreeMap;

use std::time::{Duration, SystemTime};

use serde::{Serialize, de::DeserializeOwned};

use crate::{
    dedup::{self, Applied},
    error::StoreError,
    store::{ProjectionStore, decode_json},
};

type Overlay = BTreeMap<Vec<u8>, Write>;

/// One key's pending change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Write {
    /// The value is replaced.
    Put(Vec<u8>),
    /// The key is removed.
    Delete,
    /// These bytes follow whatever value is below (none counts as empty).
    Append(Vec<u8>),
}

impl Write {
    /// `self` followed by `later`.
    fn then(&mut self, later: Write) {
        match (self, later) {
            (Write::Put(v) | Write::Append(v), Write::Append(tail)) => v.extend_from_slice(&tail),
            (this @ Write::Delete, Write::Append(tail)) => *this = Write::Put(tail),
            (this, later) => *this = later,
        }
    }

    /// The value this write leaves over `below`.
    pub(crate) fn over(self, below: Option<&[u8]>) -> Option<Vec<u8>> {
        match self {
            Write::Put(v) => Some(v),
            Write::Delete => None,
            Write::Append(tail) => {
                let mut v = below.map(<[u8]>::to_vec).unwrap_or_default();
                v.extend_from_slice(&tail);
                Some(v)
            }
        }
    }
}

/// The value `write` leaves over what `below` reads; `below` is read only
/// when the write depends on it.
fn resolve(
    write: Option<&Write>,
    below: impl FnOnce() -> Result<Option<Vec<u8>>, StoreError>,
) -> Result<Option<Vec<u8>>, StoreError> {
    match write {
        None => below(),
        Some(write @ Write::Append(_)) => Ok(write.clone().over(below()?.as_deref())),
        Some(write) => Ok(write.clone().over(None)),
    }
}

fn stage(overlay: &mut Overlay, key: &[u8], write: Write) {
    match overlay.get_mut(key) {
        Some(pending) => pending.then(write),
        None => {
            overlay.insert(key.to_vec(), write);
        }
    }
}

/// Key/value pairs in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Pending writes over a [`ProjectionStore`], committed by the runtime.
#[derive(Debug)]
pub struct Transaction<'a> {
    store: &'a ProjectionStore,
    batch: Overlay,
    event: Overlay,
    batch_fences: BTreeMap<String, bool>,
    event_fences: BTreeMap<String, bool>,
    applied: BTreeMap<String, Applied>,
    prune_before: u64,
}

/// What a commit writes besides the model's keys.
#[derive(Debug, Default)]
pub(crate) struct Writes {
    /// Model writes.
    pub(crate) data: Overlay,
    /// Fences set (`true`) or lifted (`false`).
    pub(crate) fences: BTreeMap<String, bool>,
    /// Event ids applied in this batch ([`crate::dedup`]).
    pub(crate) applied: BTreeMap<String, Applied>,
    /// Records of entries stored before this time may be pruned.
    pub(crate) prune_before: u64,
}

impl<'a> Transaction<'a> {
    pub(crate) fn new(store: &'a ProjectionStore) -> Self {
        Self {
            store,
            batch: Overlay::new(),
            event: Overlay::new(),
            batch_fences: BTreeMap::new(),
            event_fences: BTreeMap::new(),
            applied: BTreeMap::new(),
            prune_before: 0,
        }
    }

    /// The sequence of the entry that first applied `event_id`, when the
    /// entry stored at `time` is a copy of it within `horizon`
    /// ([`crate::dedup`]).
    pub(crate) fn first_application(
        &self,
        event_id: &str,
        time: SystemTime,
        horizon: Duration,
    ) -> Result<Option<u64>, StoreError> {
        if horizon.is_zero() {
            return Ok(None);
        }
        let record = match self.applied.get(event_id) {
            Some(record) => Some(*record),
            None => self.store.applied(event_id)?,
        };
        let time = dedup::time_nanos(time);
        Ok(record.filter(|r| r.covers(time, horizon)).map(|r| r.seq))
    }

    /// Records that the entry `seq` stored at `time` applied `event_id`.
    pub(crate) fn record_application(
        &mut self,
        event_id: &str,
        seq: u64,
        time: SystemTime,
        horizon: Duration,
    ) {
        if horizon.is_zero() {
            return;
        }
        let time = dedup::time_nanos(time);
        self.applied
            .insert(event_id.to_owned(), Applied { seq, time });
        self.prune_before = self.prune_before.max(dedup::prune_cutoff(time, horizon));
    }

    /// Records that this consumer dead-lettered event `event_id`, so that
    /// its redrive applies (kept whatever the current event's outcome).
    pub(crate) fn fence(&mut self, event_id: &str) {
        self.batch_fences.insert(event_id.to_owned(), true);
    }

    /// Removes the fence of `event_id` as part of the current event; true
    /// when there was one (its redrive is then to be applied).
    pub(crate) fn take_fence(&mut self, event_id: &str) -> Result<bool, StoreError> {
        let present = match self
            .event_fences
            .get(event_id)
            .or_else(|| self.batch_fences.get(event_id))
        {
            Some(present) => *present,
            None => self.store.is_fenced(event_id)?,
        };
        if present {
            self.event_fences.insert(event_id.to_owned(), false);
        }
        Ok(present)
    }

    /// The value of `key` as this transaction sees it.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        resolve(self.event.get(key), || {
            resolve(self.batch.get(key), || self.store.get(key))
        })
    }

    /// The value of `key` decoded from JSON.
    pub fn get_json<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.get(key)?.map(|v| decode_json(&v)).transpose()
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: Vec<u8>) {
        stage(&mut self.event, key, Write::Put(value));
    }

    /// Appends `bytes` to the value of `key` (an absent key counts as
    /// empty) without reading it.
    pub fn append(&mut self, key: &[u8], bytes: &[u8]) {
        stage(&mut self.event, key, Write::Append(bytes.to_vec()));
    }

    /// Sets `key` to the JSON encoding of `value`.
    pub fn put_json<T: Serialize>(&mut self, key: &[u8], value: &T) {
        let bytes = serde_json::to_vec(value).expect("read-model values serialize to JSON");
        self.put(key, bytes);
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: &[u8]) {
        stage(&mut self.event, key, Write::Delete);
    }

    /// Entries whose key starts with `prefix`, in key order, as this
    /// transaction sees them.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, StoreError> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for entry in self.store.scan_prefix(prefix) {
            let (k, v) = entry?;
            merged.insert(k, v);
        }
        for overlay in [&self.batch, &self.event] {
            for (k, v) in overlay.range(prefix.to_vec()..) {
                if !k.starts_with(prefix) {
                    break;
                }
                match v.clone().over(merged.get(k).map(Vec::as_slice)) {
                    Some(v) => merged.insert(k.clone(), v),
                    None => merged.remove(k),
                };
            }
        }
        Ok(merged.into_iter().collect())
    }

    /// Keeps the current event's writes in the batch.
    pub(crate) fn keep_event(&mut self) {
        for (key, write) in std::mem::take(&mut self.event) {
            stage(&mut self.batch, &key, write);
        }
        let fences = std::mem::take(&mut self.event_fences);
        self.batch_fences.extend(fences);
    }

    /// Drops the current event's writes.
    pub(crate) fn discard_event(&mut self) {
        self.event.clear();
        self.event_fences.clear();
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
            && self.event.is_empty()
            && self.batch_fences.is_empty()
            && self.event_fences.is_empty()
            && self.applied.is_empty()
    }

    /// Everything the commit writes.
    pub(crate) fn into_writes(mut self) -> Writes {
        self.keep_event();
        Writes {
            data: self.batch,
            fences: self.batch_fences,
            applied: self.applied,
            prune_before: self.prune_before,
        }
    }
}

/// Joins key parts with a 0x1F (unit separator) byte: event keys are
/// printable ASCII, so parts never contain it and prefixes stay exact.
pub fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0x1f);
        }
        k.extend_from_slice(part);
    }
    k
}

/// A key prefix: the parts joined and followed by the separator, so that
/// `prefix(&[b"user", b"u-1"])` does not match `u-10`.
pub fn prefix(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = key(parts);
    k.push(0x1f);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_see_own_writes_and_discarded_events_vanish() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProjectionStore::open(dir.path()).unwrap();
        let mut seed = store.transaction();
        seed.put(b"p\x1fa", b"1".to_vec());
        seed.put(b"p\x1fb", b"2".to_vec());
        store.commit(seed, 1).unwrap();

        let mut tx = store.transaction();
        tx.delete(b"p\x1fa");
        tx.put(b"p\x1fc", b"3".to_vec());
        tx.keep_event();
        assert_eq!(tx.get(b"p\x1fa").unwrap(), None);
        tx.put(b"p\x1fd", b"4".to_vec());
        tx.discard_event();
        let keys: Vec<_> = tx
            .scan_prefix(&prefix(&[b"p"]))
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec![b"p\x1fb".to_vec(), b"p\x1fc".to_vec()]);
        store.commit(tx, 2).unwrap();
        assert_eq!(store.get(b"p\x1fc").unwrap(), Some(b"3".to_vec()));
        assert_eq!(store.get(b"p\x1fd").unwrap(), None);
    }

    #[test]
    fn appends_stack_over_committed_values_and_vanish_with_their_event() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProjectionStore::open(dir.path()).unwrap();
        let mut seed = store.transaction();
        seed.put(b"p\x1fa", b"1".to_vec());
        store.commit(seed, 1).unwrap();

        let mut tx = store.transaction();
        tx.append(b"p\x1fa", b"2");
        tx.keep_event();
        tx.append(b"p\x1fa", b"3");
        assert_eq!(tx.get(b"p\x1fa").unwrap(), Some(b"123".to_vec()));
        tx.discard_event();
        assert_eq!(tx.get(b"p\x1fa").unwrap(), Some(b"12".to_vec()));
        tx.append(b"p\x1fb", b"x");
        tx.delete(b"p\x1fb");
        tx.append(b"p\x1fb", b"y");
        tx.keep_event();
        let entries = tx.scan_prefix(&prefix(&[b"p"])).unwrap();
        assert_eq!(
            entries,
            vec![
                (b"p\x1fa".to_vec(), b"12".to_vec()),
                (b"p\x1fb".to_vec(), b"y".to_vec())
            ]
        );
        store.commit(tx, 2).unwrap();
        assert_eq!(store.get(b"p\x1fa").unwrap(), Some(b"12".to_vec()));
        assert_eq!(store.get(b"p\x1fb").unwrap(), Some(b"y".to_vec()));
    }

    #[test]
    fn prefixes_do_not_match_longer_ids() {
        assert!(!key(&[b"u", b"u-10"]).starts_with(&prefix(&[b"u", b"u-1"])));
        assert!(key(&[b"u", b"u-1", b"x"]).starts_with(&prefix(&[b"u", b"u-1"])));
    }
}

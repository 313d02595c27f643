//! The per-stream indexes kept in memory so a publish costs one storage
//! write: the deduplication window and the last sequence of every subject.
//!
//! Both are derived from the log. The dedup window is rebuilt on open from
//! the messages stored within `duplicate_window`; the subject index is
//! checkpointed to the `subj/<stream>` tree every [`SUBJECT_CHECKPOINT`]
//! messages (and on purge and close) together with the sequence it covers,
//! and on open the log after that sequence is replayed over it.

use std::collections::{HashMap, HashSet, VecDeque};

use super::{
    codec,
    storage::{StorageError, Tree},
};

/// Messages stored between two checkpoints of the subject index; bounds the
/// log replayed on open.
pub(crate) const SUBJECT_CHECKPOINT: u64 = 65_536;

/// Message id -> first message within the duplicate window.
#[derive(Debug, Default)]
pub(crate) struct DedupWindow {
    by_id: HashMap<String, DedupEntry>,
    /// Ids in store order, for expiry.
    order: VecDeque<(u64, String)>,
}

/// The message a deduplication id stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DedupEntry {
    /// Its sequence.
    pub(crate) seq: u64,
    /// Its store time, nanoseconds since the epoch.
    pub(crate) nanos: u64,
}

impl DedupWindow {
    /// The message stored with `id` within `window_nanos` of `now_nanos`.
    pub(crate) fn lookup(&self, id: &str, now_nanos: u64, window_nanos: u128) -> Option<u64> {
        let entry = self.by_id.get(id)?;
        let age = now_nanos.saturating_sub(entry.nanos);
        (u128::from(age) < window_nanos).then_some(entry.seq)
    }

    /// Records that `id` was stored as `seq` at `nanos`.
    pub(crate) fn insert(&mut self, id: &str, seq: u64, nanos: u64) {
        self.by_id.insert(id.to_owned(), DedupEntry { seq, nanos });
        self.order.push_back((nanos, id.to_owned()));
    }

    /// Forgets ids whose window has passed at `now_nanos`.
    pub(crate) fn expire(&mut self, now_nanos: u64, window_nanos: u128) {
        while let Some((nanos, _)) = self.order.front() {
            if u128::from(now_nanos.saturating_sub(*nanos)) < window_nanos {
                break;
            }
            let Some((nanos, id)) = self.order.pop_front() else {
                break;
            };
            // A later message with the same id (stored after this one's
            // window passed) keeps its own entry.
            if self.by_id.get(&id).is_some_and(|e| e.nanos == nanos) {
                self.by_id.remove(&id);
            }
        }
    }

    /// Ids currently remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }
}

/// Subject -> last sequence stored on it, with the changes not yet
/// checkpointed.
#[derive(Debug, Default)]
pub(crate) struct SubjectIndex {
    last: HashMap<String, u64>,
    unsaved: HashSet<String>,
    /// Every message up to this sequence is reflected in the `subj` tree.
    pub(crate) saved_through: u64,
}

impl SubjectIndex {
    /// The last sequence stored on `subject` (0: none).
    pub(crate) fn last(&self, subject: &str) -> u64 {
        self.last.get(subject).copied().unwrap_or(0)
    }

    /// Records that `seq` was stored on `subject`.
    pub(crate) fn record(&mut self, subject: &str, seq: u64) {
        match self.last.get_mut(subject) {
            Some(last) => *last = seq,
            None => {
                self.last.insert(subject.to_owned(), seq);
            }
        }
        if !self.unsaved.contains(subject) {
            self.unsaved.insert(subject.to_owned());
        }
    }

    /// Subjects known, for purges.
    pub(crate) fn subjects(&self) -> Vec<String> {
        self.last.keys().cloned().collect()
    }

    /// Forgets `subject` here and in `tree`.
    pub(crate) fn forget<T: Tree>(&mut self, subject: &str, tree: &T) -> Result<(), StorageError> {
        self.last.remove(subject);
        self.unsaved.remove(subject);
        tree.remove(subject.as_bytes())
    }

    /// Loads the checkpoint stored in `tree` (covering up to `saved_through`).
    pub(crate) fn load<T: Tree>(tree: &T, saved_through: u64) -> Result<Self, StorageError> {
        let mut index = Self {
            saved_through,
            ..Self::default()
        };
        for (key, value) in tree.scan(b"", usize::MAX)? {
            // A damaged entry is dropped: the subject then reads as having
            // no message until it is published again, and is reported.
            match codec::decode_u64(&value) {
                Ok(seq) => {
                    let subject = String::from_utf8_lossy(&key).into_owned();
                    index.last.insert(subject, seq);
                }
                Err(c) => tracing::error!(
                    subject = %String::from_utf8_lossy(&key),
                    why = c.0,
                    "subject index entry is corrupted; dropping it"
                ),
            }
        }
        Ok(index)
    }

    /// Writes the unsaved changes to `tree`; the caller then persists
    /// `saved_through = last_seq` with the stream counters.
    pub(crate) fn checkpoint<T: Tree>(
        &mut self,
        tree: &T,
        last_seq: u64,
    ) -> Result<(), StorageError> {
        for subject in self.unsaved.drain() {
            if let Some(seq) = self.last.get(&subject) {
                tree.insert(subject.as_bytes(), &codec::encode_u64(*seq))?;
            }
        }
        self.saved_through = last_seq;
        Ok(())
    }

    /// True when enough messages were stored since the last checkpoint.
    pub(crate) fn checkpoint_due(&self, last_seq: u64) -> bool {
        last_seq.saturating_sub(self.saved_through) >= SUBJECT_CHECKPOINT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_entries_expire_with_their_window() {
        let mut w = DedupWindow::default();
        w.insert("a", 1, 100);
        w.insert("b", 2, 150);
        assert_eq!(w.lookup("a", 120, 50), Some(1));
        assert_eq!(w.lookup("a", 150, 50), None);
        w.expire(160, 50);
        assert_eq!(w.len(), 1);
        assert_eq!(w.lookup("b", 160, 50), Some(2));
    }

    #[test]
    fn a_reused_id_keeps_its_newer_entry_when_the_old_one_expires() {
        let mut w = DedupWindow::default();
        w.insert("a", 1, 100);
        w.insert("a", 5, 200);
        w.expire(210, 50);
        assert_eq!(w.lookup("a", 210, 50), Some(5));
    }
}

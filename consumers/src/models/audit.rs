//! Audit index: every event, found by key, type, source, correlation id,
//! event id or time.
//!
//! Keys: `event/<seq:be64>` → [`AuditEntry`] (metadata only; fetch the
//! event itself with `Broker::get(seq)`), and index entries with empty
//! values: `key/<key>/<seq>`, `type/<type>/<seq>`, `source/<source>/<seq>`,
//! `correlation/<id>/<seq>`, `time/<unix ms:be64>/<seq>`, and
//! `id/<event id>` → seq. A lookup is one prefix scan plus one point read
//! per hit, so it costs the same on a million events as on a hundred.
//!
//! A copy of an indexed event (same event id, republished within the dedup
//! horizon, see [`crate::dedup`]) is not indexed again: `duplicate/<seq>` →
//! the first entry's seq records it, and `id/<event id>` keeps pointing at
//! the first entry.

use backbone_schemas::Envelope;
use serde::{Deserialize, Serialize};

use crate::{
    error::{HandlerError, StoreError},
    model::ReadModel,
    store::ProjectionStore,
    transaction::{Transaction, key, prefix},
};

/// The audit read model.
#[derive(Debug, Default, Clone, Copy)]
pub struct Audit;

/// What the index keeps of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Stream sequence.
    pub seq: u64,
    /// Event id (`ce-id`).
    pub id: String,
    /// Event type.
    pub event_type: String,
    /// Event key.
    pub key: String,
    /// Publishing service.
    pub source: String,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// Event time, unix milliseconds.
    pub time_ms: i64,
}

/// An audit index lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditQuery {
    /// Events with this key.
    Key(String),
    /// Events of this type.
    Type(String),
    /// Events from this source.
    Source(String),
    /// Events of this correlation id.
    Correlation(String),
    /// Events whose time is in `[from_ms, to_ms)`.
    TimeRange {
        /// Start, unix ms inclusive.
        from_ms: i64,
        /// End, unix ms exclusive.
        to_ms: i64,
    },
}

fn seq_bytes(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn time_bytes(ms: i64) -> [u8; 8] {
    // Flip the sign bit so negative times sort before positive ones.
    ((ms as u64) ^ (1 << 63)).to_be_bytes()
}

impl Audit {
    fn entry(store: &ProjectionStore, seq: u64) -> Result<Option<AuditEntry>, StoreError> {
        store.get_json(&key(&[b"event", &seq_bytes(seq)]))
    }

    /// The sequence of the entry that entry `seq` is a copy of, when the
    /// index recorded it as a duplicate.
    pub fn duplicate_of(store: &ProjectionStore, seq: u64) -> Result<Option<u64>, StoreError> {
        store.get_json(&key(&[b"duplicate", &seq_bytes(seq)]))
    }

    /// The entry of the event with id `id`.
    pub fn by_id(store: &ProjectionStore, id: &str) -> Result<Option<AuditEntry>, StoreError> {
        match store.get_json::<u64>(&key(&[b"id", id.as_bytes()]))? {
            Some(seq) => Self::entry(store, seq),
            None => Ok(None),
        }
    }

    /// Up to `limit` entries matching `query`, in stream order.
    pub fn query(
        store: &ProjectionStore,
        query: &AuditQuery,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let (index, value): (&[u8], &str) = match query {
            AuditQuery::Key(v) => (b"key", v),
            AuditQuery::Type(v) => (b"type", v),
            AuditQuery::Source(v) => (b"source", v),
            AuditQuery::Correlation(v) => (b"correlation", v),
            AuditQuery::TimeRange { from_ms, to_ms } => {
                return Self::time_range(store, *from_ms, *to_ms, limit);
            }
        };
        let p = prefix(&[index, value.as_bytes()]);
        let mut out = Vec::new();
        for entry in store.scan_prefix(&p).take(limit) {
            let (k, _) = entry?;
            let seq = u64::from_be_bytes(k[p.len()..].try_into().unwrap_or_default());
            if let Some(e) = Self::entry(store, seq)? {
                out.push(e);
            }
        }
        Ok(out)
    }

    fn time_range(
        store: &ProjectionStore,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let p = prefix(&[b"time"]);
        let mut out = Vec::new();
        for entry in store.scan_prefix(&p) {
            let (k, _) = entry?;
            let rest = &k[p.len()..];
            let ms = u64::from_be_bytes(rest[..8].try_into().unwrap_or_default()) ^ (1 << 63);
            let ms = ms as i64;
            if ms < from_ms {
                continue;
            }
            if ms >= to_ms || out.len() >= limit {
                break;
            }
            let seq = u64::from_be_bytes(rest[9..].try_into().unwrap_or_default());
            if let Some(e) = Self::entry(store, seq)? {
                out.push(e);
            }
        }
        Ok(out)
    }
}

impl ReadModel for Audit {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn event_types(&self) -> &'static [&'static str] {
        &[]
    }

    fn apply(
        &self,
        seq: u64,
        event: &Envelope,
        tx: &mut Transaction<'_>,
    ) -> Result<(), HandlerError> {
        let entry = AuditEntry {
            seq,
            id: event.id.to_string(),
            event_type: event.event_type.clone(),
            key: event.key.clone(),
            source: event.source.clone(),
            correlation_id: event.correlation_id.clone(),
            time_ms: (event.time.unix_timestamp_nanos() / 1_000_000) as i64,
        };
        let s = seq_bytes(seq);
        tx.put_json(&key(&[b"event", &s]), &entry);
        tx.put_json(&key(&[b"id", entry.id.as_bytes()]), &seq);
        tx.put(&key(&[b"key", entry.key.as_bytes(), &s]), Vec::new());
        tx.put(
            &key(&[b"type", entry.event_type.as_bytes(), &s]),
            Vec::new(),
        );
        tx.put(&key(&[b"source", entry.source.as_bytes(), &s]), Vec::new());
        if let Some(c) = &entry.correlation_id {
            tx.put(&key(&[b"correlation", c.as_bytes(), &s]), Vec::new());
        }
        tx.put(&key(&[b"time", &time_bytes(entry.time_ms), &s]), Vec::new());
        Ok(())
    }

    fn duplicate(
        &self,
        seq: u64,
        first_seq: u64,
        _event: &Envelope,
        tx: &mut Transaction<'_>,
    ) -> Result<(), HandlerError> {
        tx.put_json(&key(&[b"duplicate", &seq_bytes(seq)]), &first_seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::testing::{apply_all, follow, payment};

    #[test]
    fn lookups_by_every_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProjectionStore::open(dir.path()).unwrap();
        let events = vec![
            follow("u-1", "u-2"),
            payment("u-1", "p-1", 5, "USD"),
            follow("u-3", "u-1"),
        ];
        let first_id = events[0].id.to_string();
        apply_all(&Audit, &store, events);
        let seqs = |q: AuditQuery| -> Vec<u64> {
            Audit::query(&store, &q, 10)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect()
        };
        assert_eq!(seqs(AuditQuery::Key("u-1".into())), vec![1, 2]);
        assert_eq!(seqs(AuditQuery::Type("user.followed".into())), vec![1, 3]);
        assert_eq!(seqs(AuditQuery::Source("test".into())), vec![1, 2, 3]);
        assert_eq!(seqs(AuditQuery::Correlation("corr-u-1".into())), vec![1, 2]);
        assert_eq!(
            seqs(AuditQuery::TimeRange {
                from_ms: i64::MIN,
                to_ms: i64::MAX
            }),
            vec![1, 2, 3]
        );
        assert_eq!(Audit::by_id(&store, &first_id).unwrap().unwrap().seq, 1);
        assert_eq!(
            Audit::query(&store, &AuditQuery::Key("u-1".into()), 1)
                .unwrap()
                .len(),
            1
        );
    }
}

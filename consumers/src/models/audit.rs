//! Audit index: every event, found by key, type, source, correlation id,
//! event id or time.
//!
//! # Key layout 2
//! Postings are packed in blocks, so indexing a batch writes one store key
//! per block it touches instead of one per event and index (layout 1 wrote
//! seven keys per event; the store's cost is per key written):
//!
//! | key | value |
//! |---|---|
//! | `event/<seq >> 8>` | frames `[seq u64 BE][len u32 BE][`[`AuditEntry`]` JSON]`, in stream order |
//! | `key/<key>/<seq >> 12>`, `type/<type>/..`, `source/<source>/..`, `correlation/<id>/..` | sequences, u64 BE each, ascending |
//! | `time/<unix second>/<seq >> 12>` | `[unix ms u64 BE][seq u64 BE]` pairs, in stream order |
//! | `id/<event id>` | the sequence (JSON) |
//! | `duplicate/<seq>` | the sequence of the entry it copies (JSON) |
//!
//! Block numbers and times are u64 big-endian (times with the sign bit
//! flipped, so earlier sorts first): a prefix scan visits a posting list in
//! stream order, and a block holds at most 4 096 postings. Blocks depend only
//! on sequences, never on how events were batched, so a rebuild writes the
//! same bytes as the live consumer. A lookup is one prefix scan plus one
//! read per entry block with hits.
//!
//! A copy of an indexed event (same event id, republished within the dedup
//! horizon, see [`crate::dedup`]) is not indexed again: `duplicate/<seq>`
//! records it, and `id/<event id>` keeps pointing at the first entry.

use std::collections::BTreeMap;

use backbone_schemas::Envelope;
use serde::{Deserialize, Serialize};

use crate::{
    error::{HandlerError, StoreError, StoreErrorKind},
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

/// Entries per `event/` block: `seq >> ENTRY_BLOCK_BITS` names the block.
const ENTRY_BLOCK_BITS: u32 = 8;
/// Postings per posting block.
const POSTING_BLOCK_BITS: u32 = 12;

fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// `n` with the sign bit flipped, so negative values sort first.
fn ordered(n: i64) -> [u8; 8] {
    ((n as u64) ^ (1 << 63)).to_be_bytes()
}

fn unordered(bytes: &[u8]) -> Option<i64> {
    Some((u64::from_be_bytes(bytes.try_into().ok()?) ^ (1 << 63)) as i64)
}

fn corrupted(what: &str) -> StoreError {
    StoreError::with_detail(StoreErrorKind::Corrupted, format!("audit index: {what}"))
}

/// The sequences of a posting block.
fn postings(block: &[u8]) -> Result<impl Iterator<Item = u64> + '_, StoreError> {
    if !block.len().is_multiple_of(8) {
        return Err(corrupted("posting block"));
    }
    Ok(block
        .chunks_exact(8)
        .map(|b| u64::from_be_bytes(b.try_into().expect("8-byte chunk"))))
}

/// The entries of an `event/` block whose sequence `wanted` accepts.
fn entries_in(block: &[u8], wanted: impl Fn(u64) -> bool) -> Result<Vec<AuditEntry>, StoreError> {
    let mut out = Vec::new();
    let mut rest = block;
    while !rest.is_empty() {
        let (Some(seq), Some(len)) = (rest.get(..8), rest.get(8..12)) else {
            return Err(corrupted("entry frame"));
        };
        let seq = u64::from_be_bytes(seq.try_into().expect("8 bytes"));
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        let body = rest
            .get(12..12 + len)
            .ok_or_else(|| corrupted("entry frame"))?;
        if wanted(seq) {
            out.push(
                serde_json::from_slice(body)
                    .map_err(|e| StoreError::with_source(StoreErrorKind::Corrupted, e))?,
            );
        }
        rest = &rest[12 + len..];
    }
    Ok(out)
}

impl Audit {
    /// The entries of `seqs` (ascending), reading each entry block once.
    fn entries(store: &ProjectionStore, seqs: &[u64]) -> Result<Vec<AuditEntry>, StoreError> {
        let mut by_block: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for &seq in seqs {
            by_block
                .entry(seq >> ENTRY_BLOCK_BITS)
                .or_default()
                .push(seq);
        }
        let mut out = Vec::with_capacity(seqs.len());
        for (block, wanted) in by_block {
            if let Some(bytes) = store.get(&key(&[b"event", &be(block)]))? {
                out.extend(entries_in(&bytes, |seq| {
                    wanted.binary_search(&seq).is_ok()
                })?);
            }
        }
        Ok(out)
    }

    /// The sequence of the entry that entry `seq` is a copy of, when the
    /// index recorded it as a duplicate.
    pub fn duplicate_of(store: &ProjectionStore, seq: u64) -> Result<Option<u64>, StoreError> {
        store.get_json(&key(&[b"duplicate", &be(seq)]))
    }

    /// The entry of the event with id `id`.
    pub fn by_id(store: &ProjectionStore, id: &str) -> Result<Option<AuditEntry>, StoreError> {
        match store.get_json::<u64>(&key(&[b"id", id.as_bytes()]))? {
            Some(seq) => Ok(Self::entries(store, &[seq])?.pop()),
            None => Ok(None),
        }
    }

    /// Up to `limit` entries matching `query`, in stream order (a time range:
    /// in time order, then stream order).
    pub fn query(
        store: &ProjectionStore,
        query: &AuditQuery,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        Self::query_after(store, query, None, limit)
    }

    /// [`query`](Self::query) from after `after`, the `(time_ms, seq)` of
    /// the last entry of the previous page: the entries that follow it in
    /// the query's order.
    pub fn query_after(
        store: &ProjectionStore,
        query: &AuditQuery,
        after: Option<(i64, u64)>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let after_seq = after.map_or(0, |(_, seq)| seq);
        let (index, value): (&[u8], &str) = match query {
            AuditQuery::Key(v) => (b"key", v),
            AuditQuery::Type(v) => (b"type", v),
            AuditQuery::Source(v) => (b"source", v),
            AuditQuery::Correlation(v) => (b"correlation", v),
            AuditQuery::TimeRange { from_ms, to_ms } => {
                return Self::time_range(store, (*from_ms, *to_ms), after, limit);
            }
        };
        let mut seqs = Vec::new();
        for block in store.scan_prefix(&prefix(&[index, value.as_bytes()])) {
            let (_, block) = block?;
            let block = postings(&block)?.filter(|seq| *seq > after_seq);
            seqs.extend(block.take(limit - seqs.len()));
            if seqs.len() >= limit {
                break;
            }
        }
        Self::entries(store, &seqs)
    }

    fn time_range(
        store: &ProjectionStore,
        (from_ms, to_ms): (i64, i64),
        after: Option<(i64, u64)>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let from_ms = after.map_or(from_ms, |(ms, _)| from_ms.max(ms));
        let p = prefix(&[b"time"]);
        let (first_second, end_second) = (from_ms.div_euclid(1000), to_ms.div_euclid(1000));
        // (ms, seq) of each second in the range, all of its blocks together.
        let mut seconds: BTreeMap<i64, Vec<(i64, u64)>> = BTreeMap::new();
        for block in store.scan_prefix(&p) {
            let (k, block) = block?;
            let second = k
                .get(p.len()..p.len() + 8)
                .and_then(unordered)
                .ok_or_else(|| corrupted("time key"))?;
            if second < first_second {
                continue;
            }
            if second > end_second {
                break;
            }
            let hits = seconds.entry(second).or_default();
            for pair in postings(&block)?.collect::<Vec<_>>().chunks_exact(2) {
                let ms = (pair[0] ^ (1 << 63)) as i64;
                if (from_ms..to_ms).contains(&ms) && after.is_none_or(|a| (ms, pair[1]) > a) {
                    hits.push((ms, pair[1]));
                }
            }
        }
        let mut out = Vec::new();
        for (_, mut hits) in seconds {
            hits.sort_unstable();
            hits.truncate(limit - out.len());
            let mut seqs: Vec<u64> = hits.iter().map(|&(_, seq)| seq).collect();
            seqs.sort_unstable();
            let mut found: BTreeMap<u64, AuditEntry> = Self::entries(store, &seqs)?
                .into_iter()
                .map(|e| (e.seq, e))
                .collect();
            out.extend(hits.iter().filter_map(|(_, seq)| found.remove(seq)));
            if out.len() >= limit {
                break;
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

    fn layout(&self) -> u8 {
        2
    }

    fn apply(
        &self,
        seq: u64,
        event: &Envelope,
        tx: &mut Transaction<'_>,
    ) -> Result<(), HandlerError> {
        let time_ms = (event.time.unix_timestamp_nanos() / 1_000_000) as i64;
        let entry = AuditEntry {
            seq,
            id: event.id.to_string(),
            event_type: event.event_type.clone(),
            key: event.key.clone(),
            source: event.source.clone(),
            correlation_id: event.correlation_id.clone(),
            time_ms,
        };
        let json = serde_json::to_vec(&entry).expect("audit entries serialize to JSON");
        let mut frame = Vec::with_capacity(12 + json.len());
        frame.extend_from_slice(&be(seq));
        frame.extend_from_slice(&u32::try_from(json.len()).unwrap_or(u32::MAX).to_be_bytes());
        frame.extend_from_slice(&json);
        tx.append(&key(&[b"event", &be(seq >> ENTRY_BLOCK_BITS)]), &frame);
        tx.put_json(&key(&[b"id", entry.id.as_bytes()]), &seq);
        let block = be(seq >> POSTING_BLOCK_BITS);
        let mut post = |index: &[u8], value: &str| {
            tx.append(&key(&[index, value.as_bytes(), &block]), &be(seq));
        };
        post(b"key", &entry.key);
        post(b"type", &entry.event_type);
        post(b"source", &entry.source);
        if let Some(c) = &entry.correlation_id {
            post(b"correlation", c);
        }
        let mut pair = ordered(time_ms).to_vec();
        pair.extend_from_slice(&be(seq));
        tx.append(
            &key(&[b"time", &ordered(time_ms.div_euclid(1000)), &block]),
            &pair,
        );
        Ok(())
    }

    fn duplicate(
        &self,
        seq: u64,
        first_seq: u64,
        _event: &Envelope,
        tx: &mut Transaction<'_>,
    ) -> Result<(), HandlerError> {
        tx.put_json(&key(&[b"duplicate", &be(seq)]), &first_seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Outcome, apply_message};
    use crate::models::testing::{apply_all, follow, payment, stored};
    use proptest::prelude::*;

    /// One generated event: key (user), type choice, time, gap to its seq.
    type Spec = (u8, bool, i64, u64);

    fn envelope(&(user, is_follow, time_ms, _): &Spec) -> Envelope {
        let user = format!("u-{user}");
        let mut e = if is_follow {
            follow(&user, "u-0")
        } else {
            payment(&user, "p", 1, "USD")
        };
        e.time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(time_ms) * 1_000_000)
            .unwrap();
        e
    }

    /// Each spec's seq and envelope.
    fn events(specs: &[Spec]) -> Vec<(u64, Envelope)> {
        let mut seq = 0;
        specs
            .iter()
            .map(|spec| {
                seq += spec.3;
                (seq, envelope(spec))
            })
            .collect()
    }

    /// Indexes `events`, committing every `batch` of them.
    fn index(store: &ProjectionStore, events: &[(u64, Envelope)], batch: usize) {
        for chunk in events.chunks(batch) {
            let mut tx = store.transaction();
            for (seq, e) in chunk {
                assert_eq!(
                    apply_message(&Audit, &stored(*seq, e), &mut tx),
                    Outcome::Applied
                );
            }
            store.commit(tx, chunk.last().unwrap().0).unwrap();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Every lookup agrees with a filter over the events, blocks never
        /// depend on batching (same digest), and limits cut in order.
        #[test]
        fn lookups_match_a_scan_of_the_events(
            specs in prop::collection::vec(
                (0u8..6, any::<bool>(), -3_000i64..3_000, prop_oneof![Just(1u64), 1u64..700]),
                1..120,
            ),
            batch in 1usize..40,
            from_ms in -3_500i64..3_500,
            span in 0i64..4_000,
            limit in 1usize..50,
        ) {
            let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let (store, one_by_one) = (
                ProjectionStore::open(a.path()).unwrap(),
                ProjectionStore::open(b.path()).unwrap(),
            );
            let indexed = events(&specs);
            index(&store, &indexed, batch);
            index(&one_by_one, &indexed, 1);
            prop_assert_eq!(store.digest().unwrap(), one_by_one.digest().unwrap());

            let seqs = |q: &AuditQuery, limit| -> Vec<u64> {
                Audit::query(&store, q, limit).unwrap().iter().map(|e| e.seq).collect()
            };
            for user in 0..6u8 {
                let expected: Vec<u64> = indexed
                    .iter()
                    .filter(|(_, e)| e.key == format!("u-{user}"))
                    .map(|(s, _)| *s)
                    .collect();
                let q = AuditQuery::Key(format!("u-{user}"));
                prop_assert_eq!(&seqs(&q, usize::MAX), &expected);
                let cut: Vec<u64> = expected.iter().copied().take(limit).collect();
                prop_assert_eq!(seqs(&q, limit), cut);
            }
            let follows: Vec<u64> = indexed
                .iter()
                .filter(|(_, e)| e.event_type == "user.followed")
                .map(|(s, _)| *s)
                .collect();
            prop_assert_eq!(seqs(&AuditQuery::Type("user.followed".into()), usize::MAX), follows);

            let to_ms = from_ms + span;
            let mut in_range: Vec<(i64, u64)> = indexed
                .iter()
                .map(|(s, e)| ((e.time.unix_timestamp_nanos() / 1_000_000) as i64, *s))
                .filter(|(ms, _)| (from_ms..to_ms).contains(ms))
                .collect();
            in_range.sort_unstable();
            in_range.truncate(limit);
            let expected: Vec<u64> = in_range.iter().map(|&(_, s)| s).collect();
            prop_assert_eq!(seqs(&AuditQuery::TimeRange { from_ms, to_ms }, limit), expected);

            // Pages of `limit`, each after the last entry of the one before,
            // add up to the whole answer, for an index and a time range.
            let queries = [AuditQuery::Key("u-1".into()), AuditQuery::TimeRange { from_ms, to_ms }];
            for q in &queries {
                let (mut paged, mut after) = (Vec::new(), None);
                loop {
                    let page = Audit::query_after(&store, q, after, limit).unwrap();
                    paged.extend(page.iter().map(|e| e.seq));
                    match page.last() {
                        Some(last) if page.len() == limit => after = Some((last.time_ms, last.seq)),
                        _ => break,
                    }
                }
                prop_assert_eq!(paged, seqs(q, usize::MAX));
            }

            for (seq, e) in indexed.iter().step_by(7) {
                let entry = Audit::by_id(&store, &e.id.to_string()).unwrap().unwrap();
                prop_assert_eq!(entry.seq, *seq);
                prop_assert_eq!(&entry.key, &e.key);
            }
        }
    }

    #[test]
    fn a_store_of_layout_1_is_refused_until_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProjectionStore::open(dir.path()).unwrap();
        // A store with state and no layout recorded was written by layout 1.
        let mut tx = store.transaction();
        tx.put(b"event\x1f\0\0\0\0\0\0\0\x01", b"{}".to_vec());
        store.commit(tx, 1).unwrap();
        let err = store.claim_layout(Audit.layout()).unwrap_err();
        assert_eq!(
            err.kind(),
            &StoreErrorKind::ModelLayout {
                found: 1,
                expected: 2
            }
        );
        let fresh = tempfile::tempdir().unwrap();
        let fresh = ProjectionStore::open(fresh.path()).unwrap();
        fresh.claim_layout(Audit.layout()).unwrap();
        assert_eq!(
            fresh.check_layout(1).unwrap_err().kind(),
            &StoreErrorKind::ModelLayout {
                found: 2,
                expected: 1
            }
        );
    }

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

//! The progress of one durable consumer and the rules that move it: which
//! deliveries are due again, what settling does, when a message is exhausted.
//! Pure state; the engine does the storage around it.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::codec::{Corrupt, seal, unseal};
use crate::{
    consumer::{AckKind, ConsumerConfig, ConsumerInfo, DeliverPolicy, Exhausted},
    error::AckErrorKind,
    stream::subject_matches,
};

/// A delivered message awaiting its settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pending {
    /// Deliveries so far.
    pub(crate) count: u32,
    /// When it becomes due for redelivery.
    pub(crate) due: Instant,
}

/// A durable consumer's state.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerState {
    /// The settings in force (the deliver policy only mattered at creation).
    pub(crate) config: ConsumerConfig,
    /// Every stream sequence up to here was examined for first delivery.
    pub(crate) cursor: u64,
    /// Highest stream sequence delivered.
    pub(crate) delivered_seq: u64,
    /// Delivered and not yet settled, by stream sequence.
    pub(crate) pending: BTreeMap<u64, Pending>,
    /// Ran out of deliveries; not yet taken by `take_exhausted`.
    pub(crate) exhausted: Vec<Exhausted>,
    /// Matching stored messages after `cursor` (kept current by the engine).
    pub(crate) num_pending: u64,
    /// Settled since the state was last written to storage.
    pub(crate) unsaved: bool,
}

/// The part of [`ConsumerState`] that is persisted.
#[derive(Debug, Serialize, Deserialize)]
struct Persisted {
    description: Option<String>,
    filter_subjects: Vec<String>,
    ack_wait: Duration,
    max_deliver: Option<u32>,
    backoff: Vec<Duration>,
    max_ack_pending: usize,
    cursor: u64,
    delivered_seq: u64,
    pending: Vec<(u64, u32)>,
    exhausted: Vec<(u64, u32)>,
}

impl ConsumerState {
    /// A new consumer that has examined everything up to `cursor`.
    pub(crate) fn new(config: ConsumerConfig, cursor: u64, num_pending: u64) -> Self {
        Self {
            config,
            cursor,
            delivered_seq: cursor,
            pending: BTreeMap::new(),
            exhausted: Vec::new(),
            num_pending,
            unsaved: false,
        }
    }

    /// Forgets progress beyond `last_seq`, the end of the log as opened.
    pub(crate) fn clamp_to(&mut self, last_seq: u64) {
        self.cursor = self.cursor.min(last_seq);
        self.delivered_seq = self.delivered_seq.min(last_seq);
        self.pending.retain(|seq, _| *seq <= last_seq);
    }

    /// True when the consumer takes messages on `subject`.
    pub(crate) fn matches(&self, subject: &str) -> bool {
        filters_match(&self.config.filter_subjects, subject)
    }

    /// How long the `count`-th delivery may stay unsettled.
    pub(crate) fn timeout(&self, count: u32) -> Duration {
        let backoff = &self.config.backoff;
        if backoff.is_empty() {
            self.config.ack_wait
        } else {
            let index = (count.max(1) as usize - 1).min(backoff.len() - 1);
            backoff[index]
        }
    }

    /// Records the first delivery of `seq`.
    pub(crate) fn record_delivery(&mut self, seq: u64, now: Instant) {
        self.delivered_seq = self.delivered_seq.max(seq);
        self.num_pending = self.num_pending.saturating_sub(1);
        let due = now + self.timeout(1);
        self.pending.insert(seq, Pending { count: 1, due });
    }

    /// Moves due deliveries that used up `max_deliver` to the exhausted
    /// list; returns the other due sequences, in order. True in the second
    /// field when anything changed.
    pub(crate) fn due(&mut self, now: Instant) -> (Vec<u64>, bool) {
        let mut due = Vec::new();
        let mut changed = false;
        let max_deliver = self.config.max_deliver;
        self.pending.retain(|&seq, p| {
            if p.due > now {
                return true;
            }
            if max_deliver.is_some_and(|max| p.count >= max) {
                self.exhausted.push(Exhausted {
                    stream_seq: seq,
                    deliveries: p.count,
                });
                changed = true;
                return false;
            }
            due.push(seq);
            true
        });
        (due, changed)
    }

    /// Records a redelivery of a pending `seq`; returns its delivery count.
    pub(crate) fn record_redelivery(&mut self, seq: u64, now: Instant) -> u32 {
        let count = self.pending.get(&seq).map_or(1, |p| p.count + 1);
        let due = now + self.timeout(count);
        self.pending.insert(seq, Pending { count, due });
        count
    }

    /// The earliest time a pending delivery becomes due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.due).min()
    }

    /// Applies a settlement of `seq`.
    pub(crate) fn settle(
        &mut self,
        seq: u64,
        kind: &AckKind,
        now: Instant,
    ) -> Result<(), AckErrorKind> {
        let Some(pending) = self.pending.get(&seq).copied() else {
            return Err(AckErrorKind::NotPending);
        };
        match kind {
            AckKind::Ack | AckKind::Term { .. } => {
                self.pending.remove(&seq);
            }
            AckKind::Nak { delay } => {
                let delay = delay.unwrap_or_else(|| {
                    if self.config.backoff.is_empty() {
                        Duration::ZERO
                    } else {
                        self.timeout(pending.count)
                    }
                });
                self.pending.insert(
                    seq,
                    Pending {
                        due: now + delay,
                        ..pending
                    },
                );
            }
            AckKind::Progress => {
                let due = now + self.timeout(pending.count);
                self.pending.insert(seq, Pending { due, ..pending });
            }
        }
        Ok(())
    }

    /// The consumer's progress as reported.
    pub(crate) fn info(&self, stream: &str, name: &str) -> ConsumerInfo {
        let ack_floor = self
            .pending
            .keys()
            .next()
            .map_or(self.delivered_seq, |first| first - 1);
        ConsumerInfo {
            stream: stream.to_owned(),
            name: name.to_owned(),
            delivered_stream_seq: self.delivered_seq,
            ack_floor_stream_seq: ack_floor,
            num_pending: self.num_pending,
            num_ack_pending: self.pending.len() as u64,
            num_redelivered: self.pending.values().filter(|p| p.count > 1).count() as u64,
        }
    }

    /// Takes settings that may change from a binder's `config`; true when
    /// the filters changed (the engine then recounts `num_pending`).
    pub(crate) fn rebind(&mut self, config: ConsumerConfig) -> bool {
        let filters_changed = config.filter_subjects != self.config.filter_subjects;
        self.config = ConsumerConfig {
            deliver_policy: self.config.deliver_policy,
            ..config
        };
        filters_changed
    }

    /// The sealed persisted form.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let c = &self.config;
        let persisted = Persisted {
            description: c.description.clone(),
            filter_subjects: c.filter_subjects.clone(),
            ack_wait: c.ack_wait,
            max_deliver: c.max_deliver,
            backoff: c.backoff.clone(),
            max_ack_pending: c.max_ack_pending,
            cursor: self.cursor,
            delivered_seq: self.delivered_seq,
            pending: self.pending.iter().map(|(s, p)| (*s, p.count)).collect(),
            exhausted: self
                .exhausted
                .iter()
                .map(|e| (e.stream_seq, e.deliveries))
                .collect(),
        };
        seal(&serde_json::to_vec(&persisted).unwrap_or_default())
    }

    /// Decodes [`Self::encode`]'s output for durable `name`. Pending
    /// deliveries are due at once: their ack wait did not survive the restart.
    pub(crate) fn decode(name: &str, value: &[u8], now: Instant) -> Result<Self, Corrupt> {
        let p: Persisted =
            serde_json::from_slice(unseal(value)?).map_err(|_| Corrupt("consumer state"))?;
        Ok(Self {
            config: ConsumerConfig {
                durable_name: name.to_owned(),
                description: p.description,
                deliver_policy: DeliverPolicy::All,
                filter_subjects: p.filter_subjects,
                ack_wait: p.ack_wait,
                max_deliver: p.max_deliver,
                backoff: p.backoff,
                max_ack_pending: p.max_ack_pending,
            },
            cursor: p.cursor,
            delivered_seq: p.delivered_seq,
            pending: p
                .pending
                .into_iter()
                .map(|(seq, count)| (seq, Pending { count, due: now }))
                .collect(),
            exhausted: p
                .exhausted
                .into_iter()
                .map(|(stream_seq, deliveries)| Exhausted {
                    stream_seq,
                    deliveries,
                })
                .collect(),
            num_pending: 0,
            unsaved: false,
        })
    }
}

/// True when `subject` matches one of `filters` (all subjects when empty).
pub(crate) fn filters_match(filters: &[String], subject: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| subject_matches(f, subject))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(config: ConsumerConfig) -> ConsumerState {
        ConsumerState::new(config, 0, 3)
    }

    #[test]
    fn ack_settles_once() {
        let now = Instant::now();
        let mut s = state(ConsumerConfig::durable("c"));
        s.record_delivery(1, now);
        assert_eq!(s.settle(1, &AckKind::Ack, now), Ok(()));
        assert_eq!(
            s.settle(1, &AckKind::Ack, now),
            Err(AckErrorKind::NotPending)
        );
        assert_eq!(s.info("S", "c").ack_floor_stream_seq, 1);
    }

    #[test]
    fn expired_delivery_is_due_then_exhausted_at_max_deliver() {
        let now = Instant::now();
        let mut s = state(ConsumerConfig {
            ack_wait: Duration::from_millis(10),
            max_deliver: Some(2),
            ..ConsumerConfig::durable("c")
        });
        s.record_delivery(1, now);
        assert_eq!(s.due(now).0, Vec::<u64>::new());
        let later = now + Duration::from_millis(11);
        assert_eq!(s.due(later).0, vec![1]);
        assert_eq!(s.record_redelivery(1, later), 2);
        let (due, changed) = s.due(later + Duration::from_millis(11));
        assert!(due.is_empty() && changed);
        assert_eq!(
            s.exhausted,
            vec![Exhausted {
                stream_seq: 1,
                deliveries: 2
            }]
        );
    }

    #[test]
    fn nak_without_delay_follows_backoff() {
        let now = Instant::now();
        let backoff = vec![Duration::from_secs(1), Duration::from_secs(5)];
        let mut s = state(ConsumerConfig {
            backoff,
            ..ConsumerConfig::durable("c")
        });
        s.record_delivery(4, now);
        s.settle(4, &AckKind::Nak { delay: None }, now).unwrap();
        assert_eq!(s.pending[&4].due, now + Duration::from_secs(1));
        assert_eq!(s.timeout(9), Duration::from_secs(5));
    }

    #[test]
    fn persisted_state_round_trips_with_pending_due_now() {
        let now = Instant::now();
        let mut s = state(ConsumerConfig {
            filter_subjects: vec!["a.>".into()],
            ..ConsumerConfig::durable("c")
        });
        s.cursor = 9;
        s.record_delivery(7, now);
        let back = ConsumerState::decode("c", &s.encode(), now).unwrap();
        assert_eq!(back.cursor, 9);
        assert_eq!(back.delivered_seq, 7);
        assert_eq!(back.pending[&7], Pending { count: 1, due: now });
        assert_eq!(back.config.filter_subjects, vec!["a.>".to_string()]);
    }
}

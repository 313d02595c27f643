//! Durable consumers on the engine: creation and binding, fetching with
//! redelivery, settling, and their progress.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use async_trait::async_trait;

use super::{
    codec,
    consumer_state::ConsumerState,
    core::{CHUNK, Core, StreamRt, count_matching},
    storage::{Log, Storage, StorageError, Tree},
    subject::{patterns_overlap, valid_name, valid_pattern},
};
use crate::{
    consumer::{
        AckKind, Acker, Consumer, ConsumerConfig, ConsumerInfo, DeliverPolicy, Delivery, Exhausted,
    },
    error::{AckError, AckErrorKind, ConsumerError, ConsumerErrorKind, Error},
};

/// Longest a settlement stays in memory only before it is written to
/// storage (then flushed by the next flush, as before).
pub(crate) const SETTLE_SAVE_DELAY: Duration = Duration::from_millis(10);

/// Stream entries examined per hold of the lock while looking for messages
/// a filtered consumer takes.
const SCAN_BUDGET: usize = 4 * CHUNK;

fn storage_failure(e: StorageError) -> ConsumerError {
    Error::with_source(ConsumerErrorKind::StorageFailure, e)
}

fn invalid(detail: String) -> ConsumerError {
    Error::with_detail(ConsumerErrorKind::InvalidConfig, detail)
}

fn validate<S: Storage>(
    stream: &StreamRt<S>,
    config: &ConsumerConfig,
) -> Result<(), ConsumerError> {
    if !valid_name(&config.durable_name) {
        return Err(invalid(format!(
            "durable name {:?} must be letters, digits, - and _",
            config.durable_name
        )));
    }
    if config.max_ack_pending == 0 || config.ack_wait.is_zero() || config.max_deliver == Some(0) {
        return Err(invalid(
            "max_ack_pending, ack_wait and max_deliver must be positive".into(),
        ));
    }
    for filter in &config.filter_subjects {
        if !valid_pattern(filter) {
            return Err(invalid(format!("invalid filter subject {filter:?}")));
        }
        if !stream
            .config
            .subjects
            .iter()
            .any(|s| patterns_overlap(s, filter))
        {
            return Err(invalid(format!(
                "filter subject {filter:?} is outside stream {}'s subjects",
                stream.config.name
            )));
        }
    }
    Ok(())
}

/// What one attempt to fetch produced.
struct Attempt {
    deliveries: Vec<(crate::message::StoredMessage, u32, u64)>,
    next_due: Option<Instant>,
    /// The scan budget ran out before the end of the stream.
    more: bool,
}

impl<S: Storage> Core<S> {
    fn stream_mut<'a>(
        streams: &'a mut std::collections::BTreeMap<String, StreamRt<S>>,
        stream: &str,
    ) -> Result<&'a mut StreamRt<S>, ConsumerError> {
        streams.get_mut(stream).ok_or_else(|| {
            Error::with_detail(
                ConsumerErrorKind::StreamNotFound,
                format!("no stream {stream:?}"),
            )
        })
    }

    /// [`crate::Broker::consumer`]: creates or binds; returns the write epoch.
    pub(crate) fn bind_consumer(
        &self,
        stream: &str,
        config: ConsumerConfig,
    ) -> Result<u64, ConsumerError> {
        let mut streams = self.lock();
        let rt = Self::stream_mut(&mut streams, stream)?;
        validate(rt, &config)?;
        let name = config.durable_name.clone();
        let state = match rt.consumers.remove(&name) {
            Some(mut existing) => {
                if existing.rebind(config) {
                    existing.num_pending =
                        count_matching(rt, &existing.config.filter_subjects, existing.cursor)
                            .map_err(storage_failure)?;
                }
                existing
            }
            None => {
                let cursor = match config.deliver_policy {
                    DeliverPolicy::All => rt.first_seq.saturating_sub(1),
                    DeliverPolicy::New => rt.counters.last_seq,
                    DeliverPolicy::ByStartSequence(seq) => seq.saturating_sub(1),
                    DeliverPolicy::ByStartTime(time) => self
                        .seek_time(rt, time)
                        .map_err(storage_failure)?
                        .saturating_sub(1),
                };
                let pending =
                    count_matching(rt, &config.filter_subjects, cursor).map_err(storage_failure)?;
                ConsumerState::new(config, cursor, pending)
            }
        };
        rt.consumer_tree
            .insert(name.as_bytes(), &state.encode())
            .map_err(storage_failure)?;
        rt.consumers.insert(name, state);
        Ok(self.bump_epoch())
    }

    /// One pass of fetch under the lock: due redeliveries first, then new
    /// messages, within `max` and the consumer's `max_ack_pending`.
    fn attempt_fetch(
        &self,
        stream: &str,
        name: &str,
        max: usize,
    ) -> Result<Attempt, ConsumerError> {
        let mut streams = self.lock();
        let rt = Self::stream_mut(&mut streams, stream)?;
        let msgs = rt.msgs.clone();
        let state = rt.consumers.get_mut(name).ok_or_else(|| {
            Error::with_detail(
                ConsumerErrorKind::ConsumerNotFound,
                format!("no consumer {name:?} on {stream}"),
            )
        })?;
        let now = Instant::now();
        let (due, mut changed) = state.due(now);
        let mut deliveries = Vec::new();
        for seq in due {
            if deliveries.len() >= max {
                break;
            }
            changed = true;
            match msgs.get(seq).map_err(storage_failure)? {
                None => {
                    state.pending.remove(&seq);
                }
                Some(value) => match codec::decode_message(stream, seq, &value) {
                    Ok(message) => {
                        let count = state.record_redelivery(seq, now);
                        deliveries.push((message, count, state.num_pending));
                    }
                    Err(c) => give_up_corrupted(state, seq, c.0),
                },
            }
        }
        let mut budget = SCAN_BUDGET;
        'scan: while deliveries.len() < max
            && state.pending.len() < state.config.max_ack_pending
            && budget > 0
        {
            let chunk = msgs
                .scan(state.cursor + 1, CHUNK)
                .map_err(storage_failure)?;
            if chunk.is_empty() {
                break;
            }
            for (seq, value) in chunk {
                if deliveries.len() >= max || state.pending.len() >= state.config.max_ack_pending {
                    break 'scan;
                }
                budget = budget.saturating_sub(1);
                state.cursor = seq;
                changed = true;
                match codec::decode_message(stream, seq, &value) {
                    Ok(message) if state.matches(&message.subject) => {
                        state.record_delivery(seq, now);
                        deliveries.push((message, 1, state.num_pending));
                    }
                    Ok(_) => {}
                    Err(c) => {
                        state.num_pending = state.num_pending.saturating_sub(1);
                        give_up_corrupted(state, seq, c.0);
                    }
                }
            }
        }
        // Deliveries are saved but not flushed here: after a crash an
        // unsaved delivery is simply delivered again (at least once).
        if changed || state.unsaved {
            rt.consumer_tree
                .insert(name.as_bytes(), &state.encode())
                .map_err(storage_failure)?;
            state.unsaved = false;
            self.bump_epoch();
        }
        let next_due = state.next_due();
        Ok(Attempt {
            deliveries,
            next_due,
            more: budget == 0,
        })
    }

    /// Settles a delivery in memory; [`Self::save_settled`] persists it
    /// shortly after, or the consumer's next fetch does, whichever is first.
    fn settle_delivery(
        &self,
        stream: &str,
        name: &str,
        seq: u64,
        kind: &AckKind,
    ) -> Result<(), AckError> {
        let mut streams = self.lock();
        let Some(rt) = streams.get_mut(stream) else {
            return Err(Error::with_detail(
                AckErrorKind::NotPending,
                format!("no stream {stream:?}"),
            ));
        };
        let Some(state) = rt.consumers.get_mut(name) else {
            return Err(Error::with_detail(
                AckErrorKind::NotPending,
                format!("no consumer {name:?}"),
            ));
        };
        state.settle(seq, kind, Instant::now()).map_err(|kind| {
            Error::with_detail(kind, format!("message {seq} is not pending for {name}"))
        })?;
        if let AckKind::Term { reason } = kind {
            tracing::info!(stream, consumer = name, seq, reason = ?reason, "delivery terminated");
        }
        // Encoding the state costs O(pending); doing it per ack made acking
        // a fetched batch quadratic. Acks are batched into one write instead.
        state.unsaved = true;
        rt.notify.notify_waiters();
        Ok(())
    }

    /// Writes the state of every consumer with unsaved settlements.
    pub(crate) fn save_settled(&self) -> Result<bool, StorageError> {
        let mut streams = self.lock();
        let mut saved = false;
        for rt in streams.values_mut() {
            for (name, state) in rt.consumers.iter_mut().filter(|(_, c)| c.unsaved) {
                rt.consumer_tree.insert(name.as_bytes(), &state.encode())?;
                state.unsaved = false;
                saved = true;
            }
        }
        Ok(saved)
    }

    /// Makes sure settlements are saved within [`SETTLE_SAVE_DELAY`]: one
    /// task saves every settlement made meanwhile, for all consumers.
    fn schedule_settled_save(core: &Arc<Self>) {
        if core.settle_save_scheduled.swap(true, Ordering::SeqCst) {
            return;
        }
        let save = |core: &Self| {
            core.settle_save_scheduled.store(false, Ordering::SeqCst);
            if let Err(e) = core.save_settled() {
                tracing::error!(error = %e, "saving consumer progress failed");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                // Weak: a pending save must not keep the store (and its
                // file lock) open after the broker is dropped; dropping
                // consumers saves their own state.
                let weak = Arc::downgrade(core);
                runtime.spawn(async move {
                    tokio::time::sleep(SETTLE_SAVE_DELAY).await;
                    if let Some(core) = weak.upgrade() {
                        save(&core);
                    }
                });
            }
            Err(_) => save(core),
        }
    }

    /// [`crate::Broker::consumer_info`]; due exhaustions are applied first.
    pub(crate) fn consumer_progress(
        &self,
        stream: &str,
        name: &str,
    ) -> Result<ConsumerInfo, ConsumerError> {
        let mut streams = self.lock();
        let rt = Self::stream_mut(&mut streams, stream)?;
        let state = rt.consumers.get_mut(name).ok_or_else(|| {
            Error::with_detail(
                ConsumerErrorKind::ConsumerNotFound,
                format!("no consumer {name:?} on {stream}"),
            )
        })?;
        if state.due(Instant::now()).1 || state.unsaved {
            rt.consumer_tree
                .insert(name.as_bytes(), &state.encode())
                .map_err(storage_failure)?;
            state.unsaved = false;
        }
        Ok(state.info(stream, name))
    }

    /// [`crate::Broker::consumers`].
    pub(crate) fn all_consumers(&self, stream: &str) -> Result<Vec<ConsumerInfo>, ConsumerError> {
        let names: Vec<String> = {
            let mut streams = self.lock();
            Self::stream_mut(&mut streams, stream)?
                .consumers
                .keys()
                .cloned()
                .collect()
        };
        names
            .iter()
            .map(|n| self.consumer_progress(stream, n))
            .collect()
    }

    /// [`crate::Broker::delete_consumer`].
    pub(crate) fn remove_consumer(&self, stream: &str, name: &str) -> Result<u64, ConsumerError> {
        let mut streams = self.lock();
        let rt = Self::stream_mut(&mut streams, stream)?;
        if rt.consumers.remove(name).is_none() {
            return Err(Error::with_detail(
                ConsumerErrorKind::ConsumerNotFound,
                format!("no consumer {name:?} on {stream}"),
            ));
        }
        rt.consumer_tree
            .remove(name.as_bytes())
            .map_err(storage_failure)?;
        Ok(self.bump_epoch())
    }

    fn take_exhausted_of(&self, stream: &str, name: &str) -> Result<Vec<Exhausted>, ConsumerError> {
        let mut streams = self.lock();
        let rt = Self::stream_mut(&mut streams, stream)?;
        let state = rt.consumers.get_mut(name).ok_or_else(|| {
            Error::with_detail(
                ConsumerErrorKind::ConsumerNotFound,
                format!("no consumer {name:?} on {stream}"),
            )
        })?;
        state.due(Instant::now());
        let taken = std::mem::take(&mut state.exhausted);
        rt.consumer_tree
            .insert(name.as_bytes(), &state.encode())
            .map_err(storage_failure)?;
        state.unsaved = false;
        Ok(taken)
    }
}

/// A damaged entry can never be delivered: it is reported as exhausted with
/// the deliveries it had, so nothing disappears silently.
fn give_up_corrupted(state: &mut ConsumerState, seq: u64, why: &str) {
    tracing::error!(
        seq,
        why,
        "stored message is corrupted; reporting it as exhausted"
    );
    let deliveries = state.pending.remove(&seq).map_or(0, |p| p.count);
    state.exhausted.push(Exhausted {
        stream_seq: seq,
        deliveries,
    });
}

/// A bound durable consumer of the local engine.
pub(crate) struct LocalConsumer<S: Storage> {
    pub(crate) core: Arc<Core<S>>,
    pub(crate) stream: String,
    pub(crate) name: String,
    pub(crate) acker: Arc<LocalAcker<S>>,
}

/// Settles deliveries of one local consumer.
pub(crate) struct LocalAcker<S: Storage> {
    pub(crate) core: Arc<Core<S>>,
    pub(crate) stream: String,
    pub(crate) name: String,
}

impl<S: Storage> Drop for LocalConsumer<S> {
    fn drop(&mut self) {
        if let Err(e) = self.core.save_settled() {
            tracing::error!(error = %e, "saving consumer progress failed");
        }
    }
}

impl<S: Storage> std::fmt::Debug for LocalAcker<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalAcker({}/{})", self.stream, self.name)
    }
}

#[async_trait]
impl<S: Storage> Acker for LocalAcker<S> {
    async fn settle(&self, stream_seq: u64, kind: AckKind) -> Result<(), AckError> {
        self.core
            .settle_delivery(&self.stream, &self.name, stream_seq, &kind)?;
        Core::schedule_settled_save(&self.core);
        Ok(())
    }
}

#[async_trait]
impl<S: Storage> Consumer for LocalConsumer<S> {
    fn name(&self) -> &str {
        &self.name
    }

    fn stream(&self) -> &str {
        &self.stream
    }

    async fn fetch(&self, max: usize, expires: Duration) -> Result<Vec<Delivery>, ConsumerError> {
        let deadline = tokio::time::Instant::now() + expires;
        loop {
            let notify = {
                let streams = self.core.lock();
                let rt = streams.get(&self.stream).ok_or_else(|| {
                    Error::with_detail(
                        ConsumerErrorKind::StreamNotFound,
                        format!("no stream {:?}", self.stream),
                    )
                })?;
                rt.notify.clone()
            };
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let attempt = self
                .core
                .attempt_fetch(&self.stream, &self.name, max.max(1))?;
            if !attempt.deliveries.is_empty() || max == 0 {
                let acker: Arc<dyn Acker> = self.acker.clone();
                return Ok(attempt
                    .deliveries
                    .into_iter()
                    .map(|(message, count, pending)| {
                        Delivery::new(message, count, pending, acker.clone())
                    })
                    .collect());
            }
            let now = tokio::time::Instant::now();
            if attempt.more && now < deadline {
                tokio::task::yield_now().await;
                continue;
            }
            if now >= deadline {
                return Ok(Vec::new());
            }
            let wake = attempt
                .next_due
                .map(tokio::time::Instant::from_std)
                .map_or(deadline, |due| due.min(deadline));
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn info(&self) -> Result<ConsumerInfo, ConsumerError> {
        self.core.consumer_progress(&self.stream, &self.name)
    }

    async fn take_exhausted(&self) -> Result<Vec<Exhausted>, ConsumerError> {
        self.core.take_exhausted_of(&self.stream, &self.name)
    }
}

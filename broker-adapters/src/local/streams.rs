//! Stream management: create/update with validation, info, and purge.

use std::time::SystemTime;

use super::{
    codec,
    core::{CHUNK, Core, StreamRt, count_matching, purge_marker},
    storage::{Log, Storage, StorageError, Tree},
    subject::{patterns_overlap, valid_name, valid_pattern},
};
use crate::{
    error::{Error, StreamError, StreamErrorKind},
    stream::{ProvisionOutcome, StreamConfig, StreamInfo, subject_matches},
};

fn storage_failure(e: StorageError) -> StreamError {
    Error::with_source(StreamErrorKind::StorageFailure, e)
}

fn invalid(detail: String) -> StreamError {
    Error::with_detail(StreamErrorKind::InvalidConfig, detail)
}

/// Names of the settings that differ between `old` and `new`.
impl<S: Storage> Core<S> {
    /// [`crate::Broker::ensure_stream`].
    pub(crate) fn ensure_stream(
        &self,
        config: &StreamConfig,
    ) -> Result<ProvisionOutcome, StreamError> {
        if !valid_name(&config.name) {
            return Err(invalid(format!(
                "stream name {:?} must be letters, digits, - and _",
                config.name
            )));
        }
        if config.subjects.is_empty() {
            return Err(invalid(format!(
                "stream {} needs at least one subject",
                config.name
            )));
        }
        if let Some(bad) = config.subjects.iter().find(|s| !valid_pattern(s)) {
            return Err(invalid(format!("invalid subject pattern {bad:?}")));
        }
        if config.replicas > 1 {
            return Err(Error::with_detail(
                StreamErrorKind::Unsupported,
                format!(
                    "{} keeps one copy; replicas = {} needs JetStream",
                    self.label, config.replicas
                ),
            ));
        }
        let mut streams = self.lock();
        for other in streams.values().filter(|rt| rt.config.name != config.name) {
            for mine in &config.subjects {
                if let Some(theirs) = other
                    .config
                    .subjects
                    .iter()
                    .find(|t| patterns_overlap(mine, t))
                {
                    return Err(invalid(format!(
                        "subjects {mine:?} overlap {theirs:?} of stream {}",
                        other.config.name
                    )));
                }
            }
        }
        let outcome = match streams.get(&config.name) {
            None => ProvisionOutcome::Created,
            Some(rt) => match rt.config.changes_to(config)? {
                changed if changed.is_empty() => return Ok(ProvisionOutcome::Unchanged),
                changed => ProvisionOutcome::Updated(changed),
            },
        };
        let body = serde_json::to_vec(config)
            .map_err(|e| Error::with_source(StreamErrorKind::InvalidConfig, e))?;
        self.stream_tree
            .insert(config.name.as_bytes(), &codec::seal(&body))
            .map_err(storage_failure)?;
        match streams.get_mut(&config.name) {
            Some(rt) => rt.config = config.clone(),
            None => {
                let mut rt = self
                    .new_stream(config.clone(), 1)
                    .map_err(storage_failure)?;
                rt.indexes_loaded = true;
                streams.insert(config.name.clone(), rt);
            }
        }
        self.bump_epoch();
        Ok(outcome)
    }

    /// [`crate::Broker::stream_info`] of a locked stream.
    pub(crate) fn info_of(&self, rt: &StreamRt<S>) -> StreamInfo {
        let c = &rt.config;
        let empty = rt.counters.messages == 0;
        StreamInfo {
            config: c.clone(),
            messages: rt.counters.messages,
            bytes: rt.counters.bytes,
            first_seq: if empty && rt.counters.last_seq == 0 {
                0
            } else {
                rt.first_seq
            },
            last_seq: rt.counters.last_seq,
            first_time: if empty { None } else { self.first_time(rt) },
            last_time: (rt.counters.last_seq > 0).then(|| codec::nanos_time(rt.counters.last_time)),
            consumers: rt.consumers.len(),
        }
    }

    /// [`crate::Broker::stream_info`].
    pub(crate) fn stream_info(&self, stream: &str) -> Result<StreamInfo, StreamError> {
        let streams = self.lock();
        let rt = streams.get(stream).ok_or_else(|| {
            Error::with_detail(
                StreamErrorKind::StreamNotFound,
                format!("no stream {stream:?}"),
            )
        })?;
        Ok(self.info_of(rt))
    }

    /// [`crate::Broker::streams`].
    pub(crate) fn all_streams(&self) -> Vec<StreamInfo> {
        self.lock().values().map(|rt| self.info_of(rt)).collect()
    }

    /// Removes matching messages under the lock; returns how many and the
    /// write epoch to wait for.
    pub(crate) fn purge_locked(
        &self,
        stream: &str,
        filter: Option<&str>,
    ) -> Result<(u64, u64), StreamError> {
        if let Some(f) = filter.filter(|f| !valid_pattern(f)) {
            return Err(invalid(format!("invalid purge filter {f:?}")));
        }
        let mut streams = self.lock();
        let rt = streams.get_mut(stream).ok_or_else(|| {
            Error::with_detail(
                StreamErrorKind::StreamNotFound,
                format!("no stream {stream:?}"),
            )
        })?;
        if rt.config.deny_purge {
            return Err(Error::with_detail(
                StreamErrorKind::Denied,
                format!("stream {stream} denies purge"),
            ));
        }
        self.ensure_indexes(rt).map_err(storage_failure)?;
        // A crash before the counters below are saved must not leave them
        // counting purged messages: the mark makes the next open recount.
        self.counter_tree
            .insert(&purge_marker(stream), &[])
            .map_err(storage_failure)?;
        let mut purged = 0;
        let mut removed = Vec::new();
        let mut from = rt.first_seq;
        loop {
            let chunk = rt.msgs.scan(from, CHUNK).map_err(storage_failure)?;
            let Some((last, _)) = chunk.last() else {
                break;
            };
            from = last + 1;
            for (seq, value) in chunk {
                // A damaged entry cannot be matched against a filter; only a
                // full purge removes it.
                let (matches, size) = match codec::decode_message(stream, seq, &value) {
                    Ok(m) => (
                        filter.is_none_or(|f| subject_matches(f, &m.subject)),
                        codec::message_size(&m.subject, &m.headers, m.payload.len()),
                    ),
                    Err(_) => (filter.is_none(), 0),
                };
                if matches {
                    if filter.is_some() {
                        removed.push(seq);
                    }
                    purged += 1;
                    rt.counters.messages = rt.counters.messages.saturating_sub(1);
                    rt.counters.bytes = rt.counters.bytes.saturating_sub(size);
                }
            }
        }
        if filter.is_some() {
            rt.msgs.remove(&removed).map_err(storage_failure)?;
        } else {
            rt.msgs.clear().map_err(storage_failure)?;
        }
        for subject in rt.subject_index.subjects() {
            if filter.is_none_or(|f| subject_matches(f, &subject)) {
                rt.subject_index
                    .forget(&subject, &rt.subjects)
                    .map_err(storage_failure)?;
            }
        }
        rt.first_seq = self.first_seq(rt).map_err(storage_failure)?;
        let msgs = rt.msgs.clone();
        for consumer in rt.consumers.values_mut() {
            consumer
                .pending
                .retain(|seq, _| msgs.get(*seq).ok().flatten().is_some());
        }
        let counts: Vec<(String, u64)> = rt
            .consumers
            .iter()
            .map(|(name, c)| {
                Ok((
                    name.clone(),
                    count_matching(rt, &c.config.filter_subjects, c.cursor)?,
                ))
            })
            .collect::<Result<_, StorageError>>()
            .map_err(storage_failure)?;
        for (name, count) in counts {
            if let Some(c) = rt.consumers.get_mut(&name) {
                c.num_pending = count;
                rt.consumer_tree
                    .insert(name.as_bytes(), &c.encode())
                    .map_err(storage_failure)?;
            }
        }
        self.counter_tree
            .insert(stream.as_bytes(), &rt.counters.encode())
            .map_err(storage_failure)?;
        self.counter_tree
            .remove(&purge_marker(stream))
            .map_err(storage_failure)?;
        rt.notify.notify_waiters();
        Ok((purged, self.bump_epoch()))
    }

    /// The first sequence stored at or after `time` in `rt`
    /// (`last_seq + 1` when none); store times never decrease.
    pub(crate) fn seek_time(
        &self,
        rt: &StreamRt<S>,
        time: SystemTime,
    ) -> Result<u64, StorageError> {
        let target = codec::time_nanos(time);
        let (mut lo, mut hi) = (rt.first_seq, rt.counters.last_seq + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match rt.msgs.scan(mid, 1)?.into_iter().next() {
                None => hi = mid,
                Some((seq, value)) => {
                    let stored =
                        codec::MessageView::parse(&value)
                            .map(|m| m.nanos)
                            .map_err(|c| {
                                StorageError(format!("message {seq} is corrupted: {}", c.0))
                            })?;
                    if stored < target {
                        lo = seq + 1;
                    } else {
                        hi = mid;
                    }
                }
            }
        }
        Ok(lo)
    }
}

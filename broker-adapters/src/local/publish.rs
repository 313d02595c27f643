//! Publishing: validation, routing, deduplication, optimistic append and the
//! group commit that makes a receipt mean "durable".

use std::{collections::BTreeMap, sync::atomic::Ordering, time::SystemTime};

use super::{
    codec,
    core::{Core, StreamRt},
    storage::{Log, LogBatch, Storage, StorageError, Tree},
    subject::valid_publish_subject,
};
use crate::{
    error::{Error, PublishError, PublishErrorKind},
    message::{OutboundMessage, PublishReceipt},
    stream::subject_matches,
};

/// Messages stored per hold of the engine lock, so one huge batch does not
/// stall readers and other publishers.
const LOCK_BATCH: usize = 1024;

impl<S: Storage> Core<S> {
    /// Stores `messages` in order and waits until they are durable; one
    /// result per message, in order.
    pub(crate) async fn publish_all(
        &self,
        messages: Vec<OutboundMessage>,
    ) -> Vec<Result<PublishReceipt, PublishError>> {
        if self.closed.load(Ordering::SeqCst) {
            return messages
                .iter()
                .map(|_| {
                    Err(Error::with_detail(
                        PublishErrorKind::BrokerUnavailable,
                        "broker is closed",
                    ))
                })
                .collect();
        }
        let mut results = Vec::with_capacity(messages.len());
        let mut epoch = 0;
        for chunk in messages.chunks(LOCK_BATCH) {
            let (chunk_results, chunk_epoch) = self.store_chunk(chunk);
            results.extend(chunk_results);
            epoch = chunk_epoch;
        }
        if let Err(e) = self.wait_published(epoch).await {
            let detail = format!("flush failed: {e}");
            return results
                .into_iter()
                .map(|r| {
                    r.and_then(|_| {
                        Err(Error::with_detail(
                            PublishErrorKind::StorageFailure,
                            detail.clone(),
                        ))
                    })
                })
                .collect();
        }
        results
    }

    fn store_chunk(
        &self,
        chunk: &[OutboundMessage],
    ) -> (Vec<Result<PublishReceipt, PublishError>>, u64) {
        let mut streams = self.lock();
        let now = SystemTime::now();
        let mut batches: BTreeMap<String, LogBatch> = BTreeMap::new();
        let mut results: Vec<_> = chunk
            .iter()
            .map(|m| self.store_one(&mut streams, &mut batches, m, now))
            .collect();
        let now_nanos = codec::time_nanos(now);
        for (name, batch) in &batches {
            let Some(rt) = streams.get_mut(name) else {
                continue;
            };
            if let Err(e) = rt.msgs.append(batch) {
                tracing::error!(stream = %name, error = %e, "appending to the log failed");
                let detail = format!("appending to the log failed: {e}");
                for result in &mut results {
                    if result
                        .as_ref()
                        .is_ok_and(|r| &r.stream == name && !r.duplicate)
                    {
                        *result = Err(Error::with_detail(
                            PublishErrorKind::StorageFailure,
                            detail.clone(),
                        ));
                    }
                }
                continue;
            }
            if rt.subject_index.checkpoint_due(rt.counters.last_seq)
                && let Err(e) = self.checkpoint_subjects(rt)
            {
                tracing::error!(stream = %name, error = %e, "saving the subject index failed");
            }
            if let Err(e) = self
                .counter_tree
                .insert(name.as_bytes(), &rt.counters.encode())
            {
                tracing::error!(stream = %name, error = %e, "saving stream counters failed");
            }
            rt.dedup
                .expire(now_nanos, rt.config.duplicate_window.as_nanos());
            rt.notify.notify_waiters();
        }
        let epoch = self.bump_epoch();
        (results, epoch)
    }

    /// Checkpoints every stream's subject index, so the next open replays
    /// nothing; for `close`.
    pub(crate) fn checkpoint_all(&self) -> Result<(), StorageError> {
        let mut streams = self.lock();
        for (name, rt) in streams.iter_mut() {
            if rt.indexes_loaded {
                self.checkpoint_subjects(rt)?;
            }
            self.counter_tree
                .insert(name.as_bytes(), &rt.counters.encode())?;
        }
        Ok(())
    }

    /// Writes the subject index's unsaved changes; the caller saves the
    /// counters (which record the checkpoint) next.
    pub(crate) fn checkpoint_subjects(&self, rt: &mut StreamRt<S>) -> Result<(), StorageError> {
        rt.subject_index
            .checkpoint(&rt.subjects, rt.counters.last_seq)?;
        rt.counters.subjects_through = rt.subject_index.saved_through;
        Ok(())
    }

    fn store_one(
        &self,
        streams: &mut BTreeMap<String, StreamRt<S>>,
        batches: &mut BTreeMap<String, LogBatch>,
        message: &OutboundMessage,
        now: SystemTime,
    ) -> Result<PublishReceipt, PublishError> {
        let subject = message.subject.as_str();
        if !valid_publish_subject(subject) {
            return Err(Error::with_detail(
                PublishErrorKind::InvalidSubject,
                format!(
                    "{subject:?} is not a publish subject (empty token, wildcard or whitespace)"
                ),
            ));
        }
        let Some(rt) = streams.values_mut().find(|rt| {
            rt.config
                .subjects
                .iter()
                .any(|p| subject_matches(p, subject))
        }) else {
            return Err(Error::with_detail(
                PublishErrorKind::NoStream,
                format!("no stream captures {subject:?}"),
            ));
        };
        let max = rt
            .config
            .max_message_size
            .map_or(self.max_payload, |m| m.min(self.max_payload));
        let size = message.wire_size();
        if size > max {
            return Err(PublishErrorKind::PayloadTooLarge { size, max }.into());
        }
        self.ensure_indexes(rt).map_err(|e| {
            Error::with_source(PublishErrorKind::StorageFailure, e)
                .detail("loading the stream's dedup window and subject index")
        })?;
        let stream = rt.config.name.clone();
        let dedup_id = message.dedup_id();
        if let Some(id) = dedup_id {
            let window = rt.config.duplicate_window.as_nanos();
            if let Some(seq) = rt.dedup.lookup(id, codec::time_nanos(now), window) {
                return Ok(PublishReceipt {
                    stream,
                    seq,
                    duplicate: true,
                });
            }
        }
        if let Some(expected) = message.expected_last_subject_seq {
            let actual = rt.subject_index.last(subject);
            if actual != expected {
                return Err(Error::with_detail(
                    PublishErrorKind::WrongLastSequence { actual },
                    format!("expected last sequence {expected} on {subject:?}"),
                ));
            }
        }
        let seq = rt.counters.last_seq + 1;
        // Store times never go backwards within a stream, so reads by time
        // can binary-search sequences.
        let nanos = codec::time_nanos(now).max(rt.counters.last_time);
        let batch = match batches.get_mut(&stream) {
            Some(batch) => batch,
            None => batches.entry(stream.clone()).or_default(),
        };
        batch.push_message(
            seq,
            nanos,
            subject,
            message.stored_header_pairs(),
            &message.payload,
        );
        rt.subject_index.record(subject, seq);
        if let Some(id) = dedup_id {
            rt.dedup.insert(id, seq, nanos);
        }
        if rt.counters.messages == 0 {
            rt.first_seq = seq;
        }
        rt.counters.last_seq = seq;
        rt.counters.messages += 1;
        rt.counters.bytes += size as u64;
        rt.counters.last_time = nanos;
        for consumer in rt.consumers.values_mut() {
            if consumer.matches(subject) {
                consumer.num_pending += 1;
            }
        }
        Ok(PublishReceipt {
            stream,
            seq,
            duplicate: false,
        })
    }
}

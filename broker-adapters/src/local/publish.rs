//! Publishing: validation, routing, deduplication, optimistic append and the
//! group commit that makes a receipt mean "durable".

use std::{collections::BTreeMap, sync::atomic::Ordering, time::SystemTime};

use super::{
    codec,
    core::{CHUNK, Core, StreamRt},
    storage::{Storage, StorageError, Tree},
    subject::valid_publish_subject,
};
use crate::{
    error::{Error, PublishError, PublishErrorKind},
    message::{MSG_ID_HEADER, OutboundMessage, PublishReceipt},
    stream::subject_matches,
};

/// Messages stored per hold of the engine lock, so one huge batch does not
/// stall readers and other publishers.
const LOCK_BATCH: usize = 1024;

fn storage_failure(e: StorageError) -> PublishError {
    Error::with_source(PublishErrorKind::StorageFailure, e)
}

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
        if let Err(e) = self.wait_durable(epoch).await {
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
        let mut touched = BTreeMap::new();
        let results = chunk
            .iter()
            .map(|m| {
                let receipt = self.store_one(&mut streams, m, now)?;
                touched.insert(receipt.stream.clone(), ());
                Ok(receipt)
            })
            .collect();
        for name in touched.keys() {
            if let Some(rt) = streams.get_mut(name) {
                if let Err(e) = self
                    .counter_tree
                    .insert(name.as_bytes(), &rt.counters.encode())
                {
                    tracing::error!(stream = %name, error = %e, "saving stream counters failed");
                }
                prune_dedup(rt, now);
                rt.notify.notify_waiters();
            }
        }
        let epoch = self.bump_epoch();
        (results, epoch)
    }

    fn store_one(
        &self,
        streams: &mut BTreeMap<String, StreamRt<S::Tree>>,
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
        let stream = rt.config.name.clone();
        let dedup_id = message.dedup_id();
        if let Some(id) = dedup_id {
            if let Some(value) = rt.dedup.get(id.as_bytes()).map_err(storage_failure)? {
                let (seq, nanos) = codec::decode_pair(&value).map_err(|c| {
                    Error::with_detail(
                        PublishErrorKind::StorageFailure,
                        format!("dedup entry: {}", c.0),
                    )
                })?;
                let age = codec::time_nanos(now).saturating_sub(nanos);
                if u128::from(age) < rt.config.duplicate_window.as_nanos() {
                    return Ok(PublishReceipt {
                        stream,
                        seq,
                        duplicate: true,
                    });
                }
            }
        }
        if let Some(expected) = message.expected_last_subject_seq {
            let actual = match rt
                .subjects
                .get(subject.as_bytes())
                .map_err(storage_failure)?
            {
                Some(v) => codec::decode_u64(&v).map_err(|c| {
                    Error::with_detail(
                        PublishErrorKind::StorageFailure,
                        format!("subject index: {}", c.0),
                    )
                })?,
                None => 0,
            };
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
        let headers = message.stored_headers();
        let value = codec::encode_message(
            codec::nanos_time(nanos),
            subject,
            &headers,
            &message.payload,
        );
        rt.msgs
            .insert(&codec::seq_key(seq), &value)
            .map_err(storage_failure)?;
        rt.subjects
            .insert(subject.as_bytes(), &codec::encode_u64(seq))
            .map_err(storage_failure)?;
        if let Some(id) = dedup_id {
            rt.dedup
                .insert(id.as_bytes(), &codec::encode_pair(seq, nanos))
                .map_err(storage_failure)?;
        }
        if rt.counters.messages == 0 {
            rt.first_seq = seq;
        }
        rt.counters.last_seq = seq;
        rt.counters.messages += 1;
        rt.counters.bytes += codec::message_size(subject, &headers, message.payload.len());
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

/// Removes dedup entries whose window has passed, walking the log from where
/// the last pruning stopped; a bounded amount of work per call, and none
/// until the oldest unpruned message leaves the window.
fn prune_dedup<T: Tree>(rt: &mut StreamRt<T>, now: SystemTime) {
    let window = rt.config.duplicate_window.as_nanos();
    let now = u128::from(codec::time_nanos(now));
    if now < rt.dedup_next_expiry {
        return;
    }
    let from = rt.dedup_pruned.max(rt.first_seq.saturating_sub(1)) + 1;
    let Ok(chunk) = rt.msgs.scan(&codec::seq_key(from), CHUNK) else {
        return;
    };
    let full = chunk.len() == CHUNK;
    for (key, value) in chunk {
        let Ok(seq) = codec::key_seq(&key) else {
            return;
        };
        let Ok(message) = codec::decode_message("", seq, &value) else {
            rt.dedup_pruned = seq;
            continue;
        };
        let expiry = u128::from(codec::time_nanos(message.time)) + window;
        if now < expiry {
            rt.dedup_next_expiry = expiry;
            return;
        }
        if let Some(id) = message.headers.get(MSG_ID_HEADER) {
            let entry = rt.dedup.get(id.as_bytes()).ok().flatten();
            if entry
                .and_then(|v| codec::decode_pair(&v).ok())
                .is_some_and(|(s, _)| s == seq)
            {
                let _ = rt.dedup.remove(id.as_bytes());
            }
        }
        rt.dedup_pruned = seq;
    }
    if !full {
        // Everything stored is pruned: nothing expires before a new message does.
        rt.dedup_next_expiry = now + window;
    }
}

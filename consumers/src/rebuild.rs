//! Rebuilding a read model from the log, for the operator tool.
//!
//! [`rebuild`] applies the stream with ordered reads ([`Broker::read`]) into
//! a shadow store `<data_dir>/<model>.rebuild`, committing its checkpoint
//! every batch so an interrupted rebuild resumes where it stopped, then
//! swaps it into place with renames (`<model>` → `<model>.old`, shadow →
//! `<model>`, old removed) guarded by a journal, so a swap interrupted at
//! any point is completed by the next open of the store or the next rebuild
//! ([`crate::swap`]). Only projections are rebuilt: reactors are never
//! involved, so no side effect fires during a rebuild.
//!
//! Events the model rejects (invalid or undecodable) were dead-lettered by
//! the live consumer; a rebuild skips them the same way, counts them and
//! fences them (publishing nothing), so that the redrives of the consumer it
//! stands in for ([`RebuildOptions::consumer_name`]) apply exactly as they
//! did live, and redrives meant for other consumers are skipped.

use std::path::{Path, PathBuf};

use backbone_broker::{Broker, ConsumerErrorKind, MessageStream, ReadRequest, ReadStart};
use futures::StreamExt as _;

use crate::{
    error::{HandlerError, RebuildError, RebuildErrorKind, StoreError, StoreErrorKind},
    model::{Outcome, ReadModel, apply_entry, fence_rejected},
    store::ProjectionStore,
};

/// Settings of a rebuild. Build one with `..Default::default()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildOptions {
    /// The stream to read.
    pub stream: String,
    /// Last sequence to apply; the stream's last sequence when `None`.
    pub up_to: Option<u64>,
    /// Events applied per commit (and per progress report).
    pub batch_size: usize,
    /// Swap the rebuilt store into place; `false` leaves it as the shadow
    /// (to compare digests first).
    pub swap: bool,
    /// The live service's durable consumer, deleted after the swap so the
    /// service resumes right after the rebuilt checkpoint. Also the consumer
    /// whose redrives the rebuild applies ([`crate::redrive`]); the model's
    /// name when `None`, as for a service without a durable prefix.
    pub durable_name: Option<String>,
    /// The live consumer's [`RuntimeConfig::dedup_horizon`](crate::RuntimeConfig::dedup_horizon):
    /// copies of an applied event within it are skipped, as they were live.
    pub dedup_horizon: std::time::Duration,
}

impl RebuildOptions {
    /// The durable name the rebuild stands in for: redrives naming it
    /// apply, redrives naming any other consumer are skipped.
    pub fn consumer_name<'a>(&'a self, model: &'a dyn ReadModel) -> &'a str {
        self.durable_name.as_deref().unwrap_or(model.name())
    }
}

impl Default for RebuildOptions {
    fn default() -> Self {
        Self {
            stream: backbone_broker::stream::EVENT_STREAM.to_owned(),
            up_to: None,
            batch_size: 1000,
            swap: true,
            durable_name: None,
            dedup_horizon: crate::dedup::DEFAULT_HORIZON,
        }
    }
}

/// Progress of a rebuild, reported after every committed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildProgress {
    /// Events applied so far in this call.
    pub applied: u64,
    /// The sequence committed last.
    pub current_seq: u64,
    /// The sequence the rebuild ends at.
    pub target_seq: u64,
}

/// The result of applying the log to a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    /// Events applied in this call.
    pub applied: u64,
    /// Events the model rejected (they live in the dead-letter stream).
    pub rejected: u64,
    /// The store's checkpoint at the end.
    pub checkpoint: u64,
    /// The model's digest at the end.
    pub digest: u64,
    /// Where the rebuilt store is (live path after a swap).
    pub path: PathBuf,
}

/// The live store directory of `model` under `data_dir`.
pub fn live_path(data_dir: &Path, model: &str) -> PathBuf {
    data_dir.join(model)
}

/// The shadow store directory a rebuild writes.
pub fn shadow_path(data_dir: &Path, model: &str) -> PathBuf {
    data_dir.join(format!("{model}.rebuild"))
}

fn store_error(e: StoreError) -> RebuildError {
    RebuildError::with_source(RebuildErrorKind::Store, e)
}

/// Applies the log after `store`'s checkpoint up to `up_to` (the stream's
/// last sequence when `None`), committing every `batch_size` events.
pub async fn apply_log(
    broker: &dyn Broker,
    model: &dyn ReadModel,
    store: &ProjectionStore,
    options: &RebuildOptions,
    progress: &mut (dyn FnMut(RebuildProgress) + Send),
) -> Result<RebuildReport, RebuildError> {
    let target = match options.up_to {
        Some(seq) => seq,
        None => {
            broker
                .stream_info(&options.stream)
                .await
                .map_err(|e| RebuildError::with_source(RebuildErrorKind::Read, e))?
                .last_seq
        }
    };
    store.claim_layout(model.layout()).map_err(store_error)?;
    let consumer = options.consumer_name(model);
    let mut checkpoint = store.checkpoint().map_err(store_error)?;
    let mut report = RebuildReport {
        applied: 0,
        rejected: 0,
        checkpoint,
        digest: 0,
        path: store.path().to_path_buf(),
    };
    if checkpoint < target {
        let request = ReadRequest {
            start: ReadStart::Sequence(checkpoint + 1),
            end_seq: Some(target),
            ..Default::default()
        };
        let messages = broker
            .read(&options.stream, request)
            .await
            .map_err(|e| RebuildError::with_source(RebuildErrorKind::Read, e))?;
        let mut messages = read_ahead(messages, options.batch_size.max(1));
        let mut tx = store.transaction();
        let mut in_batch = 0usize;
        while let Some(message) = messages.next().await {
            let message =
                message.map_err(|e| RebuildError::with_source(RebuildErrorKind::Read, e))?;
            match apply_entry(model, consumer, &message, options.dedup_horizon, &mut tx) {
                Outcome::Applied => report.applied += 1,
                Outcome::NotForModel | Outcome::NotForConsumer | Outcome::Duplicate { .. } => {}
                Outcome::Failed(HandlerError::Permanent(_)) => {
                    // The live consumer dead-lettered it; fencing it the same
                    // way (without a new letter) lets its redrive apply here.
                    fence_rejected(&message, &mut tx);
                    report.rejected += 1;
                }
                Outcome::Failed(e @ HandlerError::Transient(_)) => {
                    return Err(RebuildError::with_source(
                        RebuildErrorKind::Apply { seq: message.seq },
                        e,
                    ));
                }
            }
            checkpoint = message.seq;
            in_batch += 1;
            if in_batch >= options.batch_size.max(1) {
                store.commit(tx, checkpoint).map_err(store_error)?;
                tx = store.transaction();
                in_batch = 0;
                progress(RebuildProgress {
                    applied: report.applied,
                    current_seq: checkpoint,
                    target_seq: target,
                });
            }
        }
        // The checkpoint is the last entry applied, never the target: a read
        // that ended early must leave the rest to be applied, not skipped.
        store.commit(tx, checkpoint).map_err(store_error)?;
    }
    progress(RebuildProgress {
        applied: report.applied,
        current_seq: checkpoint,
        target_seq: target,
    });
    report.checkpoint = checkpoint;
    report.digest = store.digest().map_err(store_error)?;
    Ok(report)
}

/// Reads `messages` in a task of its own, up to `depth` entries ahead of
/// the caller: the log's next batch is fetched (a pull round trip, segment
/// reads) while the caller applies and commits the current one, on another
/// core. The task stops at the end, after an error, or when the returned
/// stream is dropped.
fn read_ahead(mut messages: MessageStream, depth: usize) -> MessageStream {
    let (sender, mut receiver) = tokio::sync::mpsc::channel(depth);
    tokio::spawn(async move {
        while let Some(item) = messages.next().await {
            let failed = item.is_err();
            if sender.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    Box::pin(futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)))
}

/// Rebuilds `model` into a shadow store under `data_dir` and (with
/// `options.swap`) swaps it into place. Resumable: a shadow left by an
/// interrupted rebuild is continued from its checkpoint. Fails with `Locked`
/// while the live store is held by a running service.
pub async fn rebuild(
    broker: &dyn Broker,
    model: &dyn ReadModel,
    data_dir: &Path,
    options: &RebuildOptions,
    progress: &mut (dyn FnMut(RebuildProgress) + Send),
) -> Result<RebuildReport, RebuildError> {
    let live = live_path(data_dir, model.name());
    crate::swap::recover(&live).map_err(store_error)?;
    ensure_not_held(&live)?;
    let shadow_dir = shadow_path(data_dir, model.name());
    let mut report = {
        let shadow = ProjectionStore::open(&shadow_dir).map_err(|e| match e.kind() {
            StoreErrorKind::Locked => RebuildError::with_source(RebuildErrorKind::Locked, e),
            _ => store_error(e),
        })?;
        apply_log(broker, model, &shadow, options, progress).await?
    };
    if !options.swap {
        return Ok(report);
    }
    ensure_not_held(&live)?;
    // The durable goes first: once the journal exists the swap is rolled
    // forward by whoever opens the store next, and the service must then
    // find no durable positioned after the rebuilt checkpoint. Deleting it
    // while the old store stays live only makes the service recreate it at
    // that store's checkpoint + 1, which loses nothing.
    if let Some(durable) = &options.durable_name {
        match broker.delete_consumer(&options.stream, durable).await {
            Ok(()) => {}
            Err(e) if e.kind() == &ConsumerErrorKind::ConsumerNotFound => {}
            Err(e) => return Err(RebuildError::with_source(RebuildErrorKind::Swap, e)),
        }
    }
    crate::swap::swap_into_place(&shadow_dir, &live)
        .map_err(|e| RebuildError::with_source(RebuildErrorKind::Swap, e))?;
    report.path = live;
    Ok(report)
}

fn ensure_not_held(live: &Path) -> Result<(), RebuildError> {
    if !live.exists() {
        return Ok(());
    }
    match ProjectionStore::open(live) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == &StoreErrorKind::Locked => {
            Err(RebuildError::with_source(RebuildErrorKind::Locked, e))
        }
        Err(e) => Err(store_error(e)),
    }
}

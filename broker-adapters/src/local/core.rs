//! The engine's shared state: streams, their trees and counters, consumer
//! state, and the group-commit flusher.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Instant, SystemTime},
};

use tokio::sync::Notify;

use super::{
    codec::{self, Corrupt, MessageView, StreamCounters},
    consumer_state::{ConsumerState, filters_match},
    indexes::{DedupWindow, SubjectIndex},
    storage::{Log, Storage, StorageError, Tree},
};
use crate::{
    error::{ConnectError, ConnectErrorKind, Error},
    message::MSG_ID_HEADER,
    stream::StreamConfig,
};

/// The on-disk format this engine writes and reads.
pub(crate) const FORMAT_VERSION: u8 = 3;
/// Key of the format version byte in the `meta` tree.
pub(crate) const FORMAT_KEY: &[u8] = b"format_version";
/// Entries read from a tree per storage call; bounds memory per read step.
pub(crate) const CHUNK: usize = 256;

/// One stream's runtime state.
pub(crate) struct StreamRt<S: Storage> {
    pub(crate) config: StreamConfig,
    /// Sequence -> sealed message.
    pub(crate) msgs: S::Log,
    /// Subject -> last sequence on it, as of the last checkpoint.
    pub(crate) subjects: S::Tree,
    /// Subject -> last sequence on it, current.
    pub(crate) subject_index: SubjectIndex,
    /// Message ids stored within the duplicate window.
    pub(crate) dedup: DedupWindow,
    /// `subject_index` and `dedup` reflect the log (see
    /// [`Core::ensure_indexes`]); a new stream's empty ones do.
    pub(crate) indexes_loaded: bool,
    /// Durable name -> sealed consumer state.
    pub(crate) consumer_tree: S::Tree,
    pub(crate) counters: StreamCounters,
    /// First stored sequence; `last_seq + 1` when empty.
    pub(crate) first_seq: u64,
    pub(crate) consumers: BTreeMap<String, ConsumerState>,
    /// Woken on every publish, settlement and purge.
    pub(crate) notify: Arc<Notify>,
}

/// Shared engine state behind [`super::LocalBroker`].
pub(crate) struct Core<S: Storage> {
    pub(crate) storage: S,
    /// Stream name -> sealed JSON config.
    pub(crate) stream_tree: S::Tree,
    /// Stream name -> sealed counters.
    pub(crate) counter_tree: S::Tree,
    pub(crate) streams: Mutex<BTreeMap<String, StreamRt<S>>>,
    pub(crate) max_payload: usize,
    /// What the store is, for messages and `Debug`.
    pub(crate) label: String,
    pub(crate) closed: AtomicBool,
    /// Write epochs: bumped after each group of writes.
    pub(crate) written: AtomicU64,
    /// Highest write epoch known durable.
    pub(crate) flushed: AtomicU64,
    /// Highest write epoch whose log appends are known durable.
    pub(crate) flushed_logs: AtomicU64,
    pub(crate) flush_lock: tokio::sync::Mutex<()>,
    /// A task will save consumers' settlements shortly.
    pub(crate) settle_save_scheduled: AtomicBool,
}

fn tree_name(kind: &str, stream: &str) -> String {
    format!("{kind}/{stream}")
}

fn corrupt_store(what: &str, c: Corrupt) -> ConnectError {
    Error::with_detail(ConnectErrorKind::Corrupted, format!("{what}: {}", c.0))
}

fn io_error(e: StorageError) -> ConnectError {
    Error::with_source(ConnectErrorKind::Io, e)
}

impl<S: Storage> Core<S> {
    /// Opens the engine on `storage`, checking the format version and
    /// loading every stream and consumer.
    pub(crate) fn open(
        storage: S,
        max_payload: usize,
        label: String,
    ) -> Result<Self, ConnectError> {
        let meta = storage.open_tree("meta").map_err(io_error)?;
        match meta.get(FORMAT_KEY).map_err(io_error)? {
            None => meta
                .insert(FORMAT_KEY, &[FORMAT_VERSION])
                .map_err(io_error)?,
            Some(v) if *v == [FORMAT_VERSION] => {}
            Some(v) => {
                let found = v.first().copied().unwrap_or(0);
                return Err(Error::with_detail(
                    ConnectErrorKind::UnsupportedFormat { found },
                    format!(
                        "{label} has format version {found}; this build reads {FORMAT_VERSION}"
                    ),
                ));
            }
        }
        let stream_tree = storage.open_tree("streams").map_err(io_error)?;
        let counter_tree = storage.open_tree("counters").map_err(io_error)?;
        let core = Self {
            storage,
            stream_tree,
            counter_tree,
            streams: Mutex::new(BTreeMap::new()),
            max_payload,
            label,
            closed: AtomicBool::new(false),
            written: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            flushed_logs: AtomicU64::new(0),
            flush_lock: tokio::sync::Mutex::new(()),
            settle_save_scheduled: AtomicBool::new(false),
        };
        let mut loaded = BTreeMap::new();
        for (name, value) in core.stream_tree.scan(b"", usize::MAX).map_err(io_error)? {
            let body = codec::unseal(&value).map_err(|c| corrupt_store("stream config", c))?;
            let config: StreamConfig = serde_json::from_slice(body).map_err(|e| {
                Error::with_source(ConnectErrorKind::Corrupted, e).detail("stream config")
            })?;
            let name = String::from_utf8_lossy(&name).into_owned();
            loaded.insert(name, core.load_stream(config)?);
        }
        *core.lock() = loaded;
        Ok(core)
    }

    fn load_stream(&self, config: StreamConfig) -> Result<StreamRt<S>, ConnectError> {
        let name = config.name.clone();
        let mut counters = match self.counter_tree.get(name.as_bytes()).map_err(io_error)? {
            Some(v) => StreamCounters::decode(&v).map_err(|c| corrupt_store("counters", c))?,
            None => StreamCounters::default(),
        };
        let mut rt = self
            .new_stream(config, counters.last_seq + 1)
            .map_err(io_error)?;
        let tail = rt.msgs.next_seq() - 1;
        let purging = self
            .counter_tree
            .get(&purge_marker(&name))
            .map_err(io_error)?
            .is_some();
        if counters.last_seq > tail || purging {
            // The counters are a cache of the log: ahead of it (the log lost
            // an unsynced tail to a power cut) or mid-purge, they are
            // counted again from the whole log, and a subject checkpoint
            // beyond it is dropped.
            counters = StreamCounters {
                last_seq: tail,
                last_time: counters.last_time,
                subjects_through: if counters.subjects_through > tail {
                    0
                } else {
                    counters.subjects_through
                },
                ..StreamCounters::default()
            };
            if counters.subjects_through == 0 {
                for (key, _) in rt.subjects.scan(b"", usize::MAX).map_err(io_error)? {
                    rt.subjects.remove(&key).map_err(io_error)?;
                }
            }
            counters.last_seq = 0;
        }
        rt.counters = counters;
        // Messages written after the counters were last saved (a crash
        // between the two writes) are counted again from the log itself.
        let counted = rt.counters.last_seq;
        for_each_view(&rt.msgs, counted + 1, io_error, |seq, value| {
            let msg = codec::decode_message("", seq, value)
                .map_err(|c| corrupt_store(&format!("message {seq}"), c))?;
            rt.counters.last_seq = seq;
            rt.counters.messages += 1;
            rt.counters.bytes += codec::message_size(&msg.subject, &msg.headers, msg.payload.len());
            rt.counters.last_time = codec::time_nanos(msg.time);
            Ok(())
        })?;
        rt.counters.last_seq = rt.counters.last_seq.max(tail);
        if purging {
            self.counter_tree
                .insert(name.as_bytes(), &rt.counters.encode())
                .map_err(io_error)?;
            self.counter_tree
                .remove(&purge_marker(&name))
                .map_err(io_error)?;
        }
        rt.first_seq = self.first_seq(&rt).map_err(io_error)?;
        let now = Instant::now();
        let last_seq = rt.counters.last_seq;
        for (key, value) in rt.consumer_tree.scan(b"", usize::MAX).map_err(io_error)? {
            let durable = String::from_utf8_lossy(&key).into_owned();
            let mut state = ConsumerState::decode(&durable, &value, now)
                .map_err(|c| corrupt_store(&format!("consumer {durable}"), c))?;
            // Progress beyond a log that lost its tail would skip the
            // messages stored there next.
            state.clamp_to(last_seq);
            state.num_pending = count_matching(&rt, &state.config.filter_subjects, state.cursor)
                .map_err(io_error)?;
            rt.consumers.insert(durable, state);
        }
        Ok(rt)
    }

    /// Loads the indexes a write needs, on the first write after open:
    /// the subject index checkpoint with the log after it replayed, and
    /// the dedup window from the messages stored within it. A process that
    /// only reads (a rebuild, an audit) never holds them.
    pub(crate) fn ensure_indexes(&self, rt: &mut StreamRt<S>) -> Result<(), StorageError> {
        if rt.indexes_loaded {
            return Ok(());
        }
        rt.subject_index = SubjectIndex::load(&rt.subjects, rt.counters.subjects_through)?;
        let replay_from = rt
            .counters
            .subjects_through
            .max(rt.first_seq.saturating_sub(1))
            + 1;
        let index = &mut rt.subject_index;
        for_each_view(
            &rt.msgs,
            replay_from,
            |e| e,
            |seq, value| {
                if let Ok(view) = MessageView::parse(value) {
                    index.record(view.subject, seq);
                }
                Ok(())
            },
        )?;
        let window = rt.config.duplicate_window;
        let now = SystemTime::now();
        let window_start = now.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
        // A damaged entry in the way of the binary search costs a longer
        // scan, never a wrong answer.
        let from = self.seek_time(rt, window_start).unwrap_or(rt.first_seq);
        let mut dedup = DedupWindow::default();
        for_each_view(
            &rt.msgs,
            from,
            |e| e,
            |seq, value| {
                if let Ok(view) = MessageView::parse(value)
                    && let Some(id) = view.header(MSG_ID_HEADER)
                {
                    dedup.insert(id, seq, view.nanos);
                }
                Ok(())
            },
        )?;
        dedup.expire(codec::time_nanos(now), window.as_nanos());
        rt.dedup = dedup;
        rt.indexes_loaded = true;
        Ok(())
    }

    /// Runtime state for a stream with empty counters, its log and trees
    /// opened; a new log starts at `next_seq`.
    pub(crate) fn new_stream(
        &self,
        config: StreamConfig,
        next_seq: u64,
    ) -> Result<StreamRt<S>, StorageError> {
        let name = &config.name;
        Ok(StreamRt {
            msgs: self.storage.open_log(name, next_seq)?,
            subjects: self.storage.open_tree(&tree_name("subj", name))?,
            subject_index: SubjectIndex::default(),
            dedup: DedupWindow::default(),
            indexes_loaded: false,
            consumer_tree: self.storage.open_tree(&tree_name("cons", name))?,
            counters: StreamCounters::default(),
            first_seq: 1,
            consumers: BTreeMap::new(),
            notify: Arc::new(Notify::new()),
            config,
        })
    }

    /// The first stored sequence of `rt` (`last_seq + 1` when empty).
    pub(crate) fn first_seq(&self, rt: &StreamRt<S>) -> Result<u64, StorageError> {
        let first = rt.msgs.scan(0, 1)?;
        Ok(match first.first() {
            Some((seq, _)) => *seq,
            None => rt.counters.last_seq + 1,
        })
    }

    /// The stream map; a poisoned lock is taken over, since every writer
    /// leaves it consistent between storage calls.
    pub(crate) fn lock(&self) -> MutexGuard<'_, BTreeMap<String, StreamRt<S>>> {
        self.streams
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Marks a group of writes done; returns its epoch for [`Self::wait_durable`].
    pub(crate) fn bump_epoch(&self) -> u64 {
        self.written.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Waits until the writes of `epoch` are durable. Concurrent callers
    /// share flushes: whoever holds the flush lock flushes everything
    /// written so far, and the rest find their epoch already covered.
    pub(crate) async fn wait_durable(&self, epoch: u64) -> Result<(), StorageError> {
        self.wait_flushed(epoch, true).await
    }

    /// Waits until the log appends of `epoch` are durable, what a publish
    /// receipt promises; other writes ride along only when a flush of
    /// everything is due anyway (settlements waiting for their save).
    pub(crate) async fn wait_published(&self, epoch: u64) -> Result<(), StorageError> {
        self.wait_flushed(epoch, false).await
    }

    async fn wait_flushed(&self, epoch: u64, everything: bool) -> Result<(), StorageError> {
        let covered = |core: &Self| {
            let done = if everything {
                &core.flushed
            } else {
                &core.flushed_logs
            };
            done.load(Ordering::SeqCst) >= epoch
        };
        if !self.storage.persistent() || covered(self) {
            return Ok(());
        }
        let _flushing = self.flush_lock.lock().await;
        if covered(self) {
            return Ok(());
        }
        // Settlements waiting for their save ride along with this flush.
        let saved_settlements = self.save_settled()?;
        let target = self.written.load(Ordering::SeqCst);
        if everything || saved_settlements {
            self.storage.flush().await?;
            self.flushed.fetch_max(target, Ordering::SeqCst);
        } else {
            self.storage.flush_logs().await?;
        }
        self.flushed_logs.fetch_max(target, Ordering::SeqCst);
        Ok(())
    }

    /// The store time of the first message of `rt`.
    pub(crate) fn first_time(&self, rt: &StreamRt<S>) -> Option<SystemTime> {
        let first = rt.msgs.scan(rt.first_seq, 1).ok()?;
        let (seq, value) = first.first()?;
        codec::decode_message(&rt.config.name, *seq, value)
            .ok()
            .map(|m| m.time)
    }
}

/// Key, in the counters tree, of the mark a purge leaves while it runs
/// (stream names hold no `.`, so it cannot be a stream's).
pub(crate) fn purge_marker(stream: &str) -> Vec<u8> {
    format!("{stream}.purging").into_bytes()
}

/// Calls `f` with every stored value from sequence `from` on, in order,
/// reading the log in chunks; stops at the first error `f` returns.
fn for_each_view<L: Log, E>(
    msgs: &L,
    from: u64,
    storage_error: impl Fn(StorageError) -> E,
    mut f: impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut from = from;
    loop {
        let chunk = msgs.scan(from, CHUNK).map_err(&storage_error)?;
        let Some((last, _)) = chunk.last() else {
            return Ok(());
        };
        from = last + 1;
        for (seq, value) in &chunk {
            f(*seq, value)?;
        }
    }
}

/// Stored messages after `after` whose subject matches `filters`.
pub(crate) fn count_matching<S: Storage>(
    rt: &StreamRt<S>,
    filters: &[String],
    after: u64,
) -> Result<u64, StorageError> {
    if after < rt.first_seq && filters.is_empty() {
        return Ok(rt.counters.messages);
    }
    let mut count = 0;
    let mut from = after + 1;
    loop {
        let chunk = rt.msgs.scan(from, CHUNK)?;
        let Some((last, _)) = chunk.last() else {
            return Ok(count);
        };
        from = last + 1;
        for (_, value) in &chunk {
            // A damaged entry still occupies a sequence the consumer will
            // reach; it is counted and later reported as exhausted.
            let matches =
                MessageView::parse(value).map_or(true, |m| filters_match(filters, m.subject));
            count += u64::from(matches);
        }
    }
}

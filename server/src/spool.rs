//! The durable spool: events accepted while the broker is unreachable.
//!
//! With a JetStream backend, a publish the broker cannot take
//! (`BrokerUnavailable`, `TimedOut`) is written to a local log instead,
//! fsynced, and answered 202 `spooled`. A drainer publishes spooled events
//! in order, with their ids, as soon as the broker answers again; while
//! any wait, new events queue behind them, so arrival order is kept. The
//! broker's duplicate window drops an event it had stored before its
//! acknowledgement was lost, so nothing is stored twice.
//!
//! The spool is an embedded log (the same format as the default backend,
//! `docs/embedded-log-format.md`) in `<data_dir>/spool/log`, with the
//! sequence drained up to in `<data_dir>/spool/drained` (written and
//! fsynced after each published batch; a crash in between republishes a
//! batch the duplicate window absorbs). It is bounded by `max_bytes` of
//! waiting events: past that, publishes answer 503 `SpoolFull` with
//! `Retry-After`. An optimistic append (`expected_last_subject_seq`)
//! needs the broker's answer and is never spooled.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::http::StatusCode;
use backbone_broker::{
    Broker, OutboundMessage, PublishError, StreamConfig,
    embedded::{EmbeddedBroker, EmbeddedOptions},
    stream::{ReadRequest, ReadStart},
};
use backbone_consumers::Shutdown;
use backbone_core::backoff;
use backbone_schemas::wire;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::{
    api_error::{ApiError, RETRY_AFTER},
    config::{ServerError, ServerErrorKind},
};

/// The spool's stream in its own log.
const SPOOL_STREAM: &str = "SPOOL";
/// Events published per drained batch (and per cursor write).
const DRAIN_BATCH: usize = 256;
/// The longest wait between attempts while the broker stays unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The wait after the first failed drain; doubles per failure
/// ([`backoff::exponential`], the rule every retry follows).
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The `[spool]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Spool events while a JetStream broker is unreachable.
    pub enabled: bool,
    /// The most bytes of events waiting; past it, 503 `SpoolFull`.
    pub max_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Whether a publish failure means the broker may take the event later.
pub(crate) fn is_transient(e: &PublishError) -> bool {
    e.kind().is_transient()
}

#[derive(Debug, Default)]
struct State {
    /// The last spool sequence published to the broker.
    drained: u64,
    /// The last spool sequence written.
    last: u64,
    /// Bytes of the events waiting.
    bytes: u64,
}

/// How much is waiting, for `/readyz`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SpoolDepth {
    /// Events waiting.
    pub events: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The spool of one server.
pub struct Spool {
    log: Arc<dyn Broker>,
    drained_path: PathBuf,
    max_bytes: u64,
    state: Mutex<State>,
    wake: Notify,
    /// Held by writes and by the purge of a drained spool, so a purge never
    /// removes an event written after the check that all were drained.
    writes: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("drained_path", &self.drained_path)
            .field("depth", &self.depth())
            .finish_non_exhaustive()
    }
}

fn store_error(e: impl std::fmt::Display) -> ServerError {
    ServerError::with_detail(ServerErrorKind::Store, format!("spool: {e}"))
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, finding what still waits.
    pub async fn open(dir: &Path, max_bytes: u64) -> Result<Self, ServerError> {
        std::fs::create_dir_all(dir).map_err(store_error)?;
        let log: Arc<dyn Broker> = Arc::new(
            EmbeddedBroker::open(EmbeddedOptions {
                path: dir.join("log"),
                ..Default::default()
            })
            .map_err(store_error)?,
        );
        log.ensure_stream(&StreamConfig {
            name: SPOOL_STREAM.into(),
            subjects: vec![wire::STREAM_SUBJECTS.into()],
            description: Some("events accepted while the broker was unreachable".into()),
            ..Default::default()
        })
        .await
        .map_err(store_error)?;
        let drained_path = dir.join("drained");
        let recorded: u64 = match std::fs::read_to_string(&drained_path) {
            Ok(text) => text.trim().parse().map_err(store_error)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(store_error(e)),
        };
        let info = log.stream_info(SPOOL_STREAM).await.map_err(store_error)?;
        let last = info.last_seq;
        // What waits is what the log holds above the recorded sequence: an
        // empty log (purged once drained) holds nothing, and a log whose
        // sequence is below the record started over, so all of it waits.
        let drained = if info.messages == 0 {
            last
        } else if recorded > last {
            info.first_seq.saturating_sub(1)
        } else {
            recorded.max(info.first_seq.saturating_sub(1))
        };
        let mut bytes = 0;
        if last > drained {
            let mut waiting = log
                .read(
                    SPOOL_STREAM,
                    ReadRequest {
                        start: ReadStart::Sequence(drained + 1),
                        ..Default::default()
                    },
                )
                .await
                .map_err(store_error)?;
            while let Some(message) = waiting.next().await {
                bytes += republished(message.map_err(store_error)?).wire_size() as u64;
            }
            tracing::warn!(
                events = last - drained,
                bytes,
                "spooled events wait for the broker"
            );
        }
        Ok(Self {
            log,
            drained_path,
            max_bytes,
            state: Mutex::new(State {
                drained,
                last,
                bytes,
            }),
            wake: Notify::new(),
            writes: tokio::sync::Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether events wait; while they do, new ones queue behind them.
    pub fn pending(&self) -> bool {
        let state = self.lock();
        state.last > state.drained
    }

    /// What waits.
    pub fn depth(&self) -> SpoolDepth {
        let state = self.lock();
        SpoolDepth {
            events: state.last.saturating_sub(state.drained),
            bytes: state.bytes,
        }
    }

    /// Writes `messages` to the spool, in order, durably; 503 `SpoolFull`
    /// (nothing written) when they do not fit.
    pub async fn push(&self, messages: Vec<OutboundMessage>) -> Result<(), ApiError> {
        let _writing = self.writes.lock().await;
        let sizes: Vec<u64> = messages.iter().map(|m| m.wire_size() as u64).collect();
        let size: u64 = sizes.iter().sum();
        {
            let mut state = self.lock();
            if state.bytes + size > self.max_bytes {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "SpoolFull",
                    "the broker is unreachable and the spool is full; retry later",
                )
                .with("max_bytes", self.max_bytes)
                .retry_after(RETRY_AFTER));
            }
            state.bytes += size;
        }
        let (mut last, mut not_waiting) = (0, 0);
        let mut failure = None;
        for (result, size) in self
            .log
            .publish_batch(messages)
            .await
            .into_iter()
            .zip(sizes)
        {
            match result {
                // A retried request's copy: the spool already holds it.
                Ok(receipt) if receipt.duplicate => not_waiting += size,
                Ok(receipt) => last = last.max(receipt.seq),
                Err(e) => {
                    not_waiting += size;
                    failure.get_or_insert(e);
                }
            }
        }
        let mut state = self.lock();
        state.last = state.last.max(last);
        state.bytes = state.bytes.saturating_sub(not_waiting);
        drop(state);
        self.wake.notify_one();
        match failure {
            None => Ok(()),
            Some(e) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "StorageFailure",
                format!("spool: {e}"),
            )),
        }
    }

    /// Publishes what waits to `broker`, in order, until `shutdown`.
    pub async fn drain(self: Arc<Self>, broker: Arc<dyn Broker>, mut shutdown: Shutdown) {
        let mut failures = 0;
        loop {
            let (drained, last) = {
                let state = self.lock();
                (state.drained, state.last)
            };
            if drained >= last {
                tokio::select! {
                    () = self.wake.notified() => continue,
                    () = shutdown.wait() => return,
                }
            }
            match self.drain_batch(broker.as_ref(), drained, last).await {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    let backoff = backoff::exponential(FIRST_BACKOFF, MAX_BACKOFF, failures);
                    tracing::warn!(error = %e, retry_in = ?backoff, "spooled events wait for the broker");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.wait() => return,
                    }
                }
            }
        }
    }

    /// Publishes up to [`DRAIN_BATCH`] events after `drained` (`last` is the
    /// last written as of the call), then records how far it got; the error
    /// of the first event the broker refused.
    async fn drain_batch(
        &self,
        broker: &dyn Broker,
        drained: u64,
        last: u64,
    ) -> Result<(), String> {
        let request = ReadRequest {
            start: ReadStart::Sequence(drained + 1),
            ..Default::default()
        };
        let mut waiting = self
            .log
            .read(SPOOL_STREAM, request)
            .await
            .map_err(|e| e.to_string())?
            .take(DRAIN_BATCH);
        let mut outcome = Ok(());
        let mut seen = false;
        let (mut reached, mut published_bytes) = (drained, 0);
        while let Some(message) = waiting.next().await {
            seen = true;
            let message = message.map_err(|e| e.to_string())?;
            let seq = message.seq;
            let outbound = republished(message);
            let size = outbound.wire_size() as u64;
            if let Err(e) = broker.publish(outbound).await {
                outcome = Err(e.to_string());
                break;
            }
            reached = seq;
            published_bytes += size;
        }
        if !seen {
            // Nothing up to `last` is stored above `drained`: none of it waits.
            let mut state = self.lock();
            state.drained = state.drained.max(last);
            return Ok(());
        }
        if reached > drained {
            write_drained(&self.drained_path, reached).map_err(|e| e.to_string())?;
            let caught_up = {
                let mut state = self.lock();
                state.drained = reached;
                state.bytes = state.bytes.saturating_sub(published_bytes);
                state.drained >= state.last
            };
            if caught_up {
                self.purge_if_drained().await;
            }
        }
        outcome
    }

    /// Empties the spool's log once everything in it is published, so its
    /// files do not grow without bound.
    async fn purge_if_drained(&self) {
        let _writing = self.writes.lock().await;
        if self.pending() {
            return;
        }
        match self.log.purge(SPOOL_STREAM, None).await {
            Ok(purged) => tracing::info!(purged, "the spool is drained"),
            Err(e) => tracing::warn!(error = %e, "purging the drained spool failed"),
        }
    }

    /// Closes the spool's log.
    pub async fn close(&self) {
        if let Err(e) = self.log.close().await {
            tracing::warn!(error = %e, "closing the spool failed");
        }
    }
}

/// A spooled message as it is published to the broker: its id as the
/// deduplication id.
fn republished(message: backbone_broker::StoredMessage) -> OutboundMessage {
    let mut headers = message.headers;
    let msg_id = headers.remove(wire::NATS_MSG_ID);
    OutboundMessage {
        subject: message.subject,
        headers,
        payload: message.payload,
        msg_id,
        expected_last_subject_seq: None,
    }
}

/// Records `seq` as drained: written to a temporary file, fsynced, renamed.
fn write_drained(path: &Path, seq: u64) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(seq.to_string().as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use backbone_broker::memory::MemoryBroker;
    use backbone_schemas::{Envelope, EventContext, user::v1::UserFollowed};

    use super::*;

    fn follow(n: usize) -> OutboundMessage {
        let event = UserFollowed {
            follower_id: format!("u-{n}"),
            followee_id: "u-0".into(),
            ..Default::default()
        };
        OutboundMessage::from(&Envelope::from_event(&event, EventContext::new("test")).unwrap())
    }

    async fn target() -> Arc<dyn Broker> {
        let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
        broker
            .ensure_stream(&StreamConfig::event_log())
            .await
            .unwrap();
        broker
    }

    #[tokio::test]
    async fn spooled_events_drain_in_order_once_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let messages: Vec<OutboundMessage> = (0..5).map(follow).collect();
        {
            let spool = Spool::open(dir.path(), 1 << 20).await.unwrap();
            spool.push(messages[..3].to_vec()).await.unwrap();
            // A retried request: the spool keeps one copy.
            spool.push(messages[..1].to_vec()).await.unwrap();
            assert_eq!(spool.depth().events, 3);
            spool.close().await;
        }
        let spool = Arc::new(Spool::open(dir.path(), 1 << 20).await.unwrap());
        assert_eq!(spool.depth().events, 3, "a reopened spool finds what waits");
        spool.push(messages[3..].to_vec()).await.unwrap();
        let broker = target().await;
        let (trigger, shutdown) = backbone_consumers::shutdown_channel();
        let drainer = tokio::spawn(spool.clone().drain(broker.clone(), shutdown));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while spool.pending() {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        trigger.trigger();
        drainer.await.unwrap();
        let mut log = broker
            .read(
                backbone_broker::stream::EVENT_STREAM,
                ReadRequest::default(),
            )
            .await
            .unwrap();
        let mut subjects = Vec::new();
        while let Some(m) = log.next().await {
            subjects.push(m.unwrap().subject);
        }
        let expected: Vec<String> = messages.iter().map(|m| m.subject.clone()).collect();
        assert_eq!(subjects, expected);
        assert_eq!(spool.depth().bytes, 0);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("drained")).unwrap(),
            "5"
        );
    }

    #[tokio::test]
    async fn a_full_spool_refuses_with_spool_full() {
        let dir = tempfile::tempdir().unwrap();
        // Sized from the very messages: their times (and so sizes) vary.
        let two = vec![follow(1), follow(2)];
        let capacity = two.iter().map(|m| m.wire_size() as u64).sum();
        let spool = Spool::open(dir.path(), capacity).await.unwrap();
        spool.push(two).await.unwrap();
        let refused = spool.push(vec![follow(3)]).await.unwrap_err();
        assert_eq!(
            (refused.status, refused.kind),
            (StatusCode::SERVICE_UNAVAILABLE, "SpoolFull")
        );
        assert_eq!(spool.depth().events, 2);
    }
}

//! The Backbone side of every scenario, over any adapter: typed publish,
//! consume into the read model, rebuild, ordered replay, end-to-end latency.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use backbone_broker::{Broker, ReadRequest, stream::EVENT_STREAM};
use backbone_consumers::{
    Metrics, ProjectionRunner, ProjectionStore, RuntimeConfig,
    rebuild::{RebuildOptions, apply_log},
    shutdown::shutdown_channel,
};
use futures::StreamExt as _;

use super::{
    error::{BenchError, BenchErrorKind},
    latency::{Recorder, Schedule},
    model::{Applied, ConversationCounts},
    raw::finish,
    report::Throughput,
    workload::Workload,
};

/// Messages handed to `publish_batch` per call; the adapter's own in-flight
/// window applies within a call.
pub(crate) const PUBLISH_CHUNK: u64 = 4_096;

/// Publishes `events` typed events: each is enveloped (CloudEvents headers,
/// UUIDv7 id as dedup id) and published with `Broker::publish_batch`.
pub(crate) async fn publish_typed(
    broker: &dyn Broker,
    workload: &Workload,
    first: u64,
    events: u64,
) -> Result<Throughput, BenchError> {
    let started = Instant::now();
    let mut n = first;
    while n < first + events {
        let end = (n + PUBLISH_CHUNK).min(first + events);
        let batch = (n..end).map(|i| workload.typed_message(i)).collect();
        for result in broker.publish_batch(batch).await {
            result.map_err(backbone_error)?;
        }
        n = end;
    }
    Ok(Throughput::new(events, started.elapsed()))
}

/// Runs the consumer runtime with [`ConversationCounts`] from the start of
/// the event stream until it has committed `events` events.
pub(crate) async fn consume_into_model(
    broker: Arc<dyn Broker>,
    store_dir: &Path,
    durable: &str,
    events: u64,
    deadline: Duration,
) -> Result<Throughput, BenchError> {
    let target = last_seq(broker.as_ref()).await?;
    let store = open_store(store_dir)?;
    let metrics = Metrics::new();
    let watched = metrics.consumer(durable);
    let runner = ProjectionRunner::new(
        broker,
        Arc::new(ConversationCounts::default()),
        store,
        RuntimeConfig::durable(durable),
        &metrics,
    );
    let (trigger, shutdown) = shutdown_channel();
    let started = Instant::now();
    let task = tokio::spawn(runner.run(shutdown));
    let committed = || watched.checkpoint.load(Ordering::Acquire);
    let reached = tokio::time::timeout(deadline, async {
        while committed() < target {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    let elapsed = started.elapsed();
    trigger.trigger();
    let run = task
        .await
        .map_err(|e| BenchError::with_source(BenchErrorKind::Backbone, e))?;
    run.map_err(backbone_error)?;
    if reached.is_err() {
        return Err(BenchError::new(BenchErrorKind::Incomplete {
            expected: target,
            seen: committed(),
        }));
    }
    Ok(Throughput::new(events, elapsed))
}

/// Rebuilds [`ConversationCounts`] from the whole event stream into a new
/// store (the rebuild API's `apply_log`) with the default options.
pub(crate) async fn rebuild_model(
    broker: &dyn Broker,
    store_dir: &Path,
    events: u64,
) -> Result<Throughput, BenchError> {
    rebuild_model_with(broker, store_dir, events, &RebuildOptions::default()).await
}

/// [`rebuild_model`] with `options`.
pub(crate) async fn rebuild_model_with(
    broker: &dyn Broker,
    store_dir: &Path,
    events: u64,
    options: &RebuildOptions,
) -> Result<Throughput, BenchError> {
    let store = open_store(store_dir)?;
    let started = Instant::now();
    let report = apply_log(
        broker,
        &ConversationCounts::default(),
        &store,
        options,
        &mut |_| {},
    )
    .await
    .map_err(backbone_error)?;
    let elapsed = started.elapsed();
    if report.applied < events {
        return Err(BenchError::new(BenchErrorKind::Incomplete {
            expected: events,
            seen: report.applied,
        }));
    }
    Ok(Throughput::new(report.applied, elapsed))
}

/// Reads the whole event stream in order (`Broker::read`), decoding nothing.
pub(crate) async fn replay(broker: &dyn Broker, events: u64) -> Result<Throughput, BenchError> {
    let started = Instant::now();
    let mut messages = broker
        .read(EVENT_STREAM, ReadRequest::default())
        .await
        .map_err(backbone_error)?;
    let mut seen = 0;
    while let Some(message) = messages.next().await {
        std::hint::black_box(message.map_err(backbone_error)?);
        seen += 1;
    }
    finish(Ok(Ok(())), events, seen)?;
    Ok(Throughput::new(seen, started.elapsed()))
}

/// Open loop at `rate`: each event is published when due (not waiting for
/// earlier acks) and timed until the runtime has committed it to the read
/// model, measured from its scheduled send time.
pub(crate) async fn end_to_end_latency(
    broker: Arc<dyn Broker>,
    store_dir: &Path,
    durable: &str,
    rate: u64,
    events: u64,
) -> Result<Recorder, BenchError> {
    let store = open_store(store_dir)?;
    // Start at the log's end: the events of earlier scenarios are not ours.
    let tail = last_seq(broker.as_ref()).await?;
    store
        .commit(store.transaction(), tail)
        .map_err(backbone_error)?;
    let metrics = Metrics::new();
    let watched = metrics.consumer(durable);
    let applied = Arc::new(Applied::default());
    let runner = ProjectionRunner::new(
        broker.clone(),
        Arc::new(ConversationCounts::reporting(applied.clone())),
        store,
        RuntimeConfig {
            fetch_wait: Duration::from_millis(100),
            ..RuntimeConfig::durable(durable)
        },
        &metrics,
    );
    let (trigger, shutdown) = shutdown_channel();
    let task = tokio::spawn(runner.run(shutdown));
    // The runner binds its consumer asynchronously; give it a moment so the
    // first events do not carry the bind time.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let schedule = Schedule::new(rate);
    let recorder = Recorder::new(schedule)?;
    // A thread, not a task: tokio timers tick in milliseconds, too coarse to
    // stamp sub-millisecond commits.
    let stop = Arc::new(AtomicBool::new(false));
    let stamper = {
        let (stop, recorder) = (stop.clone(), recorder.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let checkpoint = watched.checkpoint.load(Ordering::Acquire);
                for index in applied.committed_up_to(checkpoint) {
                    recorder.observed(index);
                }
                std::thread::sleep(Duration::from_micros(50));
            }
        })
    };
    let workload = Workload::new(128);
    let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
    schedule
        .drive(events, |n| {
            let (broker, failures) = (broker.clone(), failures.clone());
            let message = workload.typed_message(n);
            tokio::spawn(async move {
                if broker.publish(message).await.is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            });
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while recorder.count() < events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Release);
    let _ = stamper.join();
    trigger.trigger();
    let run = task
        .await
        .map_err(|e| BenchError::with_source(BenchErrorKind::Backbone, e))?;
    run.map_err(backbone_error)?;
    let failed = failures.load(Ordering::Relaxed);
    if recorder.count() < events || failed > 0 {
        return Err(BenchError::new(BenchErrorKind::Incomplete {
            expected: events,
            seen: recorder.count(),
        })
        .detail(format!("{failed} publishes failed")));
    }
    Ok(recorder)
}

async fn last_seq(broker: &dyn Broker) -> Result<u64, BenchError> {
    Ok(broker
        .stream_info(EVENT_STREAM)
        .await
        .map_err(backbone_error)?
        .last_seq)
}

fn open_store(dir: &Path) -> Result<ProjectionStore, BenchError> {
    ProjectionStore::open(dir).map_err(backbone_error)
}

/// Wraps any Backbone failure.
pub(crate) fn backbone_error(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> BenchError {
    BenchError::with_source(BenchErrorKind::Backbone, e.into())
}

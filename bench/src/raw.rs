//! The yardstick: the same work done with the raw async-nats client.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use async_nats::{
    HeaderMap,
    jetstream::{
        self,
        consumer::{AckPolicy, DeliverPolicy, pull},
        context::PublishAckFuture,
        stream::{Config as StreamConfig, StorageType},
    },
};
use backbone_schemas::messaging::v1::MessageReceived;
use bytes::Bytes;
use futures::StreamExt as _;
use prost::Message as _;

use super::{
    error::{BenchError, BenchErrorKind},
    latency::{Recorder, Schedule},
    report::Throughput,
    workload::{Workload, index_of},
};

/// The stream the raw baseline publishes to, beside Backbone's `EVENTS`.
pub(crate) const RAW_STREAM: &str = "RAW";
/// Subject prefix of [`RAW_STREAM`].
pub(crate) const RAW_PREFIX: &str = "raw";
/// Deliveries outstanding per consumer, the same as Backbone's default.
pub(crate) const MAX_ACK_PENDING: i64 = 1_000;
/// Messages asked for per pull request.
const PULL_BATCH: usize = 500;

/// A raw async-nats connection with JetStream.
#[derive(Debug, Clone)]
pub(crate) struct RawClient {
    client: async_nats::Client,
    js: jetstream::Context,
}

impl RawClient {
    /// Connects to `url` and creates [`RAW_STREAM`] with the settings of
    /// Backbone's event log (file storage, two-minute duplicate window).
    pub(crate) async fn connect(url: &str) -> Result<Self, BenchError> {
        let client = async_nats::connect(url).await.map_err(raw_error)?;
        let js = jetstream::new(client.clone());
        js.get_or_create_stream(StreamConfig {
            name: RAW_STREAM.into(),
            subjects: vec![format!("{RAW_PREFIX}.>")],
            storage: StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(raw_error)?;
        Ok(Self { client, js })
    }

    /// Publishes `events` messages of `workload` with at most `window` acks
    /// outstanding, waiting for every ack: subject and payload only.
    pub(crate) async fn publish(
        &self,
        workload: &Workload,
        events: u64,
        window: usize,
    ) -> Result<Throughput, BenchError> {
        self.publish_each(events, window, |n| {
            let (subject, payload) = workload.raw_message(n, RAW_PREFIX);
            (subject, HeaderMap::new(), payload)
        })
        .await
    }

    /// [`RawClient::publish`] of the bytes Backbone sends: each event is
    /// enveloped as Backbone's publish does it (the same work per event) and
    /// sent with the same headers, `Nats-Msg-Id` included, and payload, on
    /// the same subject under [`RAW_PREFIX`]. What remains between the two
    /// is the adapter itself.
    pub(crate) async fn publish_like_for_like(
        &self,
        workload: &Workload,
        events: u64,
        window: usize,
    ) -> Result<Throughput, BenchError> {
        self.publish_each(events, window, |n| {
            let message = workload.typed_message(n);
            let mut headers = HeaderMap::new();
            for (name, value) in message.stored_headers().iter() {
                headers.append(name, value);
            }
            let subject = message
                .subject
                .strip_prefix("events.")
                .map_or(message.subject.clone(), |rest| {
                    format!("{RAW_PREFIX}.{rest}")
                });
            (subject, headers, message.payload)
        })
        .await
    }

    async fn publish_each(
        &self,
        events: u64,
        window: usize,
        message: impl Fn(u64) -> (String, HeaderMap, Bytes),
    ) -> Result<Throughput, BenchError> {
        let started = Instant::now();
        let mut in_flight: VecDeque<PublishAckFuture> = VecDeque::with_capacity(window);
        for n in 0..events {
            let (subject, headers, payload) = message(n);
            if in_flight.len() >= window
                && let Some(ack) = in_flight.pop_front()
            {
                ack.await.map_err(raw_error)?;
            }
            let ack = if headers.is_empty() {
                self.js.publish(subject, payload).await
            } else {
                self.js
                    .publish_with_headers(subject, headers, payload)
                    .await
            };
            in_flight.push_back(ack.map_err(raw_error)?);
        }
        for ack in in_flight {
            ack.await.map_err(raw_error)?;
        }
        Ok(Throughput::new(events, started.elapsed()))
    }

    /// Pulls `events` messages of `stream` through a new durable consumer,
    /// acking each (the ack is a fire-and-forget publish, as in async-nats).
    pub(crate) async fn consume_and_ack(
        &self,
        stream: &str,
        durable: &str,
        events: u64,
        deadline: Duration,
    ) -> Result<Throughput, BenchError> {
        let consumer = self
            .js
            .get_stream(stream)
            .await
            .map_err(raw_error)?
            .create_consumer(pull::Config {
                durable_name: Some(durable.into()),
                ack_policy: AckPolicy::Explicit,
                max_ack_pending: MAX_ACK_PENDING,
                ..Default::default()
            })
            .await
            .map_err(raw_error)?;
        let started = Instant::now();
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(PULL_BATCH)
            .messages()
            .await
            .map_err(raw_error)?;
        let mut seen = 0;
        let pull_all = async {
            while seen < events {
                match messages.next().await {
                    Some(message) => {
                        message.map_err(raw_error)?.ack().await.map_err(raw_error)?;
                        seen += 1;
                    }
                    None => break,
                }
            }
            self.client.flush().await.map_err(raw_error)
        };
        let outcome = tokio::time::timeout(deadline, pull_all).await;
        finish(outcome, events, seen)?;
        Ok(Throughput::new(events, started.elapsed()))
    }

    /// Reads the first `events` messages of `stream` with an ordered consumer.
    pub(crate) async fn ordered_read(
        &self,
        stream: &str,
        events: u64,
        deadline: Duration,
    ) -> Result<Throughput, BenchError> {
        let started = Instant::now();
        let consumer = self
            .js
            .get_stream(stream)
            .await
            .map_err(raw_error)?
            .create_consumer(pull::OrderedConfig::default())
            .await
            .map_err(raw_error)?;
        let mut messages = consumer.messages().await.map_err(raw_error)?;
        let mut seen = 0;
        let read_all = async {
            while seen < events {
                match messages.next().await {
                    Some(message) => {
                        std::hint::black_box(message.map_err(raw_error)?);
                        seen += 1;
                    }
                    None => break,
                }
            }
            Ok(())
        };
        let outcome = tokio::time::timeout(deadline, read_all).await;
        finish(outcome, events, seen)?;
        Ok(Throughput::new(events, started.elapsed()))
    }
}

impl RawClient {
    /// Open loop at `rate` on [`RAW_STREAM`]: each event is published when
    /// due and timed until a pull consumer has received it, measured from
    /// its scheduled send time.
    pub(crate) async fn latency(
        &self,
        durable: &str,
        rate: u64,
        events: u64,
    ) -> Result<Recorder, BenchError> {
        let consumer = self
            .js
            .get_stream(RAW_STREAM)
            .await
            .map_err(raw_error)?
            .create_consumer(pull::Config {
                durable_name: Some(durable.into()),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::New,
                max_ack_pending: MAX_ACK_PENDING,
                ..Default::default()
            })
            .await
            .map_err(raw_error)?;
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(PULL_BATCH)
            .messages()
            .await
            .map_err(raw_error)?;
        let schedule = Schedule::new(rate);
        let recorder = Recorder::new(schedule)?;
        let receiver = {
            let recorder = recorder.clone();
            tokio::spawn(async move {
                let mut seen = 0;
                while seen < events {
                    let Some(Ok(message)) = messages.next().await else {
                        break;
                    };
                    if let Some(index) = MessageReceived::decode(message.payload.as_ref())
                        .ok()
                        .as_ref()
                        .and_then(index_of)
                    {
                        recorder.observed(index);
                    }
                    let _ = message.ack().await;
                    seen += 1;
                }
            })
        };
        let workload = Workload::new(128);
        schedule
            .drive(events, |n| {
                let js = self.js.clone();
                let (subject, payload) = workload.raw_message(n, RAW_PREFIX);
                tokio::spawn(async move {
                    if let Ok(ack) = js.publish(subject, payload).await {
                        let _ = ack.await;
                    }
                });
            })
            .await;
        let outcome = tokio::time::timeout(Duration::from_secs(30), receiver).await;
        let seen = recorder.count();
        match outcome {
            Ok(Ok(())) if seen >= events => Ok(recorder),
            _ => Err(BenchError::new(BenchErrorKind::Incomplete {
                expected: events,
                seen,
            })),
        }
    }
}

/// Turns a timed-out or short scenario into `Incomplete`.
pub(crate) fn finish(
    outcome: Result<Result<(), BenchError>, tokio::time::error::Elapsed>,
    expected: u64,
    seen: u64,
) -> Result<(), BenchError> {
    match outcome {
        Ok(Ok(())) if seen >= expected => Ok(()),
        Ok(Err(e)) => Err(e),
        _ => Err(BenchError::new(BenchErrorKind::Incomplete {
            expected,
            seen,
        })),
    }
}

/// Wraps any raw-client failure.
pub(crate) fn raw_error(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> BenchError {
    BenchError::with_source(BenchErrorKind::RawClient, e.into())
}

//! Counters, gauges and an apply-latency histogram per consumer: plain
//! atomics the runners update. The server exposes them in the Prometheus
//! format through `prometheus-client`; this crate stays free of it.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::health::Health;

/// Upper bounds of the apply-latency histogram buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// One consumer's metrics; updated by its run, read by `/metrics`.
#[derive(Debug, Default)]
pub struct ConsumerMetrics {
    /// Events the handler applied.
    pub applied: AtomicU64,
    /// Redeliveries of already applied events, acked without applying.
    pub skipped: AtomicU64,
    /// Copies of events already applied (same `ce-id` within the dedup
    /// horizon), skipped.
    pub duplicates: AtomicU64,
    /// Events sent to the dead-letter stream.
    pub dead_letters: AtomicU64,
    /// Transient failures that were retried.
    pub retries: AtomicU64,
    /// Acknowledgements (acks, naks, terms, progress) the broker did not
    /// confirm: each only delays or repeats a redelivery the checkpoint or
    /// the recorded event ids absorb, but many mean a sick connection.
    pub settle_failures: AtomicU64,
    /// Matching events not yet delivered, as of the last fetch.
    pub lag: AtomicU64,
    /// The committed checkpoint.
    pub checkpoint: AtomicU64,
    /// Per-bucket (not cumulative) counts; the last is above every bound.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_count: AtomicU64,
    latency_sum_nanos: AtomicU64,
}

impl ConsumerMetrics {
    /// Settles `delivery` as `kind`; a failure is logged and counted in
    /// [`Self::settle_failures`], never dropped silently.
    pub async fn settle(
        &self,
        delivery: &backbone_broker::Delivery,
        kind: backbone_broker::AckKind,
    ) {
        if let Err(e) = delivery.settle(kind).await {
            tracing::debug!(seq = delivery.message.seq, error = %e, "settlement not confirmed; the redelivery will be absorbed");
            Self::add(&self.settle_failures, 1);
        }
    }

    /// Records how long applying one event took.
    pub fn observe_apply(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The apply-latency histogram: `(upper bound in seconds, count)` per
    /// bucket, not cumulative, the last bound `f64::MAX` (`+Inf`); then the
    /// sum in seconds and the count of observations.
    pub fn apply_latency(&self) -> (Vec<(f64, u64)>, f64, u64) {
        let bounds = LATENCY_BUCKETS.iter().copied().chain([f64::MAX]);
        let buckets = bounds
            .zip(&self.buckets)
            .map(|(bound, count)| (bound, Self::get(count)))
            .collect();
        let sum = Self::get(&self.latency_sum_nanos) as f64 / 1e9;
        (buckets, sum, Self::get(&self.latency_count))
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Consumers' metrics by consumer name.
pub type Named = Vec<(String, Arc<ConsumerMetrics>)>;

/// Every consumer's metrics, by consumer name.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    consumers: Arc<Mutex<Named>>,
    health: Health,
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The health of the runners reporting into this registry (`/healthz`).
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The metrics of `consumer`, created on first use.
    pub fn consumer(&self, consumer: &str) -> Arc<ConsumerMetrics> {
        let mut consumers = self.consumers.lock().expect("metrics lock");
        if let Some((_, m)) = consumers.iter().find(|(name, _)| name == consumer) {
            return m.clone();
        }
        let metrics = Arc::new(ConsumerMetrics::default());
        consumers.push((consumer.to_owned(), metrics.clone()));
        metrics
    }

    /// Every consumer's metrics, by name, in registration order.
    pub fn consumers(&self) -> Named {
        self.consumers.lock().expect("metrics lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_observation_lands_in_one_bucket() {
        let metrics = Metrics::new();
        let m = metrics.consumer("billing");
        m.observe_apply(Duration::from_micros(300));
        m.observe_apply(Duration::from_secs(5));
        let (buckets, sum, count) = m.apply_latency();
        assert_eq!(buckets.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(buckets[2], (0.0005, 1));
        assert_eq!(buckets.last(), Some(&(f64::MAX, 1)));
        assert_eq!(buckets.iter().map(|(_, n)| n).sum::<u64>(), 2);
        assert_eq!(count, 2);
        assert!((sum - 5.0003).abs() < 1e-9);
        assert!(Arc::ptr_eq(&m, &metrics.consumer("billing")));
    }
}

#[cfg(test)]
mod settle_tests {
    use std::{sync::Arc, time::SystemTime};

    use async_trait::async_trait;
    use backbone_broker::{AckError, AckErrorKind, AckKind, Acker, Delivery, StoredMessage};

    use super::*;

    /// An acker whose broker never confirms.
    #[derive(Debug)]
    struct Unconfirmed;

    #[async_trait]
    impl Acker for Unconfirmed {
        async fn settle(&self, _: u64, _: AckKind) -> Result<(), AckError> {
            Err(AckError::new(AckErrorKind::TimedOut))
        }
    }

    #[tokio::test]
    async fn unconfirmed_settlements_are_counted() {
        let message = StoredMessage {
            stream: "EVENTS".into(),
            seq: 1,
            subject: "events.user.followed.u-1".into(),
            headers: Default::default(),
            payload: Default::default(),
            time: SystemTime::now(),
            malformed_headers: None,
        };
        let delivery = Delivery::new(message, 1, 0, Arc::new(Unconfirmed));
        let metrics = ConsumerMetrics::default();
        metrics.settle(&delivery, AckKind::Ack).await;
        metrics
            .settle(&delivery, AckKind::Term { reason: None })
            .await;
        assert_eq!(ConsumerMetrics::get(&metrics.settle_failures), 2);
    }
}

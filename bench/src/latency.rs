//! Open-loop latency measurement.
//!
//! Send times are fixed in advance (`start + n / rate`) and latency is taken
//! from the *scheduled* time, not the actual send: when the system stalls,
//! the events that should have been sent meanwhile are charged the stall
//! (no coordinated omission).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

use super::{
    error::{BenchError, BenchErrorKind},
    report::Latency,
    server::FsyncPolicy,
};

/// When each event of an open-loop run is due.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    start: Instant,
    rate_per_sec: u64,
}

impl Schedule {
    /// `rate_per_sec` events per second, the first due a little after now so
    /// the consumer is ready.
    pub(crate) fn new(rate_per_sec: u64) -> Self {
        Self {
            start: Instant::now() + Duration::from_millis(50),
            rate_per_sec: rate_per_sec.max(1),
        }
    }

    /// When event `n` is due.
    pub(crate) fn due(&self, n: u64) -> Instant {
        self.start + Duration::from_nanos(n.saturating_mul(1_000_000_000) / self.rate_per_sec)
    }

    /// Calls `send(n)` for `count` events, each as soon as it is due; events
    /// that fell due while the caller slept are sent at once, in order.
    pub(crate) async fn drive(&self, count: u64, mut send: impl FnMut(u64)) {
        let mut n = 0;
        while n < count {
            let now = Instant::now();
            while n < count && self.due(n) <= now {
                send(n);
                n += 1;
            }
            if n < count {
                tokio::time::sleep_until(self.due(n).into()).await;
            }
        }
    }
}

/// Latencies from scheduled send to observation, shared by the tasks that
/// observe.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    schedule: Schedule,
    histogram: Arc<Mutex<Histogram<u64>>>,
}

impl Recorder {
    /// An empty recorder for `schedule`, microsecond resolution up to a minute.
    pub(crate) fn new(schedule: Schedule) -> Result<Self, BenchError> {
        let histogram = Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| {
            BenchError::with_detail(BenchErrorKind::InvalidArguments, e.to_string())
        })?;
        Ok(Self {
            schedule,
            histogram: Arc::new(Mutex::new(histogram)),
        })
    }

    /// Records that event `n` was observed now.
    pub(crate) fn observed(&self, n: u64) {
        let micros = Instant::now()
            .saturating_duration_since(self.schedule.due(n))
            .as_micros();
        let micros = u64::try_from(micros)
            .unwrap_or(u64::MAX)
            .clamp(1, 60_000_000);
        if let Ok(mut histogram) = self.histogram.lock() {
            histogram.saturating_record(micros);
        }
    }

    /// Events observed so far.
    pub(crate) fn count(&self) -> u64 {
        self.histogram.lock().map_or(0, |h| h.len())
    }

    /// The percentiles, labelled.
    pub(crate) fn summary(
        &self,
        path: &'static str,
        fsync: FsyncPolicy,
        rate_per_sec: u64,
    ) -> Latency {
        let histogram = self
            .histogram
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        Latency {
            path,
            fsync,
            rate_per_sec,
            samples: histogram.len(),
            p50_us: histogram.value_at_quantile(0.50),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stalled_observer_is_charged_from_the_schedule() {
        let schedule = Schedule::new(1_000);
        let recorder = Recorder::new(schedule).unwrap();
        let mut sent = Vec::new();
        schedule.drive(20, |n| sent.push(n)).await;
        assert_eq!(sent, (0..20).collect::<Vec<_>>());
        tokio::time::sleep(Duration::from_millis(30)).await;
        recorder.observed(0);
        let latency = recorder.summary("test", FsyncPolicy::Default, 1_000);
        assert_eq!(latency.samples, 1);
        assert!(latency.p50_us >= 30_000, "{latency:?}");
    }
}

//! [`RuntimeConfig`]: how a consumer runs. Build one with `..Default::default()`.

use std::time::Duration;

use backbone_broker::stream::EVENT_STREAM;

/// Settings of one consumer run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// The stream consumed.
    pub stream: String,
    /// The durable consumer's name; letters, digits, `-` and `_`. Also the
    /// `<consumer>` of dead-letter subjects.
    pub durable_name: String,
    /// Deliveries fetched, applied and committed together.
    pub batch_size: usize,
    /// How long one fetch waits for messages; bounds how quickly a
    /// shutdown request is noticed.
    pub fetch_wait: Duration,
    /// How long a delivery may stay unacknowledged before redelivery.
    pub ack_wait: Duration,
    /// Deliveries per event before a transient failure is dead-lettered.
    pub max_deliver: u32,
    /// The first retry delay of a transient failure; doubles per delivery.
    pub backoff_base: Duration,
    /// The longest retry delay.
    pub backoff_max: Duration,
    /// How long after applying an event a read model still recognises a
    /// copy of it (same `ce-id`) and skips it ([`crate::dedup`]); zero
    /// turns the index off. A rebuild must use the same horizon to reach
    /// the same state.
    pub dedup_horizon: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            stream: EVENT_STREAM.to_owned(),
            durable_name: String::new(),
            batch_size: 256,
            fetch_wait: Duration::from_millis(500),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            dedup_horizon: crate::dedup::DEFAULT_HORIZON,
        }
    }
}

impl RuntimeConfig {
    /// Defaults, with the durable consumer named `durable_name`.
    pub fn durable(durable_name: impl Into<String>) -> Self {
        Self {
            durable_name: durable_name.into(),
            ..Default::default()
        }
    }

    /// The redelivery delay after the `delivery`-th failed delivery:
    /// `backoff_base * 2^(delivery-1)`, at most `backoff_max`.
    pub fn backoff(&self, delivery: u32) -> Duration {
        backbone_core::backoff::exponential(self.backoff_base, self.backoff_max, delivery)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = RuntimeConfig {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(500),
            ..Default::default()
        };
        let delays: Vec<_> = (1..=5).map(|d| config.backoff(d).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
        assert_eq!(config.backoff(u32::MAX).as_millis(), 500);
    }
}

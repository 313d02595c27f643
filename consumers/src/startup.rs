//! The bounded wait, before a runner's first batch, for deliveries made to a
//! previous process of the same durable consumer.
//!
//! After a restart (above all after `kill -9`), deliveries the previous
//! process fetched but never acknowledged stay pending at the broker until
//! their ack wait expires, while messages after them are delivered at once.
//! Applying those first would move the checkpoint past the strays, and their
//! redelivery would then be skipped as already applied. So before the first
//! batch the runner waits until the consumer's `num_ack_pending` is all in
//! its own hands. That takes up to one ack wait (30 s by default); the wait
//! is logged at info level. It is bounded: if the strays are still out after
//! [`StrayWait::limit`] (twice the ack wait plus one fetch wait; e.g. another
//! process keeps them alive), the runner recreates the durable consumer at
//! checkpoint + 1, which drops every outstanding delivery and redelivers
//! everything after the checkpoint in order, so nothing is skipped.

use std::time::{Duration, Instant};

use std::future::Future;

use backbone_broker::{Consumer, ConsumerError, ConsumerErrorKind};

use crate::{config::RuntimeConfig, health::Health, shutdown::Shutdown};

/// Calls `bind` until the durable consumer is bound. A broker that is down
/// or slow to answer (`BrokerUnavailable`, `TimedOut`) is waited for with
/// the runner's backoff while `health` reports the runner failing, instead
/// of ending the run for good; any other failure is returned. `None` when
/// shutdown was requested meanwhile.
pub(crate) async fn bind_when_ready<F, Fut>(
    config: &RuntimeConfig,
    health: &Health,
    shutdown: &Shutdown,
    mut bind: F,
) -> Result<Option<Box<dyn Consumer>>, ConsumerError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Box<dyn Consumer>, ConsumerError>>,
{
    let mut attempts = 0u32;
    loop {
        match bind().await {
            Ok(consumer) => {
                health.recovered(&config.durable_name, "bind");
                return Ok(Some(consumer));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ConsumerErrorKind::BrokerUnavailable | ConsumerErrorKind::TimedOut
                ) =>
            {
                attempts += 1;
                tracing::warn!(error = %e, "cannot bind the durable consumer yet; retrying");
                health.failing(&config.durable_name, "bind", e.to_string());
                tokio::time::sleep(config.backoff(attempts)).await;
                if shutdown.is_triggered() {
                    return Ok(None);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// What the runner does next about deliveries of a previous process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrayCheck {
    /// Every pending delivery is in hand: apply.
    Clear,
    /// Some are still out: fetch again and check again.
    Wait,
    /// They did not come back in time: recreate the consumer.
    Expired,
}

/// State of the wait across loop iterations of one run.
#[derive(Debug)]
pub(crate) struct StrayWait {
    started: Option<Instant>,
    limit: Duration,
    ack_wait: Duration,
}

impl StrayWait {
    pub(crate) fn new(config: &RuntimeConfig) -> Self {
        Self {
            started: None,
            limit: Self::limit(config),
            ack_wait: config.ack_wait,
        }
    }

    /// The longest the runner waits for strays before recreating its
    /// consumer: by then every stray's ack wait has expired at least once.
    pub(crate) fn limit(config: &RuntimeConfig) -> Duration {
        config.ack_wait.saturating_mul(2) + config.fetch_wait
    }

    /// Compares the consumer's pending deliveries with the `held` in hand.
    pub(crate) async fn check(&mut self, consumer: &dyn Consumer, held: usize) -> StrayCheck {
        let outside = match consumer.info().await {
            Ok(info) => info.num_ack_pending.saturating_sub(held as u64),
            Err(e) => {
                tracing::warn!(error = %e, "consumer info failed; cannot check for deliveries of a previous process");
                u64::MAX
            }
        };
        if outside == 0 {
            if self.started.is_some() {
                tracing::info!("the deliveries of the previous process are back; resuming");
            }
            return StrayCheck::Clear;
        }
        let started = *self.started.get_or_insert_with(|| {
            if outside != u64::MAX {
                tracing::info!(
                    pending = outside,
                    "waiting for {outside} deliveries of the previous process to expire (ack wait {:?})",
                    self.ack_wait
                );
            }
            Instant::now()
        });
        if started.elapsed() >= self.limit {
            tracing::warn!(
                limit = ?self.limit,
                "deliveries of a previous process did not come back in time; recreating the durable consumer at the checkpoint"
            );
            return StrayCheck::Expired;
        }
        StrayCheck::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_covers_two_ack_waits() {
        let config = RuntimeConfig {
            ack_wait: Duration::from_secs(30),
            fetch_wait: Duration::from_millis(500),
            ..Default::default()
        };
        assert_eq!(StrayWait::limit(&config), Duration::from_millis(60_500));
    }
}

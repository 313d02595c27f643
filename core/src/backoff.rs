//! The one retry-delay rule: exponential, capped.
//!
//! Redeliveries of a failing event and reconnects to an unreachable broker
//! wait by this rule, so a flapping dependency is retried at the same pace
//! everywhere.

use std::time::Duration;

/// The delay before retry `attempt` (1 for the first retry):
/// `base * 2^(attempt-1)`, at most `max`.
pub fn exponential(base: Duration, max: Duration, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    base.saturating_mul(1u32 << exponent).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<_> = (0..7).map(|n| exponential(base, max, n)).collect();
        let ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(exponential(base, Duration::MAX, u32::MAX), base * (1 << 20));
    }
}

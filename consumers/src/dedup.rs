//! Idempotency on `ce-id`: a read model applies each event id once within
//! its *dedup horizon*.
//!
//! The broker deduplicates publishes only within its duplicate window (2
//! minutes by default), so an event republished byte for byte later (a
//! publisher retrying after an outage, a bridge redelivering, a spool
//! draining) is a new log entry with the same `ce-id`. Every read model
//! records the ids it applied, with the stream sequence and store time of
//! the entry, in its store's metadata (committed with the checkpoint, outside
//! the model's keys and digest). An entry whose id the model applied from an
//! entry stored at most `horizon` earlier is a **duplicate**: the model
//! applies nothing ([`crate::model::ReadModel::duplicate`] lets it record the
//! copy, as `audit` does) and the checkpoint moves past it.
//!
//! The rule compares store times of log entries, never the clock, so a
//! rebuild from the log reaches exactly the state the live consumer reached.
//! Records older than the horizon (relative to the newest entry committed)
//! are pruned by commits, each sweeping a slice of the index (one key per
//! applied event, no second index to keep in order); after a full pass,
//! commits read nothing until the oldest record kept can have left the
//! horizon. Beyond the horizon a copy is applied as a new event.
//! A horizon of zero turns the index off.

use std::time::{Duration, SystemTime};

/// The default horizon: copies stored within 24 hours of the first are
/// duplicates.
pub const DEFAULT_HORIZON: Duration = Duration::from_secs(24 * 60 * 60);

const APPLIED_PREFIX: &[u8] = b"mapplied\x1f";

/// Where and when a model first applied an event id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Applied {
    /// The stream sequence of the entry applied.
    pub(crate) seq: u64,
    /// Its store time, nanoseconds since the Unix epoch.
    pub(crate) time: u64,
}

impl Applied {
    pub(crate) fn encode(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..].copy_from_slice(&self.time.to_be_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let seq = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let time = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some(Self { seq, time })
    }

    /// Whether an entry of `event_id` stored at `time` is a copy of this one
    /// within `horizon`.
    pub(crate) fn covers(self, time: u64, horizon: Duration) -> bool {
        !horizon.is_zero() && time <= self.time.saturating_add(nanos(horizon))
    }
}

/// Nanoseconds since the Unix epoch (0 before it).
pub(crate) fn time_nanos(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, nanos)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Records of entries stored before this time may be pruned once an entry
/// stored at `newest` is committed.
pub(crate) fn prune_cutoff(newest: u64, horizon: Duration) -> u64 {
    newest.saturating_sub(nanos(horizon))
}

/// The metadata key of `event_id`'s record.
pub(crate) fn applied_key(event_id: &str) -> Vec<u8> {
    let mut k = APPLIED_PREFIX.to_vec();
    k.extend_from_slice(event_id.as_bytes());
    k
}

/// Records a commit looks at for pruning: commits sweep the index a slice at
/// a time, so a record is removed within about `index size / PRUNE_STEP`
/// commits of leaving the horizon, at a bounded cost per commit.
pub(crate) const PRUNE_STEP: usize = 1024;

/// The prefix of every record key.
pub(crate) fn applied_prefix() -> &'static [u8] {
    APPLIED_PREFIX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_cover_their_horizon() {
        let a = Applied {
            seq: 7,
            time: 1_000,
        };
        assert_eq!(Applied::decode(&a.encode()), Some(a));
        assert!(a.covers(1_000 + 5, Duration::from_nanos(5)));
        assert!(!a.covers(1_000 + 6, Duration::from_nanos(5)));
        assert!(a.covers(10, Duration::from_nanos(5)), "earlier copies too");
        assert!(!a.covers(1_000, Duration::ZERO), "zero turns it off");
    }
}

//! Delivery counts that never go backwards within one bound consumer.
//!
//! nats-server 2.9 has a race (fixed upstream in 2.10.15, nats-server#5338):
//! when a redelivery falls due just as the only waiting pull request
//! expires, the server drops the request silently and rolls the delivery
//! back as if the message had never been delivered, so the next delivery
//! carries `delivered = 1` again. The contract says a redelivery has a
//! delivery count one higher, so the consumer remembers the highest count it
//! handed out per unsettled message and corrects a count that did not grow.

use std::{collections::BTreeMap, sync::Mutex};

/// Beyond this many unsettled messages the oldest knowledge (the lowest
/// stream sequences) is dropped, one entry at a time, rather than growing
/// without bound.
const MAX_TRACKED: usize = 100_000;

/// Highest delivery count handed out per stream sequence not yet settled.
#[derive(Debug, Default)]
pub(crate) struct DeliveryCounts {
    seen: Mutex<BTreeMap<u64, u32>>,
}

impl DeliveryCounts {
    /// The count to report for a delivery of `stream_seq` the server
    /// numbered `delivered`.
    pub(crate) fn observe(&self, stream_seq: u64, delivered: u32) -> u32 {
        let Ok(mut seen) = self.seen.lock() else {
            return delivered;
        };
        let count = match seen.get(&stream_seq) {
            Some(&earlier) if delivered <= earlier => earlier + 1,
            _ => delivered,
        };
        if seen.len() >= MAX_TRACKED && !seen.contains_key(&stream_seq) {
            seen.pop_first();
        }
        seen.insert(stream_seq, count);
        count
    }

    /// Forgets a message that was acked or termed: it is never delivered again.
    pub(crate) fn settled(&self, stream_seq: u64) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.remove(&stream_seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_rolled_back_by_the_server_is_corrected() {
        let counts = DeliveryCounts::default();
        assert_eq!(counts.observe(7, 1), 1);
        assert_eq!(counts.observe(7, 1), 2, "server rolled the count back");
        assert_eq!(counts.observe(7, 3), 3);
        assert_eq!(counts.observe(7, 5), 5, "deliveries to other workers count");
        assert_eq!(counts.observe(8, 1), 1);
        counts.settled(7);
        assert_eq!(counts.observe(7, 1), 1, "a settled message starts over");
    }

    #[test]
    fn past_the_bound_only_the_oldest_knowledge_goes() {
        let counts = DeliveryCounts::default();
        for seq in 1..=MAX_TRACKED as u64 {
            counts.observe(seq, 1);
        }
        counts.observe(MAX_TRACKED as u64 + 1, 1);
        // The newest still correct a rolled-back count; the oldest is gone.
        assert_eq!(counts.observe(MAX_TRACKED as u64, 1), 2);
        assert_eq!(counts.observe(2, 1), 2);
        assert_eq!(counts.observe(1, 1), 1, "the oldest was dropped");
    }
}

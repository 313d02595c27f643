//! [`AckFloor`]: a reactor's checkpoint, which only moves past settled
//! deliveries.
//!
//! A reactor handles deliveries out of order (a transiently failing event
//! is handed back with a nak while later ones fire), so "the highest
//! sequence seen" is not a safe place to recreate its durable consumer
//! from: an event handed back below it would never be delivered again. The
//! floor is the highest settled sequence with nothing handed back at or
//! below it.

use std::collections::BTreeSet;

/// Settled and handed-back sequences of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AckFloor {
    /// The checkpoint last committed to the store.
    pub(crate) committed: u64,
    settled_max: u64,
    handed_back: BTreeSet<u64>,
}

impl AckFloor {
    /// Starts at the stored `checkpoint`: everything up to it was settled.
    pub(crate) fn new(checkpoint: u64) -> Self {
        Self {
            committed: checkpoint,
            settled_max: checkpoint,
            handed_back: BTreeSet::new(),
        }
    }

    /// `seq` is done with: fired, skipped or dead-lettered.
    pub(crate) fn settled(&mut self, seq: u64) {
        self.handed_back.remove(&seq);
        self.settled_max = self.settled_max.max(seq);
    }

    /// `seq` was handed back to the broker for a later redelivery.
    pub(crate) fn outstanding(&mut self, seq: u64) {
        self.handed_back.insert(seq);
    }

    /// The sequence the durable consumer may be recreated after.
    pub(crate) fn checkpoint(&self) -> u64 {
        match self.handed_back.first() {
            Some(lowest) => self.settled_max.min(lowest.saturating_sub(1)),
            None => self.settled_max,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_handed_back_event_holds_the_floor_until_it_settles() {
        let mut floor = AckFloor::new(10);
        floor.outstanding(11);
        floor.settled(12);
        floor.settled(13);
        assert_eq!(floor.checkpoint(), 10);
        floor.settled(11);
        assert_eq!(floor.checkpoint(), 13);
    }

    proptest! {
        /// Against a model: the floor is the largest n such that every
        /// sequence in 1..=n is settled, given sequences arrive in order.
        #[test]
        fn the_floor_never_passes_an_unsettled_sequence(
            ops in proptest::collection::vec((1u64..40, any::<bool>()), 0..80)
        ) {
            let mut floor = AckFloor::new(0);
            let mut settled = BTreeSet::new();
            let mut seen = BTreeSet::new();
            for (seq, ok) in ops {
                // Deliveries arrive in order: everything below `seq` was seen.
                for s in 1..=seq {
                    if seen.insert(s) {
                        if s == seq && !ok {
                            floor.outstanding(s);
                        } else {
                            floor.settled(s);
                            settled.insert(s);
                        }
                    }
                }
                if seen.contains(&seq) && ok {
                    floor.settled(seq);
                    settled.insert(seq);
                }
                let contiguous = (1..).take_while(|s| settled.contains(s)).count() as u64;
                prop_assert_eq!(floor.checkpoint(), contiguous);
            }
        }
    }
}

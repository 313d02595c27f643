//! The read model the benchmark builds: a message count per conversation,
//! a read-modify-write per event like most projections.
//!
//! It can also report which events it applied, so the latency scenario can
//! stamp each one when the runtime commits it (see [`Applied`]).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use backbone_consumers::{HandlerError, ReadModel, model::typed, transaction::Transaction};
use backbone_schemas::{Envelope, Event as _, messaging::v1::MessageReceived};

use super::workload::index_of;

/// Counts `message.received` events per conversation.
#[derive(Debug, Default)]
pub(crate) struct ConversationCounts {
    applied: Option<Arc<Applied>>,
}

impl ConversationCounts {
    /// A model that also reports each applied event's benchmark index.
    pub(crate) fn reporting(applied: Arc<Applied>) -> Self {
        Self {
            applied: Some(applied),
        }
    }
}

impl ReadModel for ConversationCounts {
    fn name(&self) -> &'static str {
        "bench_conversations"
    }

    fn event_types(&self) -> &'static [&'static str] {
        &[MessageReceived::TYPE]
    }

    fn apply(
        &self,
        seq: u64,
        event: &Envelope,
        tx: &mut Transaction<'_>,
    ) -> Result<(), HandlerError> {
        let message: MessageReceived = typed(event)?;
        let key = [
            b"conversation/".as_slice(),
            message.conversation_id.as_bytes(),
        ]
        .concat();
        let count: u64 = tx
            .get_json(&key)
            .map_err(|e| HandlerError::transient(e.to_string()))?
            .unwrap_or(0);
        tx.put_json(&key, &(count + 1));
        if let Some(applied) = &self.applied
            && let Some(index) = index_of(&message)
        {
            applied.push(seq, index);
        }
        Ok(())
    }
}

/// Events applied but not yet known to be committed: (stream seq, bench
/// index) in apply order.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    pending: Mutex<VecDeque<(u64, u64)>>,
}

impl Applied {
    fn push(&self, seq: u64, index: u64) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.push_back((seq, index));
        }
    }

    /// Removes and returns the indexes of events at or below `checkpoint`.
    pub(crate) fn committed_up_to(&self, checkpoint: u64) -> Vec<u64> {
        let Ok(mut pending) = self.pending.lock() else {
            return Vec::new();
        };
        let mut done = Vec::new();
        while let Some(&(seq, index)) = pending.front() {
            if seq > checkpoint {
                break;
            }
            pending.pop_front();
            done.push(index);
        }
        done
    }
}

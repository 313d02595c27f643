//! The events the benchmark publishes: `message.received` samples padded to
//! an exact protobuf payload size, spread over a fixed set of keys.

use backbone_broker::OutboundMessage;
use backbone_schemas::{
    Envelope, EventContext, messaging::v1::MessageReceived, sample::message_received,
};
use bytes::Bytes;
use prost::Message as _;

/// Distinct keys (conversations) the events are spread over, so subjects vary
/// the way a real workload's do.
pub(crate) const KEYS: u64 = 1_000;

/// The source the benchmark's envelopes carry.
const SOURCE: &str = "bench";

/// Builds events whose protobuf payload is exactly `size` bytes (or the
/// smallest possible size when `size` is below the sample's unpadded size).
#[derive(Debug, Clone)]
pub(crate) struct Workload {
    template: MessageReceived,
}

impl Workload {
    /// A workload of `size`-byte payloads.
    pub(crate) fn new(size: usize) -> Self {
        let mut template = message_received();
        template.text.clear();
        template.media.clear();
        template.conversation_id = conversation(0);
        template.provider_message_id = index_text(0);
        let bare = template.encoded_len();
        let mut fill = size.saturating_sub(bare + 1);
        template.text = "x".repeat(fill);
        // The text's length prefix grows by a byte at 128 and 16384; settle on
        // the largest fill that does not overshoot.
        while template.encoded_len() > size && fill > 0 {
            fill -= 1;
            template.text = "x".repeat(fill);
        }
        while template.encoded_len() < size {
            fill += 1;
            template.text = "x".repeat(fill);
        }
        Self { template }
    }

    /// The `n`th event: the template on conversation `c-<n mod KEYS>`,
    /// carrying `n` as its provider message id (the latency scenario reads
    /// it back).
    pub(crate) fn event(&self, n: u64) -> MessageReceived {
        let mut event = self.template.clone();
        event.conversation_id = conversation(n);
        event.provider_message_id = index_text(n);
        event
    }

    /// The `n`th event as Backbone publishes it: enveloped, with
    /// CloudEvents headers, a correlation id, and the envelope id as
    /// deduplication id.
    pub(crate) fn typed_message(&self, n: u64) -> OutboundMessage {
        let event = self.event(n);
        let context = EventContext::new(SOURCE).with_correlation_id(correlation(n));
        let envelope = Envelope::from_event(&event, context)
            .expect("benchmark events have valid keys and source");
        envelope_message(&envelope)
    }

    /// The `n`th event as a raw client publishes it: subject and payload
    /// bytes, no envelope.
    pub(crate) fn raw_message(&self, n: u64, prefix: &str) -> (String, Bytes) {
        let event = self.event(n);
        let subject = format!("{prefix}.message.received.{}", event.conversation_id);
        (subject, Bytes::from(event.encode_to_vec()))
    }
}

/// The benchmark index `n` as a fixed-width provider message id.
fn index_text(n: u64) -> String {
    format!("{n:020}")
}

/// The benchmark index carried by an event, if it is one of ours.
pub(crate) fn index_of(event: &MessageReceived) -> Option<u64> {
    event.provider_message_id.parse().ok()
}

/// The correlation id of event `n`: four consecutive events share one, as
/// the events of one checkout or conversation turn would.
pub(crate) fn correlation(n: u64) -> String {
    format!("turn-{}", n / 4)
}

/// Fixed-width conversation ids keep every payload the same size.
pub(crate) fn conversation(n: u64) -> String {
    format!("c-{:04}", n % KEYS)
}

/// An envelope as the message Backbone publishes; mirrors the planned
/// `EventPublisher` (msg_id = ce-id).
pub(crate) fn envelope_message(envelope: &Envelope) -> OutboundMessage {
    OutboundMessage {
        subject: envelope.subject(),
        headers: envelope.headers(),
        payload: envelope.payload.clone(),
        msg_id: Some(envelope.id.to_string()),
        expected_last_subject_seq: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_requested_size() {
        for size in [128, 1024, 200, 16_400] {
            let workload = Workload::new(size);
            assert_eq!(workload.event(7).encoded_len(), size, "size {size}");
            assert_eq!(workload.typed_message(7).payload.len(), size);
        }
    }

    #[test]
    fn typed_messages_decode_as_envelopes() {
        let message = Workload::new(128).typed_message(1_234);
        let envelope =
            Envelope::decode(&message.subject, &message.headers, &message.payload).unwrap();
        assert_eq!(envelope.key, "c-0234");
        assert_eq!(
            message.msg_id.as_deref(),
            Some(envelope.id.to_string().as_str())
        );
    }
}

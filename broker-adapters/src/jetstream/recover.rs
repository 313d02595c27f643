//! Deliveries lost in flight, found again through the stream.
//!
//! A delivery can be lost between the server and the consumer: the delivery
//! connection drops mid-pull (async-nats drops it on purpose when a header
//! block does not parse), or the server delivers to a pull request nobody
//! waits on any more. The server then counts the message as delivered and
//! redelivers it only after its ack wait, by which time a read model would
//! have moved its checkpoint past it. So when a pull was interrupted or the
//! delivery sequence jumps, the consumer reads every message the server holds
//! unacknowledged for it — the range after its ack floor up to its last
//! delivered sequence — through `STREAM.MSG.GET`, which returns header blocks
//! as base64 JSON and so never trips the client's parser. Messages whose
//! header block is unreadable come back with
//! [`StoredMessage::malformed_headers`] set, so the runtime can dead-letter
//! them instead of stalling on them.
//!
//! Recovered deliveries are settled on the ack subject the server would have
//! used (`$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>...`): the
//! server finds the pending message by its stream sequence.

use serde_json::json;

use super::{Shared, api::code, wire::WireMsgGet};
use crate::message::StoredMessage;

/// At most this many messages are read back in one recovery; the rest come
/// back after their ack wait, as they would have anyway.
pub(crate) const MAX_RECOVERED: usize = 10_000;

/// The first stored message at or after `seq` matching one of `filters`
/// (every subject when empty), if any.
pub(crate) async fn next_matching(
    shared: &Shared,
    stream: &str,
    filters: &[String],
    seq: u64,
) -> Result<Option<StoredMessage>, String> {
    let wildcard = [">".to_owned()];
    let filters = if filters.is_empty() {
        &wildcard[..]
    } else {
        filters
    };
    let mut best: Option<StoredMessage> = None;
    for filter in filters {
        let body = json!({ "seq": seq.max(1), "next_by_subj": filter });
        let answer = shared
            .api
            .request::<WireMsgGet>(&format!("STREAM.MSG.GET.{stream}"), &body)
            .await;
        let message = match answer {
            Ok(answer) => answer.message.into_stored(stream)?,
            Err(failure) if failure.code() == Some(code::NO_MESSAGE_FOUND) => continue,
            Err(failure) => return Err(failure.describe()),
        };
        if best.as_ref().is_none_or(|b| message.seq < b.seq) {
            best = Some(message);
        }
    }
    Ok(best)
}

/// Every stored message matching `filters` with a sequence in
/// `after + 1 ..= through`, at most [`MAX_RECOVERED`], in order.
pub(crate) async fn stored_range(
    shared: &Shared,
    stream: &str,
    filters: &[String],
    after: u64,
    through: u64,
) -> Result<Vec<StoredMessage>, String> {
    let mut out = Vec::new();
    let mut next = after + 1;
    while next <= through && out.len() < MAX_RECOVERED {
        let Some(message) = next_matching(shared, stream, filters, next).await? else {
            break;
        };
        if message.seq > through {
            break;
        }
        next = message.seq + 1;
        out.push(message);
    }
    Ok(out)
}

/// The ack subject of a delivery of `stream_seq` that did not arrive; `dseq`
/// must lie within the consumer's outstanding delivery sequences (its last
/// delivered one does), as nats-server checks it for naks.
pub(crate) fn ack_subject(stream: &str, consumer: &str, stream_seq: u64, dseq: u64) -> String {
    format!("$JS.ACK.{stream}.{consumer}.1.{stream_seq}.{dseq}.0.0")
}

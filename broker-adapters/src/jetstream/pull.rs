//! One pull request against a consumer, and the metadata JetStream encodes in
//! each delivery's reply subject.

use std::time::{Duration, SystemTime};

use async_nats::{Message, StatusCode};
use backbone_schemas::Headers;
use futures::StreamExt as _;
use serde_json::json;

use super::{Shared, api::wait_connected};
use crate::{
    error::{ConsumerError, ConsumerErrorKind},
    message::StoredMessage,
};

/// How long a long poll is awaited past its expiry.
const LONG_POLL_SLACK: Duration = Duration::from_millis(750);

/// Delivery facts from `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<nanos>.<pending>`
/// (or the v2 form with domain and account hash in front).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AckMeta {
    pub(crate) stream: String,
    pub(crate) delivered: u32,
    pub(crate) stream_seq: u64,
    pub(crate) consumer_seq: u64,
    pub(crate) time: SystemTime,
    pub(crate) pending: u64,
}

impl AckMeta {
    pub(crate) fn parse(reply: &str) -> Option<Self> {
        let tokens: Vec<&str> = reply.split('.').collect();
        if tokens.len() < 9 || tokens[0] != "$JS" || tokens[1] != "ACK" {
            return None;
        }
        // v1 has 9 tokens; v2 adds domain and account hash after ACK (and
        // may append a random token).
        let rest = if tokens.len() == 9 {
            &tokens[2..]
        } else {
            &tokens[4..]
        };
        if rest.len() < 7 {
            return None;
        }
        Some(Self {
            stream: rest[0].to_owned(),
            delivered: rest[2].parse().ok()?,
            stream_seq: rest[3].parse().ok()?,
            consumer_seq: rest[4].parse().ok()?,
            time: SystemTime::UNIX_EPOCH + Duration::from_nanos(rest[5].parse().ok()?),
            pending: rest[6].parse().ok()?,
        })
    }
}

/// A delivery: message, metadata and the reply subject to settle it on.
#[derive(Debug)]
pub(crate) struct Pulled {
    pub(crate) message: StoredMessage,
    pub(crate) meta: AckMeta,
    pub(crate) reply: String,
}

/// Why a pull ended without messages.
#[derive(Debug)]
pub(crate) enum PullEnd {
    /// The consumer no longer exists (deleted, or lost with a restart).
    ConsumerGone,
}

/// Takes what is available now (up to `max`); if nothing is, waits up to
/// `expires` for the first message and then takes what else is available.
///
/// A long poll asks for one message only: a pull request left open for more
/// would have the server deliver later messages to an inbox nobody reads,
/// leaving them pending until their ack wait runs out.
pub(crate) async fn fetch_available(
    shared: &Shared,
    stream: &str,
    consumer: &str,
    max: usize,
    expires: Duration,
) -> Result<Result<Vec<Pulled>, PullEnd>, ConsumerError> {
    let now = pull(shared, stream, consumer, max, None).await?;
    match now {
        Ok(batch) if batch.is_empty() && !expires.is_zero() => {}
        other => return Ok(other),
    }
    let mut first = match pull(shared, stream, consumer, 1, Some(expires)).await? {
        Ok(first) if !first.is_empty() => first,
        other => return Ok(other),
    };
    if max > 1
        && let Ok(rest) = pull(shared, stream, consumer, max - 1, None).await?
    {
        first.extend(rest);
    }
    Ok(Ok(first))
}

/// One pull request for up to `batch` messages: `no_wait` when `expires` is
/// `None`, else waiting at most `expires` (plus the request timeout as slack).
async fn pull(
    shared: &Shared,
    stream: &str,
    consumer: &str,
    batch: usize,
    expires: Option<Duration>,
) -> Result<Result<Vec<Pulled>, PullEnd>, ConsumerError> {
    // nats-server 2.9 may drop an expired pull request without its 408 when
    // a redelivery falls due at that moment, so a long poll is not waited
    // for the whole request timeout past its expiry: the server never
    // delivers to an expired request, the slack only covers the trip there.
    let slack = match expires {
        Some(_) => shared.options.request_timeout.min(LONG_POLL_SLACK),
        None => shared.options.request_timeout,
    };
    let deadline = tokio::time::Instant::now() + expires.unwrap_or_default() + slack;
    if !wait_connected(&shared.client, deadline).await {
        return Err(ConsumerError::with_detail(
            ConsumerErrorKind::BrokerUnavailable,
            "not connected to the server",
        ));
    }
    let inbox = shared.client.new_inbox();
    let mut subscription = shared
        .client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| ConsumerError::with_source(ConsumerErrorKind::BrokerUnavailable, e))?;
    // The server's own expiry comes before our deadline, so its 408 (or
    // 404 for no_wait) ends the pull.
    let body = match expires {
        Some(expires) => json!({
            "batch": batch.max(1),
            "expires": super::wire::duration_nanos(expires.max(Duration::from_millis(10))),
        }),
        None => json!({ "batch": batch.max(1), "no_wait": true }),
    };
    shared
        .client
        .publish_with_reply(
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
            inbox,
            serde_json::to_vec(&body).unwrap_or_default().into(),
        )
        .await
        .map_err(|e| ConsumerError::with_source(ConsumerErrorKind::BrokerUnavailable, e))?;

    let mut raw = Vec::with_capacity(batch.min(1024));
    while raw.len() < batch {
        let next = tokio::time::timeout_at(deadline, subscription.next()).await;
        let Ok(Some(message)) = next else { break };
        match message.status {
            None | Some(StatusCode::OK) => raw.push(message),
            Some(StatusCode::IDLE_HEARTBEAT) => {}
            Some(status) if status == StatusCode::NOT_FOUND || status == StatusCode::TIMEOUT => {
                break;
            }
            Some(StatusCode::NO_RESPONDERS) => return Ok(Err(PullEnd::ConsumerGone)),
            Some(_) => {
                let text = message.description.clone().unwrap_or_default();
                if text.to_ascii_lowercase().contains("deleted") {
                    return Ok(Err(PullEnd::ConsumerGone));
                }
                break;
            }
        }
    }
    let _ = subscription.unsubscribe().await;
    if raw.is_empty() {
        return Ok(Ok(Vec::new()));
    }
    Ok(Ok(convert(stream, raw)))
}

/// Builds stored messages from deliveries with valid JetStream metadata.
fn convert(stream: &str, raw: Vec<Message>) -> Vec<Pulled> {
    raw.into_iter()
        .filter_map(|message| {
            let reply = message.reply.as_ref()?.to_string();
            let meta = AckMeta::parse(&reply)?;
            Some(Pulled {
                message: from_delivery(stream, &meta, message),
                meta,
                reply,
            })
        })
        .collect()
}

fn from_delivery(stream: &str, meta: &AckMeta, message: Message) -> StoredMessage {
    let mut headers = Headers::new();
    if let Some(map) = &message.headers {
        for (name, values) in map.iter() {
            for value in values {
                headers.append(name.to_string(), value.as_str());
            }
        }
    }
    StoredMessage {
        stream: stream.to_owned(),
        seq: meta.stream_seq,
        subject: message.subject.to_string(),
        headers,
        payload: message.payload,
        time: meta.time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_and_v2_ack_subjects() {
        let v1 = AckMeta::parse("$JS.ACK.EVENTS.proj.2.17.5.1700000000000000000.3").unwrap();
        assert_eq!(
            (v1.delivered, v1.stream_seq, v1.consumer_seq, v1.pending),
            (2, 17, 5, 3)
        );
        assert_eq!(v1.stream, "EVENTS");
        let v2 = AckMeta::parse("$JS.ACK.hub.ACCHASH.EVENTS.proj.1.9.9.1700000000000000000.0.rand")
            .unwrap();
        assert_eq!((v2.stream_seq, v2.pending), (9, 0));
        assert!(AckMeta::parse("_INBOX.abc").is_none());
    }
}

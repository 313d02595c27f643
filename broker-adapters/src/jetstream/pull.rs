//! One pull request against a consumer, and the metadata JetStream encodes in
//! each delivery's reply subject.

use std::time::{Duration, SystemTime};

use async_nats::{Message, StatusCode};
use backbone_core::Headers;
use futures::{FutureExt as _, StreamExt as _};
use serde_json::json;

use super::{Shared, api::wait_connected, connect::DeliveryLink};
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

/// What one or more pull requests brought.
#[derive(Debug, Default)]
pub(crate) struct Pull {
    /// The deliveries received, in the order they came.
    pub(crate) pulled: Vec<Pulled>,
    /// The delivery connection was lost while waiting: the server may have
    /// delivered more than arrived (see [`super::connect::delivery_link`]).
    pub(crate) interrupted: bool,
}

/// Takes what is available now (up to `max`); if nothing is, waits up to
/// `expires` for the first message and then takes what else is available.
///
/// A long poll asks for one message only: a pull request left open for more
/// would have the server deliver later messages to an inbox nobody reads,
/// leaving them pending until their ack wait runs out. A consumer that no
/// longer exists is `ConsumerNotFound`.
pub(crate) async fn fetch_available(
    shared: &Shared,
    link: &DeliveryLink,
    stream: &str,
    consumer: &str,
    max: usize,
    expires: Duration,
) -> Result<Pull, ConsumerError> {
    let now = pull(shared, link, stream, consumer, max, None).await?;
    if !now.pulled.is_empty() || now.interrupted || expires.is_zero() {
        return Ok(now);
    }
    let first = pull(shared, link, stream, consumer, 1, Some(expires)).await?;
    if first.pulled.is_empty() || first.interrupted || max == 1 {
        return Ok(first);
    }
    let mut pulled = first.pulled;
    // The first delivery is in hand: a failure to take more returns it
    // rather than losing it.
    let interrupted = match pull(shared, link, stream, consumer, max - 1, None).await {
        Ok(mut rest) => {
            pulled.append(&mut rest.pulled);
            rest.interrupted
        }
        Err(_) => false,
    };
    Ok(Pull {
        pulled,
        interrupted,
    })
}

/// One pull request for up to `batch` messages: `no_wait` when `expires` is
/// `None`, else waiting at most `expires` (plus the request timeout as slack).
async fn pull(
    shared: &Shared,
    link: &DeliveryLink,
    stream: &str,
    consumer: &str,
    batch: usize,
    expires: Option<Duration>,
) -> Result<Pull, ConsumerError> {
    // nats-server 2.9 may drop an expired pull request without its 408 when
    // a redelivery falls due at that moment, so a long poll is not waited
    // for the whole request timeout past its expiry: the server never
    // delivers to an expired request, the slack only covers the trip there.
    let slack = match expires {
        Some(_) => shared.options.request_timeout.min(LONG_POLL_SLACK),
        None => shared.options.request_timeout,
    };
    let deadline = tokio::time::Instant::now() + expires.unwrap_or_default() + slack;
    if !wait_connected(&link.client, deadline).await {
        return Err(ConsumerError::with_detail(
            ConsumerErrorKind::BrokerUnavailable,
            "not connected to the server",
        ));
    }
    let mut disconnects = link.disconnects.clone();
    disconnects.mark_unchanged();
    let inbox = link.client.new_inbox();
    let mut subscription = link
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
    link.client
        .publish_with_reply(
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
            inbox,
            serde_json::to_vec(&body).unwrap_or_default().into(),
        )
        .await
        .map_err(|e| ConsumerError::with_source(ConsumerErrorKind::BrokerUnavailable, e))?;

    let gone = || {
        ConsumerError::with_detail(
            ConsumerErrorKind::ConsumerNotFound,
            format!("consumer {stream}/{consumer} no longer exists"),
        )
    };
    let mut raw = Vec::with_capacity(batch.min(1024));
    let mut interrupted = false;
    while raw.len() < batch {
        let message = tokio::select! {
            next = tokio::time::timeout_at(deadline, subscription.next()) => match next {
                Ok(Some(message)) => message,
                _ => break,
            },
            _ = disconnects.changed() => {
                // What was parsed before the loss is still queued.
                interrupted = true;
                while let Some(Some(message)) = subscription.next().now_or_never() {
                    if message.status.is_none() && raw.len() < batch {
                        raw.push(message);
                    }
                }
                break;
            }
        };
        match message.status {
            None | Some(StatusCode::OK) => raw.push(message),
            Some(StatusCode::IDLE_HEARTBEAT) => {}
            Some(status) if status == StatusCode::NOT_FOUND || status == StatusCode::TIMEOUT => {
                break;
            }
            Some(StatusCode::NO_RESPONDERS) => return Err(gone()),
            Some(_) => {
                let text = message.description.clone().unwrap_or_default();
                if text.to_ascii_lowercase().contains("deleted") {
                    return Err(gone());
                }
                break;
            }
        }
    }
    let _ = subscription.unsubscribe().await;
    Ok(Pull {
        pulled: convert(stream, raw),
        interrupted,
    })
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
        malformed_headers: None,
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

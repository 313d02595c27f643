//! Publishing with acknowledgements, bounded retries and a pipelined window.

use std::{collections::VecDeque, sync::atomic::Ordering, time::Instant};

use async_nats::{
    HeaderMap,
    jetstream::{
        context::{PublishAckFuture, PublishErrorKind as NatsKind},
        message::PublishMessage,
    },
};

use std::future::IntoFuture;

use super::{
    Shared,
    api::{code, wait_connected},
};
use crate::{
    error::{PublishError, PublishErrorKind},
    message::{EXPECTED_LAST_SUBJECT_SEQ_HEADER, OutboundMessage, PublishReceipt},
};

/// A publish sent and awaiting its acknowledgement.
struct InFlight {
    ack: PublishAckFuture,
    subject: String,
    size: usize,
    sent_at: Instant,
}

/// Publishes one message, retrying transient failures with the same id.
pub(crate) async fn publish(
    shared: &Shared,
    message: OutboundMessage,
) -> Result<PublishReceipt, PublishError> {
    let mut retries_left = shared.options.publish_retries;
    loop {
        let in_flight = send(shared, &message).await?;
        match acknowledged(shared, in_flight).await {
            Err(err)
                if err.kind() == &PublishErrorKind::TimedOut
                    && message.dedup_id().is_some()
                    && retries_left > 0 =>
            {
                retries_left -= 1;
                tracing::debug!(subject = %message.subject, "retrying publish with the same id");
            }
            result => return result,
        }
    }
}

/// Publishes in input order with up to `max_in_flight` acks outstanding.
pub(crate) async fn publish_batch(
    shared: &Shared,
    messages: Vec<OutboundMessage>,
) -> Vec<Result<PublishReceipt, PublishError>> {
    let window = shared.options.max_in_flight.max(1);
    let total = messages.len();
    let mut results: Vec<Option<Result<PublishReceipt, PublishError>>> =
        (0..total).map(|_| None).collect();
    let mut pending: VecDeque<(usize, InFlight)> = VecDeque::with_capacity(window);
    for (index, message) in messages.iter().enumerate() {
        if pending.len() >= window {
            if let Some((done, in_flight)) = pending.pop_front() {
                results[done] = Some(acknowledged(shared, in_flight).await);
            }
        }
        match send(shared, message).await {
            Ok(in_flight) => pending.push_back((index, in_flight)),
            Err(err) => results[index] = Some(Err(err)),
        }
    }
    while let Some((done, in_flight)) = pending.pop_front() {
        results[done] = Some(acknowledged(shared, in_flight).await);
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(PublishError::new(PublishErrorKind::Rejected))))
        .collect()
}

/// Validates, then sends without waiting for the acknowledgement.
async fn send(shared: &Shared, message: &OutboundMessage) -> Result<InFlight, PublishError> {
    if shared.closed.load(Ordering::Acquire) {
        return Err(PublishError::with_detail(
            PublishErrorKind::BrokerUnavailable,
            "the broker connection was closed",
        ));
    }
    if !valid_publish_subject(&message.subject) {
        return Err(PublishError::with_detail(
            PublishErrorKind::InvalidSubject,
            format!("{:?} is not a publish subject", message.subject),
        ));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in message.stored_headers().iter() {
        headers.append(name, value);
    }
    if let Some(seq) = message.expected_last_subject_seq {
        headers.insert(EXPECTED_LAST_SUBJECT_SEQ_HEADER, seq.to_string().as_str());
    }
    let size = wire_size(&headers, message.payload.len());
    let max = shared.client.server_info().max_payload;
    if max > 0 && size > max {
        return Err(PublishError::with_detail(
            PublishErrorKind::PayloadTooLarge { size, max },
            "larger than the server's max_payload",
        ));
    }
    let deadline = tokio::time::Instant::now() + shared.options.publish_timeout;
    if !wait_connected(&shared.client, deadline).await {
        // Not sent, so nothing sits in the client's buffer to be published
        // later behind the caller's back.
        return Err(PublishError::with_detail(
            PublishErrorKind::BrokerUnavailable,
            format!(
                "not connected to the server within {:?}",
                shared.options.publish_timeout
            ),
        ));
    }
    let sent_at = Instant::now();
    let ack = shared
        .context
        .send_publish(
            message.subject.clone(),
            PublishMessage::build()
                .payload(message.payload.clone())
                .headers(headers),
        )
        .await
        .map_err(|err| map_nats_error(shared, err, size))?;
    Ok(InFlight {
        ack,
        subject: message.subject.clone(),
        size,
        sent_at,
    })
}

/// Waits for the acknowledgement, or a permission violation for the subject.
async fn acknowledged(
    shared: &Shared,
    in_flight: InFlight,
) -> Result<PublishReceipt, PublishError> {
    let InFlight {
        ack,
        subject,
        size,
        sent_at,
    } = in_flight;
    let result = tokio::select! {
        ack = ack.into_future() => ack,
        () = shared.violations.refused(&subject, sent_at) => {
            return Err(PublishError::with_detail(
                PublishErrorKind::PermissionDenied,
                format!("the server refused publishing to {subject}"),
            ));
        }
    };
    match result {
        Ok(ack) => Ok(PublishReceipt {
            stream: ack.stream,
            seq: ack.sequence,
            duplicate: ack.duplicate,
        }),
        Err(err) => Err(refine(shared, map_nats_error(shared, err, size), &subject).await),
    }
}

/// Adds what the ack error alone cannot tell: a stream's own size limit.
async fn refine(shared: &Shared, err: PublishError, subject: &str) -> PublishError {
    if !matches!(err.kind(), PublishErrorKind::PayloadTooLarge { max: 0, .. }) {
        return err;
    }
    let PublishErrorKind::PayloadTooLarge { size, .. } = *err.kind() else {
        return err;
    };
    let max = stream_limit(shared, subject).await.unwrap_or(0);
    PublishError::with_detail(
        PublishErrorKind::PayloadTooLarge { size, max },
        "larger than the stream's max_message_size",
    )
}

async fn stream_limit(shared: &Shared, subject: &str) -> Option<usize> {
    let names: super::wire::WireStreamNames = shared
        .api
        .request("STREAM.NAMES", &serde_json::json!({ "subject": subject }))
        .await
        .ok()?;
    let name = names.streams?.into_iter().next()?;
    let info = super::provision::wire_info(shared, &name).await.ok()?;
    info.to_info().config.max_message_size
}

fn map_nats_error(
    shared: &Shared,
    err: async_nats::jetstream::context::PublishError,
    size: usize,
) -> PublishError {
    let text = err.to_string();
    let source = std::error::Error::source(&err)
        .map(ToString::to_string)
        .unwrap_or_default();
    let kind = match err.kind() {
        NatsKind::StreamNotFound => PublishErrorKind::NoStream,
        NatsKind::WrongLastSequence => match parse_actual_seq(&source) {
            Some(actual) => PublishErrorKind::WrongLastSequence { actual },
            None => PublishErrorKind::Rejected,
        },
        NatsKind::MaxPayloadExceeded => PublishErrorKind::PayloadTooLarge {
            size,
            max: shared.client.server_info().max_payload,
        },
        NatsKind::TimedOut => {
            if shared.client.connection_state() == async_nats::connection::State::Connected {
                PublishErrorKind::TimedOut
            } else {
                PublishErrorKind::BrokerUnavailable
            }
        }
        NatsKind::BrokenPipe => PublishErrorKind::BrokerUnavailable,
        NatsKind::Other if source.contains(&format!("error code {}", code::MESSAGE_TOO_LARGE)) => {
            PublishErrorKind::PayloadTooLarge { size, max: 0 }
        }
        _ => PublishErrorKind::Rejected,
    };
    PublishError::with_detail(kind, format!("{text}: {source}"))
}

/// The actual sequence from "wrong last sequence: 5 (code 400, ...)".
fn parse_actual_seq(text: &str) -> Option<u64> {
    let rest = &text[text.find("wrong last sequence: ")? + "wrong last sequence: ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Headers and payload as the server counts them against `max_payload`.
fn wire_size(headers: &HeaderMap, payload: usize) -> usize {
    if headers.is_empty() {
        return payload;
    }
    let lines: usize = headers
        .iter()
        .map(|(name, values)| {
            values
                .iter()
                .map(|v| name.to_string().len() + 2 + v.as_str().len() + 2)
                .sum::<usize>()
        })
        .sum();
    "NATS/1.0\r\n".len() + lines + 2 + payload
}

/// A concrete subject: tokens non-empty, no wildcards or whitespace.
fn valid_publish_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.split('.').all(|token| {
            !token.is_empty()
                && token != "*"
                && token != ">"
                && !token.chars().any(char::is_whitespace)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_actual_sequence_from_the_server_error() {
        assert_eq!(
            parse_actual_seq("wrong last sequence: 17 (code 400, error code 10071)"),
            Some(17)
        );
        assert_eq!(parse_actual_seq("wrong last sequence"), None);
    }

    #[test]
    fn publish_subjects_have_no_wildcards() {
        assert!(valid_publish_subject("events.user.registered.u-1"));
        assert!(!valid_publish_subject("events.*"));
        assert!(!valid_publish_subject("events.>"));
        assert!(!valid_publish_subject("events..x"));
        assert!(!valid_publish_subject(""));
    }
}

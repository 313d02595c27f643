//! What a failed publish attempt means: final, safe to send again, or lost
//! in flight; and whether "no responders" means that no stream captures the
//! subject or that JetStream is not serving it right now.

use async_nats::jetstream::context::{PublishError as NatsError, PublishErrorKind as NatsKind};

use super::{
    Shared,
    api::{ApiFailure, code},
    wire::WireStreamNames,
};
use crate::error::{PublishError, PublishErrorKind};

/// How one publish attempt failed.
#[derive(Debug)]
pub(crate) enum AttemptFailure {
    /// The server answered "no responders": nothing stored the message, so
    /// sending it again is always safe. Either no stream captures the subject
    /// or JetStream is stopping or still recovering its streams.
    NoResponders,
    /// The acknowledgement did not arrive in time or the connection broke:
    /// the message may or may not be stored.
    AckLost(PublishError),
    /// Sending again cannot help.
    Final(PublishError),
}

/// Classifies an error from sending or from the acknowledgement.
pub(crate) fn classify(shared: &Shared, err: NatsError, size: usize) -> AttemptFailure {
    let text = err.to_string();
    let source = std::error::Error::source(&err)
        .map(ToString::to_string)
        .unwrap_or_default();
    let detail = format!("{text}: {source}");
    let kind = match err.kind() {
        NatsKind::StreamNotFound => return AttemptFailure::NoResponders,
        NatsKind::TimedOut | NatsKind::BrokenPipe => {
            return AttemptFailure::AckLost(PublishError::with_detail(unanswered(shared), detail));
        }
        NatsKind::WrongLastSequence => match parse_actual_seq(&source) {
            Some(actual) => PublishErrorKind::WrongLastSequence { actual },
            None => PublishErrorKind::Rejected,
        },
        NatsKind::MaxPayloadExceeded => PublishErrorKind::PayloadTooLarge {
            size,
            max: shared.client.server_info().max_payload,
        },
        NatsKind::Other if source.contains(&format!("error code {}", code::MESSAGE_TOO_LARGE)) => {
            PublishErrorKind::PayloadTooLarge { size, max: 0 }
        }
        _ => PublishErrorKind::Rejected,
    };
    AttemptFailure::Final(PublishError::with_detail(kind, detail))
}

/// `TimedOut` while connected (the server is slow), else `BrokerUnavailable`.
pub(crate) fn unanswered(shared: &Shared) -> PublishErrorKind {
    if shared.client.connection_state() == async_nats::connection::State::Connected {
        PublishErrorKind::TimedOut
    } else {
        PublishErrorKind::BrokerUnavailable
    }
}

/// What JetStream says about the streams capturing a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// A stream captures it: "no responders" was JetStream not serving yet.
    Captured,
    /// JetStream answered and no stream captures it.
    Uncaptured,
    /// JetStream did not answer; the kind to report if it never does.
    Unknown(PublishErrorKind, String),
}

/// Asks `STREAM.NAMES` (served by 2.9) which streams capture `subject`.
pub(crate) async fn route(shared: &Shared, subject: &str) -> Route {
    let answer = shared
        .api
        .request::<WireStreamNames>("STREAM.NAMES", &serde_json::json!({ "subject": subject }))
        .await;
    match answer {
        Ok(names) if names.streams.as_ref().is_none_or(Vec::is_empty) => Route::Uncaptured,
        Ok(_) => Route::Captured,
        Err(ApiFailure::TimedOut) => {
            Route::Unknown(PublishErrorKind::TimedOut, ApiFailure::TimedOut.describe())
        }
        Err(failure) => Route::Unknown(PublishErrorKind::BrokerUnavailable, failure.describe()),
    }
}

/// Adds what the ack error alone cannot tell: a stream's own size limit.
pub(crate) async fn refine(shared: &Shared, err: PublishError, subject: &str) -> PublishError {
    let PublishErrorKind::PayloadTooLarge { size, max: 0 } = *err.kind() else {
        return err;
    };
    let max = stream_limit(shared, subject).await.unwrap_or(0);
    PublishError::with_detail(
        PublishErrorKind::PayloadTooLarge { size, max },
        "larger than the stream's max_message_size",
    )
}

async fn stream_limit(shared: &Shared, subject: &str) -> Option<usize> {
    let names: WireStreamNames = shared
        .api
        .request("STREAM.NAMES", &serde_json::json!({ "subject": subject }))
        .await
        .ok()?;
    let name = names.streams?.into_iter().next()?;
    let info = super::provision::wire_info(shared, &name).await.ok()?;
    info.to_info().config.max_message_size
}

/// The actual sequence from "wrong last sequence: 5 (code 400, ...)".
fn parse_actual_seq(text: &str) -> Option<u64> {
    let rest = &text[text.find("wrong last sequence: ")? + "wrong last sequence: ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
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
}

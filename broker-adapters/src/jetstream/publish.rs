//! Publishing with acknowledgements, bounded retries and a pipelined window.
//!
//! # Bounded waits
//! Each acknowledgement is awaited until `publish_timeout` after its message
//! was *sent*. (async-nats starts an ack's timer only when the ack is first
//! awaited; a window whose acks were all lost with a connection would then
//! wait one full timeout per message, one after another.)
//!
//! # What is sent again
//! Every message of a call gets *patience*: `publish_timeout` from its first
//! attempt. A message is sent again (same headers, so the same msg id) when:
//! - the server answered "no responders", so nothing stored it. On a graceful
//!   stop nats-server shuts JetStream down before it drops clients, so this
//!   is what publishes see during a restart. `STREAM.NAMES` decides: when
//!   JetStream answers that no stream captures the subject the publish fails
//!   with `NoStream`; otherwise it is sent again until its patience runs out,
//!   then fails with `BrokerUnavailable` (or `TimedOut`).
//! - its acknowledgement was lost (timeout, broken connection), it has a msg
//!   id, and `publish_retries` allows; each retry renews the patience. The
//!   stream's duplicate window makes this safe. Without a msg id a lost ack
//!   is reported, as sending again could store the message twice.
//!
//! Once one message of a call has run out of patience the broker is taken to
//! be down: later messages of the call get one attempt without waiting for
//! the connection, so a large batch fails in about one timeout, not one per
//! message. Any acknowledged message ends that.

use std::{
    collections::VecDeque,
    future::{Future, poll_fn},
    pin::pin,
    sync::atomic::Ordering,
    task::Poll,
    time::Duration,
};

use async_nats::{
    HeaderMap,
    jetstream::{context::PublishAckFuture, message::PublishMessage},
};
use tokio::time::Instant;

use std::future::IntoFuture;

use backbone_core::subject::valid_publish_subject;

use super::{
    Shared,
    api::wait_connected,
    publish_errors::{AttemptFailure, Route, classify, refine, route, unanswered},
};
use crate::{
    error::{PublishError, PublishErrorKind},
    message::{EXPECTED_LAST_SUBJECT_SEQ_HEADER, MSG_ID_HEADER, OutboundMessage, PublishReceipt},
};

/// The pause before sending again to a JetStream that is not serving yet.
const RECOVERY_PAUSE: Duration = Duration::from_millis(100);

/// What a message may still spend on sending again.
#[derive(Debug, Clone, Copy)]
struct Budget {
    /// Resends left after a lost acknowledgement.
    retries_left: u32,
    /// Until when waiting for the connection and for JetStream is allowed.
    patience_until: Instant,
}

/// A publish sent and awaiting its acknowledgement.
struct InFlight {
    index: usize,
    ack: PublishAckFuture,
    size: usize,
    /// For matching permission violations reported after the send.
    sent_at: std::time::Instant,
    ack_deadline: Instant,
    budget: Budget,
}

/// Publishes one message.
pub(crate) async fn publish(
    shared: &Shared,
    message: OutboundMessage,
) -> Result<PublishReceipt, PublishError> {
    publish_batch(shared, vec![message])
        .await
        .pop()
        .unwrap_or_else(|| Err(PublishError::new(PublishErrorKind::Rejected)))
}

/// Publishes in input order with up to `max_in_flight` acks outstanding.
pub(crate) async fn publish_batch(
    shared: &Shared,
    messages: Vec<OutboundMessage>,
) -> Vec<Result<PublishReceipt, PublishError>> {
    let mut pipeline = Pipeline {
        shared,
        messages: &messages,
        results: (0..messages.len()).map(|_| None).collect(),
        window: VecDeque::new(),
        broker_down: false,
        // Read once per call: `server_info` clones the whole INFO.
        max_payload: shared.client.server_info().max_payload,
    };
    pipeline.run().await;
    pipeline
        .results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(PublishError::new(PublishErrorKind::Rejected))))
        .collect()
}

struct Pipeline<'a> {
    shared: &'a Shared,
    messages: &'a [OutboundMessage],
    results: Vec<Option<Result<PublishReceipt, PublishError>>>,
    /// In send order, except that a resent message goes to the front.
    window: VecDeque<InFlight>,
    /// A message ran out of patience and nothing was acknowledged since.
    broker_down: bool,
    /// The server's `max_payload` when the call started.
    max_payload: usize,
}

impl Pipeline<'_> {
    async fn run(&mut self) {
        let capacity = self.shared.options.max_in_flight.max(1);
        let mut next = 0;
        loop {
            while self.window.len() < capacity && next < self.messages.len() {
                let budget = self.fresh_budget();
                self.start(next, budget, false).await;
                next += 1;
            }
            let Some(in_flight) = self.window.pop_front() else {
                break;
            };
            self.settle(in_flight).await;
        }
    }

    fn fresh_budget(&self) -> Budget {
        Budget {
            retries_left: self.shared.options.publish_retries,
            patience_until: if self.broker_down {
                Instant::now()
            } else {
                Instant::now() + self.shared.options.publish_timeout
            },
        }
    }

    /// Sends message `index`; a resend goes to the front of the window so
    /// results are still settled in input order.
    async fn start(&mut self, index: usize, budget: Budget, resend: bool) {
        let sent = send(
            self.shared,
            &self.messages[index],
            index,
            budget,
            self.max_payload,
        )
        .await;
        match sent {
            Ok(in_flight) if resend => self.window.push_front(in_flight),
            Ok(in_flight) => self.window.push_back(in_flight),
            Err(err) => self.fail(index, err),
        }
    }

    fn fail(&mut self, index: usize, err: PublishError) {
        if matches!(
            err.kind(),
            PublishErrorKind::BrokerUnavailable | PublishErrorKind::TimedOut
        ) {
            self.broker_down = true;
        }
        self.results[index] = Some(Err(err));
    }

    async fn settle(&mut self, in_flight: InFlight) {
        let (index, mut budget) = (in_flight.index, in_flight.budget);
        let message = &self.messages[index];
        let failure = match acknowledged(self.shared, &message.subject, in_flight).await {
            Ok(receipt) => {
                self.broker_down = false;
                self.results[index] = Some(Ok(receipt));
                return;
            }
            Err(failure) => failure,
        };
        let closed = self.shared.closed.load(Ordering::Acquire);
        match failure {
            AttemptFailure::Final(err) => self.fail(index, err),
            AttemptFailure::NoResponders => match self.route(&message.subject, budget).await {
                Route::Uncaptured => self.fail(
                    index,
                    PublishError::with_detail(
                        PublishErrorKind::NoStream,
                        format!("no stream captures {}", message.subject),
                    ),
                ),
                _ if !closed && Instant::now() < budget.patience_until => {
                    let pause = budget
                        .patience_until
                        .saturating_duration_since(Instant::now())
                        .min(RECOVERY_PAUSE);
                    tokio::time::sleep(pause).await;
                    self.start(index, budget, true).await;
                }
                route => {
                    let (kind, why) = match route {
                        Route::Unknown(kind, why) => (kind, why),
                        _ => (
                            PublishErrorKind::BrokerUnavailable,
                            "a stream captures the subject but did not answer".into(),
                        ),
                    };
                    let detail = format!(
                        "JetStream did not take the message within {:?}: {why}",
                        self.shared.options.publish_timeout
                    );
                    self.fail(index, PublishError::with_detail(kind, detail));
                }
            },
            AttemptFailure::AckLost(err) => {
                // Once the broker is taken to be down a lost ack is not
                // retried: each retry could wait a full timeout again.
                let retry = !closed
                    && !self.broker_down
                    && message.dedup_id().is_some()
                    && budget.retries_left > 0;
                if retry {
                    budget.retries_left -= 1;
                    budget.patience_until = self.fresh_budget().patience_until;
                    tracing::debug!(subject = %message.subject, "acknowledgement lost: sending again with the same id");
                    self.start(index, budget, true).await;
                } else {
                    self.fail(index, err);
                }
            }
        }
    }
}

impl Pipeline<'_> {
    /// Asks JetStream about the subject, unless the message is out of
    /// patience and the broker already taken to be down: then every check
    /// could wait a full request timeout.
    async fn route(&self, subject: &str, budget: Budget) -> Route {
        if self.broker_down && Instant::now() >= budget.patience_until {
            return Route::Unknown(
                PublishErrorKind::BrokerUnavailable,
                "JetStream is not serving; an earlier message ran out of patience".into(),
            );
        }
        route(self.shared, subject).await
    }
}

/// Validates, then sends without waiting for the acknowledgement.
async fn send(
    shared: &Shared,
    message: &OutboundMessage,
    index: usize,
    budget: Budget,
    max: usize,
) -> Result<InFlight, PublishError> {
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
    let headers = nats_headers(message);
    let size = wire_size(&headers, message.payload.len());
    if max > 0 && size > max {
        return Err(PublishError::with_detail(
            PublishErrorKind::PayloadTooLarge { size, max },
            "larger than the server's max_payload",
        ));
    }
    if !wait_connected(&shared.client, budget.patience_until).await {
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
    let sent_at = std::time::Instant::now();
    let ack_deadline = Instant::now() + shared.options.publish_timeout;
    let publish = PublishMessage::build()
        .payload(message.payload.clone())
        .headers(headers);
    // Bounded too: with every ack permit taken, sending waits for one. The
    // client almost always takes the message at once, so the timer is only
    // armed when it does not.
    let mut sending = pin!(
        shared
            .context
            .send_publish(message.subject.clone(), publish)
    );
    let sent = match poll_once(sending.as_mut()).await {
        Some(sent) => Ok(sent),
        None => tokio::time::timeout_at(ack_deadline, sending).await,
    };
    let ack = match sent {
        Ok(Ok(ack)) => ack,
        Ok(Err(err)) => {
            return Err(match classify(shared, err, size) {
                AttemptFailure::Final(err) | AttemptFailure::AckLost(err) => err,
                AttemptFailure::NoResponders => PublishError::with_detail(
                    PublishErrorKind::Rejected,
                    "no responders before the message was sent",
                ),
            });
        }
        Err(_) => {
            return Err(PublishError::with_detail(
                unanswered(shared),
                "the client did not take the message within the publish timeout",
            ));
        }
    };
    Ok(InFlight {
        index,
        ack,
        size,
        sent_at,
        ack_deadline,
        budget,
    })
}

/// Waits for the acknowledgement until the attempt's deadline, or a
/// permission violation for the subject.
async fn acknowledged(
    shared: &Shared,
    subject: &str,
    in_flight: InFlight,
) -> Result<PublishReceipt, AttemptFailure> {
    let InFlight {
        ack,
        size,
        sent_at,
        ack_deadline,
        ..
    } = in_flight;
    let mut ack = ack.into_future();
    // With a full window the oldest ack has usually arrived by the time it
    // is awaited; only a pending one needs a timer and the violation watch.
    let ready = poll_once(ack.as_mut()).await;
    let result = match ready {
        Some(ack) => Ok(ack),
        None => wait_for_ack(shared, subject, ack, sent_at, ack_deadline).await?,
    };
    match result {
        Ok(Ok(ack)) => Ok(PublishReceipt {
            stream: ack.stream,
            seq: ack.sequence,
            duplicate: ack.duplicate,
        }),
        Ok(Err(err)) => match classify(shared, err, size) {
            AttemptFailure::Final(err) => {
                Err(AttemptFailure::Final(refine(shared, err, subject).await))
            }
            other => Err(other),
        },
        Err(_) => Err(AttemptFailure::AckLost(PublishError::with_detail(
            unanswered(shared),
            format!(
                "no acknowledgement within {:?}",
                shared.options.publish_timeout
            ),
        ))),
    }
}

/// What async-nats' acknowledgement future yields.
type AckResult = Result<
    async_nats::jetstream::publish::PublishAck,
    async_nats::jetstream::context::PublishError,
>;

/// Waits for a pending acknowledgement until the attempt's deadline, or
/// until the server reports a permission violation for the subject.
async fn wait_for_ack(
    shared: &Shared,
    subject: &str,
    ack: std::pin::Pin<Box<dyn Future<Output = AckResult> + Send>>,
    sent_at: std::time::Instant,
    ack_deadline: Instant,
) -> Result<Result<AckResult, tokio::time::error::Elapsed>, AttemptFailure> {
    tokio::select! {
        ack = tokio::time::timeout_at(ack_deadline, ack) => Ok(ack),
        () = shared.violations.refused(subject, sent_at) => {
            Err(AttemptFailure::Final(PublishError::with_detail(
                PublishErrorKind::PermissionDenied,
                format!("the server refused publishing to {subject}"),
            )))
        }
    }
}

/// Polls `future` once with the task's own waker: its output if ready.
async fn poll_once<F: Future + ?Sized>(mut future: std::pin::Pin<&mut F>) -> Option<F::Output> {
    poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// The message's stored headers (with the msg id and expected sequence) as
/// async-nats sends them, built without copying the message's headers first.
fn nats_headers(message: &OutboundMessage) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in message.headers.iter() {
        headers.append(name, value);
    }
    if let Some(id) = &message.msg_id
        && message.headers.get(MSG_ID_HEADER).is_none()
    {
        headers.append(MSG_ID_HEADER, id.as_str());
    }
    if let Some(seq) = message.expected_last_subject_seq {
        headers.insert(EXPECTED_LAST_SUBJECT_SEQ_HEADER, seq.to_string().as_str());
    }
    headers
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
                .map(|v| AsRef::<str>::as_ref(name).len() + 2 + v.as_str().len() + 2)
                .sum::<usize>()
        })
        .sum();
    "NATS/1.0\r\n".len() + lines + 2 + payload
}

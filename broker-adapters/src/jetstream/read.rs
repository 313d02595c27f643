//! Reading the log: single messages and ordered range reads.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use futures::stream;
use serde_json::{Value, json};

use super::{
    Shared,
    api::code,
    connect::{DeliveryLink, delivery_link},
    consumer::WireConsumerInfo,
    errors::read_error,
    provision::{valid_pattern, wire_info},
    pull::fetch_available,
    recover::next_matching,
    wire::{WireMsgGet, duration_nanos, format_time},
};
use crate::{
    error::{ReadError, ReadErrorKind},
    message::StoredMessage,
    stream::{MessageStream, ReadRequest, ReadStart},
};

/// Messages requested per pull of an ordered read.
const READ_BATCH: usize = 1000;
/// How long one pull of a following read waits for new messages.
const FOLLOW_WAIT: Duration = Duration::from_secs(5);
/// An abandoned read's consumer is removed by the server after this.
const READ_CONSUMER_IDLE: Duration = Duration::from_secs(30);
/// Consecutive failed pulls before a read gives up with an error.
const MAX_READ_FAILURES: u32 = 3;
/// The pause between pulls of a read whose consumer is behind its bound.
const CATCH_UP_PAUSE: Duration = Duration::from_millis(50);

/// The message `seq`, through `STREAM.MSG.GET`, which works whether or not
/// the stream allows direct gets and returns headers exactly as stored.
pub(crate) async fn get(
    shared: &Shared,
    stream: &str,
    seq: u64,
) -> Result<StoredMessage, ReadError> {
    if seq == 0 {
        // Sequences start at 1; the server calls 0 a bad request.
        wire_info(shared, stream).await.map_err(read_error)?;
        return Err(ReadError::with_detail(
            ReadErrorKind::MessageNotFound,
            "stream sequences start at 1",
        ));
    }
    msg_get(shared, stream, json!({ "seq": seq })).await
}

/// The last message on `subject`, or `None`.
pub(crate) async fn last_on_subject(
    shared: &Shared,
    stream: &str,
    subject: &str,
) -> Result<Option<StoredMessage>, ReadError> {
    match msg_get(shared, stream, json!({ "last_by_subj": subject })).await {
        Ok(message) => Ok(Some(message)),
        Err(err) if err.kind() == &ReadErrorKind::MessageNotFound => Ok(None),
        Err(err) => Err(err),
    }
}

async fn msg_get(shared: &Shared, stream: &str, body: Value) -> Result<StoredMessage, ReadError> {
    wire_info(shared, stream).await.map_err(read_error)?;
    let answer: WireMsgGet = shared
        .api
        .request(&format!("STREAM.MSG.GET.{stream}"), &body)
        .await
        .map_err(read_error)?;
    answer
        .message
        .into_stored(stream)
        .map_err(|why| ReadError::with_detail(ReadErrorKind::Corrupted, why))
}

/// An ordered read through an ephemeral pull consumer (no acks, in memory),
/// recreated from the next sequence if it is lost or skips.
pub(crate) async fn read(
    shared: &Arc<Shared>,
    stream: &str,
    request: ReadRequest,
) -> Result<MessageStream, ReadError> {
    let invalid = |d: String| ReadError::with_detail(ReadErrorKind::InvalidRequest, d);
    if let Some(filter) = &request.filter
        && !valid_pattern(filter)
    {
        return Err(invalid(format!("invalid filter {filter:?}")));
    }
    if let (ReadStart::Sequence(start), Some(end)) = (request.start, request.end_seq)
        && end < start
    {
        return Err(invalid(format!("end {end} is before start {start}")));
    }
    let info = wire_info(shared, stream).await.map_err(read_error)?;
    let last_at_call = info.last_seq();
    let bound = match (request.follow, request.end_seq) {
        (true, end) => end,
        (false, Some(end)) => Some(end.min(last_at_call)),
        (false, None) => Some(last_at_call),
    };
    let mut reader = Reader {
        shared: shared.clone(),
        stream: stream.to_owned(),
        filter: request.filter.clone(),
        start: request.start,
        bound,
        end_time: request.end_time,
        follow: request.follow,
        consumer: None,
        link: None,
        last_consumer_seq: 0,
        buffer: VecDeque::new(),
        failures: 0,
        catch_up_until: None,
        done: bound == Some(0),
    };
    if !reader.done {
        reader.open().await?;
    }
    Ok(Box::pin(stream::unfold(reader, |mut reader| async move {
        reader.next().await.map(|item| (item, reader))
    })))
}

struct Reader {
    shared: Arc<Shared>,
    stream: String,
    filter: Option<String>,
    start: ReadStart,
    bound: Option<u64>,
    end_time: Option<std::time::SystemTime>,
    follow: bool,
    consumer: Option<String>,
    /// The read's own delivery connection, opened with its consumer.
    link: Option<DeliveryLink>,
    last_consumer_seq: u64,
    /// Messages to hand out, each with how many matching messages the
    /// server had left after it.
    buffer: VecDeque<(StoredMessage, u64)>,
    failures: u32,
    /// Until when an unfiltered read short of its bound waits for its
    /// consumer to catch up (see [`Reader::short_of_bound`]).
    catch_up_until: Option<tokio::time::Instant>,
    done: bool,
}

impl Reader {
    async fn next(&mut self) -> Option<Result<StoredMessage, ReadError>> {
        loop {
            if let Some((message, pending)) = self.buffer.pop_front() {
                if let Some(item) = self.accept(message, pending) {
                    return Some(Ok(item));
                }
                continue;
            }
            if self.done {
                self.close();
                return None;
            }
            if let Err(err) = self.fill().await {
                self.done = true;
                self.close();
                return Some(Err(err));
            }
        }
    }

    /// Returns the message if it belongs to the read; ends the read past
    /// its bounds.
    fn accept(&mut self, message: StoredMessage, pending: u64) -> Option<StoredMessage> {
        if self.done {
            return None;
        }
        let seq = message.seq;
        if self.bound.is_some_and(|b| seq > b) || self.end_time.is_some_and(|t| message.time > t) {
            self.finish();
            return None;
        }
        self.start = ReadStart::Sequence(seq + 1);
        if self.bound == Some(seq) || (!self.follow && pending == 0 && !self.short_of_bound()) {
            self.finish();
        }
        Some(message)
    }

    /// Whether an unfiltered bounded read has not reached its bound yet.
    ///
    /// In a cluster the read's consumer may live on a replica still
    /// catching up, which reports nothing pending although the stream
    /// leader, which set the bound, holds more; ending there would silently
    /// cut the read short. (A filtered read cannot tell a lagging replica
    /// from the last matching message, so it trusts the consumer.)
    fn short_of_bound(&self) -> bool {
        let next = match self.start {
            ReadStart::First => 1,
            ReadStart::Sequence(seq) => seq,
            ReadStart::Time(_) => return false,
        };
        self.filter.is_none() && self.bound.is_some_and(|bound| next <= bound)
    }

    /// Starts or continues the bounded wait for a lagging consumer: true
    /// while it lasts (one request timeout from the first empty pull).
    fn still_catching_up(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let until = *self
            .catch_up_until
            .get_or_insert(now + self.shared.options.request_timeout);
        now < until
    }

    fn finish(&mut self) {
        self.done = true;
        self.buffer.clear();
    }

    async fn fill(&mut self) -> Result<(), ReadError> {
        if self.consumer.is_none() {
            self.open().await?;
            if self.done {
                return Ok(());
            }
        }
        let Some(name) = self.consumer.clone() else {
            return Ok(());
        };
        let wait = if self.follow {
            FOLLOW_WAIT
        } else {
            Duration::ZERO
        };
        let Some(link) = self.link.clone() else {
            return Ok(());
        };
        let pulled =
            fetch_available(&self.shared, &link, &self.stream, &name, READ_BATCH, wait).await;
        let lost = match pulled {
            Ok(pull) => {
                self.failures = 0;
                if pull.pulled.is_empty() && !pull.interrupted && !self.follow {
                    if self.short_of_bound() {
                        if self.still_catching_up() {
                            tokio::time::sleep(CATCH_UP_PAUSE).await;
                            return Ok(());
                        }
                        return self.end_short_of_bound().await;
                    }
                    // Nothing more is available: the read is complete.
                    self.finish();
                    return Ok(());
                }
                self.catch_up_until = None;
                let mut gap = pull.interrupted;
                let mut next = self.next_seq();
                for p in pull.pulled {
                    if p.meta.consumer_seq != self.last_consumer_seq + 1 {
                        gap = true;
                        break;
                    }
                    self.last_consumer_seq = p.meta.consumer_seq;
                    next = p.message.seq + 1;
                    self.buffer.push_back((p.message, p.meta.pending));
                }
                if pull.interrupted {
                    self.take_unparseable(next).await?;
                }
                gap
            }
            Err(err) if err.kind() == &crate::ConsumerErrorKind::ConsumerNotFound => true,
            Err(err) => {
                self.failures += 1;
                if self.failures >= MAX_READ_FAILURES {
                    return Err(ReadError::with_detail(
                        match err.kind() {
                            crate::ConsumerErrorKind::TimedOut => ReadErrorKind::TimedOut,
                            _ => ReadErrorKind::BrokerUnavailable,
                        },
                        err.to_string(),
                    ));
                }
                true
            }
        };
        if lost {
            // Restart after the last message handed out, as an ordered
            // consumer does.
            self.close();
        }
        Ok(())
    }

    /// The first sequence not yet handed out or buffered.
    fn next_seq(&self) -> u64 {
        match self.start {
            ReadStart::First | ReadStart::Time(_) => 1,
            ReadStart::Sequence(seq) => seq,
        }
        .max(self.buffer.back().map_or(0, |(m, _)| m.seq + 1))
    }

    /// After the delivery connection dropped: if the next message of the
    /// read, from `next` on, has a header block the client cannot parse
    /// (which is what drops it), buffers it as read from the stream, so
    /// the read hands it out in its place and goes on after it instead of
    /// receiving it, and dropping, again.
    async fn take_unparseable(&mut self, next: u64) -> Result<(), ReadError> {
        let filters: Vec<String> = self.filter.iter().cloned().collect();
        let found = next_matching(&self.shared, &self.stream, &filters, next)
            .await
            .map_err(|why| ReadError::with_detail(ReadErrorKind::BrokerUnavailable, why))?;
        if let Some(message) = found
            && message.malformed_headers.is_some()
            && self.bound.is_none_or(|b| message.seq <= b)
        {
            self.buffer.push_back((message, 1));
        }
        Ok(())
    }

    /// An unfiltered bounded read whose consumer has nothing more although
    /// the bound is not reached: complete if the stream holds nothing up to
    /// the bound (the last messages were deleted), else an error, never a
    /// silent short end.
    async fn end_short_of_bound(&mut self) -> Result<(), ReadError> {
        let next = self.next_seq();
        let found = next_matching(&self.shared, &self.stream, &[], next)
            .await
            .map_err(|why| ReadError::with_detail(ReadErrorKind::BrokerUnavailable, why))?;
        match found {
            Some(message) if self.bound.is_some_and(|b| message.seq <= b) => {
                Err(ReadError::with_detail(
                    ReadErrorKind::Incomplete,
                    format!(
                        "the server stopped delivering at sequence {next} before the read's end {}",
                        self.bound.unwrap_or_default()
                    ),
                ))
            }
            _ => {
                self.finish();
                Ok(())
            }
        }
    }

    /// Creates the ephemeral consumer from the current start.
    async fn open(&mut self) -> Result<(), ReadError> {
        let mut config = json!({
            "ack_policy": "none",
            "replay_policy": "instant",
            "mem_storage": true,
            "num_replicas": 1,
            "max_deliver": 1,
            "inactive_threshold": duration_nanos(READ_CONSUMER_IDLE),
        });
        match self.start {
            ReadStart::First => config["deliver_policy"] = json!("all"),
            ReadStart::Sequence(seq) => {
                config["deliver_policy"] = json!("by_start_sequence");
                config["opt_start_seq"] = json!(seq.max(1));
            }
            ReadStart::Time(time) => {
                config["deliver_policy"] = json!("by_start_time");
                config["opt_start_time"] = json!(format_time(time));
            }
        }
        if let Some(filter) = &self.filter {
            config["filter_subject"] = json!(filter);
        }
        let created: WireConsumerInfo = self
            .shared
            .api
            .request(
                &format!("CONSUMER.CREATE.{}", self.stream),
                &json!({ "stream_name": self.stream, "config": config }),
            )
            .await
            .map_err(|failure| {
                if failure.code() == Some(code::STREAM_NOT_FOUND) {
                    read_error(failure)
                } else {
                    let err = read_error(failure);
                    let kind = match err.kind() {
                        ReadErrorKind::TimedOut | ReadErrorKind::BrokerUnavailable => {
                            err.kind().clone()
                        }
                        _ => ReadErrorKind::InvalidRequest,
                    };
                    err.map_kind(|_| kind)
                }
            })?;
        if self.link.is_none() {
            let link = delivery_link(&self.shared).await.map_err(|e| {
                ReadError::with_detail(
                    ReadErrorKind::BrokerUnavailable,
                    format!("opening the delivery connection: {e}"),
                )
            })?;
            self.link = Some(link);
        }
        self.consumer = Some(created.name().to_owned());
        self.last_consumer_seq = 0;
        if created.num_pending == 0 && !self.follow && !self.short_of_bound() {
            self.finish();
        }
        Ok(())
    }

    /// Deletes the consumer in the background; the server would drop it
    /// after its idle threshold anyway.
    fn close(&mut self) {
        let Some(name) = self.consumer.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = self.shared.clone();
        let subject = format!("CONSUMER.DELETE.{}.{name}", self.stream);
        runtime.spawn(async move {
            let _ = shared.api.request::<Value>(&subject, &Value::Null).await;
        });
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.close();
    }
}

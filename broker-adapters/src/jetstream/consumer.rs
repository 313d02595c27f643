//! Durable pull consumers: create-or-bind, fetch, settle, exhausted messages.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Shared,
    api::{ApiFailure, code},
    connect::{DeliveryLink, delivery_link},
    delivery_counts::DeliveryCounts,
    errors::consumer_error,
    exhausted::watch_exhausted,
    provision::{valid_name, valid_pattern},
    pull::{Pull, fetch_available},
    recover::{ack_subject, stored_range},
    version::ServerVersion,
    wire::{duration_nanos, format_time},
};
use crate::{
    consumer::{
        AckKind, Acker, Consumer, ConsumerConfig, ConsumerInfo, DeliverPolicy, Delivery, Exhausted,
    },
    error::{AckError, AckErrorKind, ConsumerError, ConsumerErrorKind},
    message::StoredMessage,
};

#[derive(Debug, Clone, Copy, Default, Deserialize)]
struct WireSeqPair {
    #[serde(default)]
    stream_seq: u64,
    #[serde(default)]
    consumer_seq: u64,
}

/// A consumer info answer.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct WireConsumerInfo {
    stream_name: String,
    name: String,
    pub(crate) config: Value,
    #[serde(default)]
    delivered: WireSeqPair,
    #[serde(default)]
    ack_floor: WireSeqPair,
    #[serde(default)]
    num_ack_pending: u64,
    #[serde(default)]
    num_redelivered: u64,
    #[serde(default)]
    pub(crate) num_pending: u64,
}

impl WireConsumerInfo {
    pub(crate) fn to_info(&self) -> ConsumerInfo {
        ConsumerInfo {
            stream: self.stream_name.clone(),
            name: self.name.clone(),
            delivered_stream_seq: self.delivered.stream_seq,
            ack_floor_stream_seq: self.ack_floor.stream_seq,
            num_pending: self.num_pending,
            num_ack_pending: self.num_ack_pending,
            num_redelivered: self.num_redelivered,
        }
    }

    pub(crate) fn is_durable(&self) -> bool {
        self.config
            .get("durable_name")
            .and_then(Value::as_str)
            .is_some_and(|d| !d.is_empty())
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

/// Checks what JetStream would reject late or obscurely.
fn validate(config: &ConsumerConfig, version: ServerVersion) -> Result<(), ConsumerError> {
    let invalid = |d: String| ConsumerError::with_detail(ConsumerErrorKind::InvalidConfig, d);
    if !valid_name(&config.durable_name) {
        return Err(invalid(format!(
            "durable name {:?} must be non-empty letters, digits, '-' or '_'",
            config.durable_name
        )));
    }
    if let Some(bad) = config.filter_subjects.iter().find(|f| !valid_pattern(f)) {
        return Err(invalid(format!("invalid filter subject {bad:?}")));
    }
    if config.filter_subjects.len() > 1 && !version.supports_multiple_filters() {
        return Err(ConsumerError::with_detail(
            ConsumerErrorKind::Unsupported,
            format!(
                "{} filter subjects need nats-server {} or newer; the server is {version}",
                config.filter_subjects.len(),
                ServerVersion::MULTIPLE_FILTERS
            ),
        ));
    }
    if !config.backoff.is_empty() {
        let needed = config.backoff.len() + 1;
        if config.max_deliver.is_none_or(|m| (m as usize) < needed) {
            return Err(invalid(format!(
                "a backoff of {} delays needs max_deliver of at least {needed}",
                config.backoff.len()
            )));
        }
    }
    if config.max_ack_pending == 0 || config.ack_wait.is_zero() {
        return Err(invalid(
            "max_ack_pending and ack_wait must be positive".into(),
        ));
    }
    Ok(())
}

/// The JSON config; `deliver` carries the existing durable's start when binding.
fn config_json(config: &ConsumerConfig, deliver: Option<&Value>) -> Value {
    let mut body = json!({
        "durable_name": config.durable_name,
        "ack_policy": "explicit",
        "ack_wait": duration_nanos(config.ack_wait),
        "max_deliver": config.max_deliver.map_or(-1, i64::from),
        "max_ack_pending": config.max_ack_pending,
        "replay_policy": "instant",
        "max_waiting": 512,
    });
    if let Some(description) = &config.description {
        body["description"] = json!(description);
    }
    match config.filter_subjects.as_slice() {
        [] => {}
        [one] => body["filter_subject"] = json!(one),
        many => body["filter_subjects"] = json!(many),
    }
    if !config.backoff.is_empty() {
        let delays: Vec<u64> = config.backoff.iter().map(|d| duration_nanos(*d)).collect();
        body["backoff"] = json!(delays);
    }
    match deliver {
        Some(existing) => {
            for key in ["deliver_policy", "opt_start_seq", "opt_start_time"] {
                if let Some(v) = existing.get(key) {
                    body[key] = v.clone();
                }
            }
        }
        None => match config.deliver_policy {
            DeliverPolicy::All => body["deliver_policy"] = json!("all"),
            DeliverPolicy::New => body["deliver_policy"] = json!("new"),
            DeliverPolicy::ByStartSequence(seq) => {
                body["deliver_policy"] = json!("by_start_sequence");
                body["opt_start_seq"] = json!(seq.max(1));
            }
            DeliverPolicy::ByStartTime(time) => {
                body["deliver_policy"] = json!("by_start_time");
                body["opt_start_time"] = json!(format_time(time));
            }
        },
    }
    body
}

/// Creates the durable or binds to it, updating settings that may change.
pub(crate) async fn bind(
    shared: &Arc<Shared>,
    stream: &str,
    config: ConsumerConfig,
) -> Result<JetStreamConsumer, ConsumerError> {
    validate(&config, shared.version)?;
    super::provision::wire_info(shared, stream)
        .await
        .map_err(consumer_error)?;
    let name = config.durable_name.clone();
    let existing = match info(shared, stream, &name).await {
        Ok(info) => Some(info),
        Err(failure) if failure.code() == Some(code::CONSUMER_NOT_FOUND) => None,
        Err(failure) => return Err(consumer_error(failure)),
    };
    let body = config_json(&config, existing.as_ref().map(|e| &e.config));
    let unchanged = existing
        .as_ref()
        .is_some_and(|e| same_settings(&e.config, &body));
    if !unchanged {
        let request = json!({ "stream_name": stream, "config": body });
        shared
            .api
            .request::<WireConsumerInfo>(
                &format!("CONSUMER.DURABLE.CREATE.{stream}.{name}"),
                &request,
            )
            .await
            .map_err(|failure| {
                let backoff = failure.code() == Some(code::BACKOFF_NEEDS_MAX_DELIVER);
                let err = consumer_error(failure);
                if backoff {
                    err.map_kind(|_| ConsumerErrorKind::InvalidConfig)
                } else {
                    err
                }
            })?;
    }
    let exhausted = Arc::new(Mutex::new(Vec::new()));
    let watcher = watch_exhausted(&shared.client, stream, &name, exhausted.clone()).await?;
    let link = delivery_link(shared).await.map_err(|e| {
        ConsumerError::with_detail(
            ConsumerErrorKind::BrokerUnavailable,
            format!("opening the delivery connection: {e}"),
        )
    })?;
    // Deliveries made before this bind (to a previous process) are not
    // gaps; everything delivered after it is numbered from here.
    let delivered = info(shared, stream, &name)
        .await
        .map_err(consumer_error)?
        .delivered
        .consumer_seq;
    Ok(JetStreamConsumer {
        shared: shared.clone(),
        link,
        stream: stream.to_owned(),
        name,
        filters: config.filter_subjects.clone(),
        exhausted,
        watcher,
        counts: Arc::default(),
        last_delivery: Mutex::new(Some(delivered)),
    })
}

/// True when every setting we send already has that value on the server.
fn same_settings(current: &Value, wanted: &Value) -> bool {
    let Some(wanted) = wanted.as_object() else {
        return false;
    };
    let filters_match = [
        "filter_subject",
        "filter_subjects",
        "backoff",
        "description",
    ]
    .iter()
    .all(|key| {
        let current = current.get(*key).filter(|v| !is_empty_json(v));
        current == wanted.get(*key)
    });
    filters_match
        && wanted
            .iter()
            .all(|(key, value)| current.get(key) == Some(value))
}

fn is_empty_json(value: &Value) -> bool {
    value.is_null() || value.as_str() == Some("") || value.as_array().is_some_and(Vec::is_empty)
}

pub(crate) async fn info(
    shared: &Shared,
    stream: &str,
    name: &str,
) -> Result<WireConsumerInfo, ApiFailure> {
    if !valid_name(name) || !valid_name(stream) {
        return Err(ApiFailure::Api {
            status: 404,
            code: code::CONSUMER_NOT_FOUND,
            description: format!("invalid consumer {stream}/{name}"),
        });
    }
    shared
        .api
        .request(&format!("CONSUMER.INFO.{stream}.{name}"), &Value::Null)
        .await
}

#[derive(Deserialize)]
struct WireConsumerList {
    #[serde(default)]
    total: usize,
    #[serde(default)]
    consumers: Option<Vec<WireConsumerInfo>>,
}

/// Every durable consumer of `stream`, ordered by name; the ephemeral
/// consumers of ordered reads are left out.
pub(crate) async fn list(
    shared: &Shared,
    stream: &str,
) -> Result<Vec<ConsumerInfo>, ConsumerError> {
    super::provision::wire_info(shared, stream)
        .await
        .map_err(consumer_error)?;
    let mut seen = 0;
    let mut all = Vec::new();
    loop {
        let page: WireConsumerList = shared
            .api
            .request(
                &format!("CONSUMER.LIST.{stream}"),
                &json!({ "offset": seen }),
            )
            .await
            .map_err(consumer_error)?;
        let batch = page.consumers.unwrap_or_default();
        seen += batch.len();
        all.extend(
            batch
                .iter()
                .filter(|c| c.is_durable())
                .map(WireConsumerInfo::to_info),
        );
        if batch.is_empty() || seen >= page.total {
            break;
        }
    }
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

/// A bound durable consumer on JetStream.
///
/// Deliveries arrive on a connection of the consumer's own
/// ([`super::connect::delivery_link`]). When a pull is interrupted by the
/// loss of that connection, or the delivery sequence jumps (a delivery went
/// astray), the next fetch also returns every message the server still
/// holds unacknowledged for the consumer, read back from the stream
/// ([`super::recover`]): nothing the server counts as delivered is left to
/// come back only after its ack wait, and a message whose header block the
/// client cannot parse is handed out with
/// [`StoredMessage::malformed_headers`](crate::StoredMessage::malformed_headers)
/// set instead of dropping the connection on every redelivery.
#[derive(Debug)]
pub struct JetStreamConsumer {
    shared: Arc<Shared>,
    link: DeliveryLink,
    stream: String,
    name: String,
    filters: Vec<String>,
    exhausted: Arc<Mutex<Vec<Exhausted>>>,
    watcher: tokio::task::JoinHandle<()>,
    counts: Arc<DeliveryCounts>,
    /// The last delivery sequence seen; `None` while a recovery is owed.
    last_delivery: Mutex<Option<u64>>,
}

impl JetStreamConsumer {
    fn delivery(
        &self,
        message: StoredMessage,
        delivered: u32,
        pending: u64,
        reply: String,
    ) -> Delivery {
        let acker = Arc::new(JetStreamAcker {
            shared: self.shared.clone(),
            reply,
            counts: self.counts.clone(),
        });
        let count = self.counts.observe(message.seq, delivered);
        Delivery::new(message, count, pending, acker)
    }

    /// Every message the server holds unacknowledged for this consumer and
    /// that is not in `received`, read back from the stream, with the
    /// delivery sequence to continue from.
    async fn recover(
        &self,
        received: &BTreeMap<u64, Delivery>,
    ) -> Result<(Vec<Delivery>, u64), ConsumerError> {
        let state = info(&self.shared, &self.stream, &self.name)
            .await
            .map_err(consumer_error)?;
        let (floor, through) = (state.ack_floor.stream_seq, state.delivered.stream_seq);
        let dseq = state.delivered.consumer_seq;
        let stored = stored_range(&self.shared, &self.stream, &self.filters, floor, through)
            .await
            .map_err(|why| {
                ConsumerError::with_detail(
                    ConsumerErrorKind::BrokerUnavailable,
                    format!("reading back undelivered messages: {why}"),
                )
            })?;
        let mut out = Vec::new();
        for message in stored {
            if received.contains_key(&message.seq) {
                continue;
            }
            if let Some(malformed) = &message.malformed_headers {
                tracing::warn!(
                    stream = %self.stream,
                    consumer = %self.name,
                    seq = message.seq,
                    reason = %malformed.reason,
                    "a delivery the client cannot parse; handing it out read from the stream"
                );
            }
            let reply = ack_subject(&self.stream, &self.name, message.seq, dseq);
            out.push(self.delivery(message, 1, state.num_pending, reply));
        }
        Ok((out, dseq))
    }
}

impl Drop for JetStreamConsumer {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

#[async_trait]
impl Consumer for JetStreamConsumer {
    fn name(&self) -> &str {
        &self.name
    }

    fn stream(&self) -> &str {
        &self.stream
    }

    async fn fetch(&self, max: usize, expires: Duration) -> Result<Vec<Delivery>, ConsumerError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let owed = self
            .last_delivery
            .lock()
            .map_or(true, |last| last.is_none());
        let pull = if owed {
            // A recovery failed last time: retry it before pulling more.
            Pull::default()
        } else {
            fetch_available(
                &self.shared,
                &self.link,
                &self.stream,
                &self.name,
                max,
                expires,
            )
            .await?
        };
        let mut lost = owed || pull.interrupted;
        let mut out = BTreeMap::new();
        if let Ok(mut last) = self.last_delivery.lock() {
            for p in pull.pulled {
                let dseq = p.meta.consumer_seq;
                if let Some(previous) = *last {
                    lost |= dseq > previous + 1;
                    *last = Some(previous.max(dseq));
                }
                let delivery = self.delivery(p.message, p.meta.delivered, p.meta.pending, p.reply);
                out.insert(delivery.message.seq, delivery);
            }
            if lost {
                *last = None;
            }
        }
        if lost {
            match self.recover(&out).await {
                Ok((recovered, dseq)) => {
                    for delivery in recovered {
                        out.insert(delivery.message.seq, delivery);
                    }
                    if let Ok(mut last) = self.last_delivery.lock() {
                        *last = Some(dseq);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, consumer = %self.name, "cannot recover lost deliveries yet");
                    if out.is_empty() {
                        return Err(e);
                    }
                }
            }
        }
        Ok(out.into_values().collect())
    }

    async fn info(&self) -> Result<ConsumerInfo, ConsumerError> {
        info(&self.shared, &self.stream, &self.name)
            .await
            .map(|i| i.to_info())
            .map_err(consumer_error)
    }

    async fn take_exhausted(&self) -> Result<Vec<Exhausted>, ConsumerError> {
        Ok(self
            .exhausted
            .lock()
            .map(|mut list| std::mem::take(&mut *list))
            .unwrap_or_default())
    }
}

/// The body that settles a delivery as `kind` on a server of `version`.
fn settle_body(kind: &AckKind, version: ServerVersion) -> String {
    match kind {
        AckKind::Ack => "+ACK".to_owned(),
        AckKind::Nak { delay: None } => "-NAK".to_owned(),
        AckKind::Nak { delay: Some(d) } => {
            format!("-NAK {}", json!({ "delay": duration_nanos(*d) }))
        }
        AckKind::Progress => "+WPI".to_owned(),
        AckKind::Term { reason: Some(r) } if version.supports_term_reason() => {
            format!("+TERM {r}")
        }
        AckKind::Term { .. } => "+TERM".to_owned(),
    }
}

/// Settles one delivery through its reply subject.
#[derive(Debug)]
struct JetStreamAcker {
    shared: Arc<Shared>,
    reply: String,
    counts: Arc<DeliveryCounts>,
}

#[async_trait]
impl Acker for JetStreamAcker {
    async fn settle(&self, stream_seq: u64, kind: AckKind) -> Result<(), AckError> {
        let body = settle_body(&kind, self.shared.version);
        // Every kind is sent as a request: the server confirms it, so the
        // caller knows the settlement was recorded (double ack).
        match self.shared.api.raw(self.reply.clone(), body.into()).await {
            Ok(_) => {
                if matches!(kind, AckKind::Ack | AckKind::Term { .. }) {
                    self.counts.settled(stream_seq);
                }
                Ok(())
            }
            Err(ApiFailure::TimedOut) => Err(AckError::with_detail(
                AckErrorKind::TimedOut,
                "the server did not confirm the acknowledgement",
            )),
            Err(ApiFailure::NoResponders) => Err(AckError::with_detail(
                AckErrorKind::NotPending,
                "the consumer no longer tracks this delivery",
            )),
            Err(failure) => Err(AckError::with_detail(
                AckErrorKind::BrokerUnavailable,
                failure.describe(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_filters_are_unsupported_before_2_10() {
        let config = ConsumerConfig {
            filter_subjects: vec!["events.a.>".into(), "events.b.>".into()],
            ..ConsumerConfig::durable("c")
        };
        let err = validate(&config, ServerVersion::FLOOR).unwrap_err();
        assert_eq!(err.kind(), &ConsumerErrorKind::Unsupported);
        assert!(err.to_string().contains("2.10.0") && err.to_string().contains("2.9.10"));
        assert!(validate(&config, ServerVersion::new(2, 10, 0)).is_ok());
    }

    #[test]
    fn backoff_needs_more_deliveries_than_delays() {
        let config = ConsumerConfig {
            backoff: vec![Duration::from_secs(1), Duration::from_secs(2)],
            max_deliver: Some(2),
            ..ConsumerConfig::durable("c")
        };
        let err = validate(&config, ServerVersion::FLOOR).unwrap_err();
        assert_eq!(err.kind(), &ConsumerErrorKind::InvalidConfig);
        let ok = ConsumerConfig {
            max_deliver: Some(3),
            ..config
        };
        assert!(validate(&ok, ServerVersion::FLOOR).is_ok());
    }

    #[test]
    fn term_reasons_follow_their_own_server_version() {
        let term = AckKind::Term {
            reason: Some("bad".into()),
        };
        assert_eq!(settle_body(&term, ServerVersion::FLOOR), "+TERM");
        assert_eq!(settle_body(&term, ServerVersion::TERM_REASON), "+TERM bad");
        assert_eq!(settle_body(&AckKind::Ack, ServerVersion::FLOOR), "+ACK");
    }

    #[test]
    fn binding_keeps_the_existing_start() {
        let existing = json!({"deliver_policy": "by_start_sequence", "opt_start_seq": 5});
        let body = config_json(&ConsumerConfig::durable("c"), Some(&existing));
        assert_eq!(body["opt_start_seq"], json!(5));
        assert!(same_settings(
            &json!({"durable_name":"c","ack_policy":"explicit","ack_wait":30_000_000_000u64,
                    "max_deliver":-1,"max_ack_pending":1000,"replay_policy":"instant",
                    "max_waiting":512,"deliver_policy":"by_start_sequence","opt_start_seq":5,
                    "filter_subject":""}),
            &body
        ));
    }
}

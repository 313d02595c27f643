//! RabbitMQ (AMQP 0.9.1) through `lapin`, with the CloudEvents AMQP
//! binding in binary mode.
//!
//! Outbound, each event is a persistent message on the bridge's topic
//! exchange (declared durable), routed by its address: `message_id` is
//! the `ce-id`, `content_type` `application/protobuf`, `type` the event
//! type, `timestamp` the store time, the body the protobuf payload byte
//! for byte, and every CloudEvents attribute a `cloudEvents:<name>`
//! header (string values, percent-decoded). Publisher confirms: a batch
//! counts as sent when RabbitMQ acked every message of it.
//!
//! Inbound, the bridge consumes its queue (declared durable, bound to the
//! exchange by `bindings`) with manual acknowledgements and a prefetch of
//! two batches; a message is acked after the log took it, with one
//! `multiple` ack per batch. Attributes are read from `cloudEvents:` and
//! `cloudEvents_` headers, or the body is a structured-mode event
//! (`content_type: application/cloudevents+json`).

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use backbone_schemas::{Headers, header_value, wire};
use bytes::Bytes;
use futures::{FutureExt as _, StreamExt as _};
use lapin::{
    Acker, BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use serde_json::{Map, Value, json};

use crate::{
    config::BridgeConfig,
    error::{BridgeError, BridgeErrorKind},
    inbound::Source,
    message::{
        AMQP_PREFIX, AMQP_PREFIX_ALT, Outgoing, Received, attribute_header, unix_millis_rfc3339,
    },
    outbound::Sink,
};

/// How long connecting (TCP, handshake, channel setup) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long RabbitMQ may take to confirm a batch; with the connect
/// timeout, well within the log's ack wait, so a held batch's deliveries
/// are kept alive in time.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long closing a failed connection may take (a broker under a
/// memory alarm stops reading but keeps the socket open).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// AMQP delivery mode of a message written to disk.
const PERSISTENT: u8 = 2;

fn unreachable_error(config: &BridgeConfig, e: impl std::fmt::Display) -> BridgeError {
    BridgeError::with_detail(
        BridgeErrorKind::Unreachable,
        format!("bridge {}: RabbitMQ: {e}", config.name),
    )
}

/// Connects, opens a channel and, when `declare_exchange`, declares the
/// bridge's durable topic exchange (an existing exchange of another kind
/// fails the connect, named in the error).
async fn connect(
    config: &BridgeConfig,
    declare_exchange: bool,
) -> Result<(Connection, Channel), BridgeError> {
    let connecting = async {
        let connection = Connection::connect(&config.url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        if declare_exchange {
            channel
                .exchange_declare(
                    config.exchange.as_str().into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
        }
        Ok::<_, lapin::Error>((connection, channel))
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(connected)) => Ok(connected),
        Ok(Err(e)) => Err(unreachable_error(config, e)),
        Err(_) => Err(unreachable_error(
            config,
            format!("no connection within {CONNECT_TIMEOUT:?}"),
        )),
    }
}

/// Sends events to a RabbitMQ exchange.
#[derive(Debug)]
pub struct RabbitSink {
    config: BridgeConfig,
    connected: Option<(Connection, Channel)>,
}

impl RabbitSink {
    /// A sink for `config`; connects on the first send.
    pub fn new(config: BridgeConfig) -> Self {
        Self {
            config,
            connected: None,
        }
    }

    fn properties(event: &Outgoing) -> BasicProperties {
        let mut headers = FieldTable::default();
        for (name, value) in &event.attributes {
            headers.insert(
                format!("{AMQP_PREFIX}{name}").into(),
                AMQPValue::LongString(LongString::from(value.as_bytes().to_vec())),
            );
        }
        BasicProperties::default()
            .with_message_id(ShortString::from(event.id.as_str()))
            .with_content_type(wire::CONTENT_TYPE_PROTOBUF.into())
            .with_type(ShortString::from(event.event_type.as_str()))
            .with_delivery_mode(PERSISTENT)
            .with_timestamp(event.stored_ms / 1000)
            .with_headers(headers)
    }

    async fn publish(channel: &Channel, exchange: &str, batch: &[Outgoing]) -> Result<(), String> {
        let mut confirms = Vec::with_capacity(batch.len());
        for event in batch {
            let confirm = channel
                .basic_publish(
                    exchange.into(),
                    event.address.as_str().into(),
                    BasicPublishOptions::default(),
                    &event.payload,
                    Self::properties(event),
                )
                .await
                .map_err(|e| e.to_string())?;
            confirms.push(confirm);
        }
        for (confirm, event) in confirms.into_iter().zip(batch) {
            let confirmation = confirm.await.map_err(|e| e.to_string())?;
            if !confirmation.is_ack() {
                return Err(format!("RabbitMQ nacked event {}", event.id));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for RabbitSink {
    async fn send(&mut self, batch: &[Outgoing]) -> Result<(), BridgeError> {
        if self.connected.is_none() {
            let (connection, channel) = connect(&self.config, true).await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| unreachable_error(&self.config, e))?;
            self.connected = Some((connection, channel));
        }
        let Some((_, channel)) = &self.connected else {
            unreachable!("connected above");
        };
        let sent = tokio::time::timeout(
            CONFIRM_TIMEOUT,
            Self::publish(channel, &self.config.exchange, batch),
        )
        .await;
        let error = match sent {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => format!("no confirms within {CONFIRM_TIMEOUT:?}"),
        };
        // Whatever state the channel is in, start afresh.
        if let Some((connection, _)) = self.connected.take() {
            let closing = connection.close(0, "bridge reconnects".into());
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
        }
        Err(BridgeError::with_detail(
            BridgeErrorKind::NotConfirmed,
            format!("bridge {}: RabbitMQ: {error}", self.config.name),
        ))
    }
}

/// Takes events from a RabbitMQ queue.
pub struct RabbitSource {
    config: BridgeConfig,
    queue: String,
    connected: Option<(Connection, Channel, lapin::Consumer)>,
    /// The consumer ended or failed after the last batch was taken: the
    /// next receive starts afresh.
    broken: bool,
}

impl std::fmt::Debug for RabbitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitSource")
            .field("queue", &self.queue)
            .field("connected", &self.connected.is_some())
            .finish()
    }
}

impl RabbitSource {
    /// A source for `config` (its `source` is the queue); connects on the
    /// first receive.
    pub fn new(config: BridgeConfig) -> Self {
        Self {
            queue: config.source.clone().unwrap_or_default(),
            config,
            connected: None,
            broken: false,
        }
    }

    async fn subscribe(&self) -> Result<(Connection, Channel, lapin::Consumer), BridgeError> {
        let (connection, channel) = connect(&self.config, !self.config.bindings.is_empty()).await?;
        let config = &self.config;
        let setup = async {
            let prefetch = u16::try_from(config.batch_size.saturating_mul(2)).unwrap_or(u16::MAX);
            channel
                .basic_qos(prefetch, BasicQosOptions::default())
                .await?;
            channel
                .queue_declare(
                    self.queue.as_str().into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            for key in &config.bindings {
                channel
                    .queue_bind(
                        self.queue.as_str().into(),
                        config.exchange.as_str().into(),
                        key.as_str().into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
            }
            channel
                .basic_consume(
                    self.queue.as_str().into(),
                    config.consumer_name().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, setup).await {
            Ok(Ok(consumer)) => Ok((connection, channel, consumer)),
            Ok(Err(e)) => Err(unreachable_error(config, e)),
            Err(_) => Err(unreachable_error(config, "queue setup timed out")),
        }
    }

    fn received(&self, delivery: lapin::message::Delivery) -> Received<Acker> {
        let properties = &delivery.properties;
        let mut attributes = Headers::new();
        let mut table = Map::new();
        let mut params = HashMap::new();
        if let Some(headers) = properties.headers() {
            for (name, value) in headers.inner() {
                let name = name.as_str();
                table.insert(name.to_owned(), amqp_json(value));
                if let Some(text) = amqp_text(value) {
                    params.insert(name.to_owned(), text);
                }
                let attribute = name
                    .strip_prefix(AMQP_PREFIX)
                    .or_else(|| name.strip_prefix(AMQP_PREFIX_ALT));
                if let Some(header) = attribute.and_then(attribute_header)
                    && let Some(text) = amqp_text(value)
                {
                    attributes.append(header, header_value::encode(&text));
                }
            }
        }
        let text = |v: &Option<ShortString>| v.as_ref().map(|s| s.as_str().to_owned());
        let message_id = text(properties.message_id());
        let content_type = text(properties.content_type());
        params.insert(
            "routing_key".into(),
            delivery.routing_key.as_str().to_owned(),
        );
        if let Some(id) = &message_id {
            params.insert("message_id".into(), id.clone());
        }
        let mut all = Map::new();
        all.insert("exchange".into(), json!(delivery.exchange.as_str()));
        all.insert("routing_key".into(), json!(delivery.routing_key.as_str()));
        all.insert("message_id".into(), json!(message_id));
        all.insert("content_type".into(), json!(content_type));
        all.insert("headers".into(), Value::Object(table));
        Received {
            source: format!("rabbitmq:{}", self.queue),
            address: delivery.routing_key.as_str().to_owned(),
            message_id,
            content_type,
            attributes,
            properties: all,
            params,
            body: Bytes::from(delivery.data),
            ack: delivery.acker,
        }
    }
}

/// An AMQP value as text, when it is a string (or a timestamp, as
/// RFC 3339).
fn amqp_text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => String::from_utf8(s.as_bytes().to_vec()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        // AMQP 0.9.1 timestamps are seconds.
        AMQPValue::Timestamp(secs) => {
            unix_millis_rfc3339(i64::try_from(*secs).ok()?.checked_mul(1000)?)
        }
        _ => None,
    }
}

/// An AMQP value as JSON, for a dead letter's record of the message.
fn amqp_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(n) => json!(n),
        AMQPValue::ShortShortUInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::ShortUInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::Float(n) => json!(n),
        AMQPValue::Double(n) => json!(n),
        AMQPValue::Timestamp(n) => json!(n),
        AMQPValue::LongString(s) => json!(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(amqp_json).collect()),
        AMQPValue::FieldTable(t) => Value::Object(
            t.inner()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), amqp_json(v)))
                .collect(),
        ),
        other => json!(format!("{other:?}")),
    }
}

#[async_trait]
impl Source for RabbitSource {
    type Ack = Acker;

    async fn receive(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Received<Acker>>, BridgeError> {
        if self.broken {
            self.broken = false;
            self.connected = None;
        }
        if self.connected.is_none() {
            self.connected = Some(self.subscribe().await?);
        }
        let Some((_, _, consumer)) = &mut self.connected else {
            unreachable!("connected above");
        };
        let first = match tokio::time::timeout(wait, consumer.next()).await {
            Err(_) => return Ok(Vec::new()),
            Ok(Some(Ok(delivery))) => delivery,
            Ok(Some(Err(e))) => {
                self.connected = None;
                return Err(unreachable_error(&self.config, e));
            }
            Ok(None) => {
                self.connected = None;
                return Err(unreachable_error(
                    &self.config,
                    "the consumer was cancelled",
                ));
            }
        };
        let mut deliveries = vec![first];
        while deliveries.len() < max {
            match consumer.next().now_or_never() {
                Some(Some(Ok(delivery))) => deliveries.push(delivery),
                None => break,
                // Cancelled by the broker (queue deleted, failover) or
                // failed: what was taken is handed on, then a new start.
                Some(None | Some(Err(_))) => {
                    self.broken = true;
                    break;
                }
            }
        }
        Ok(deliveries.into_iter().map(|d| self.received(d)).collect())
    }

    async fn ack(&mut self, acks: Vec<Acker>) -> Result<(), BridgeError> {
        let Some(last) = acks.last() else {
            return Ok(());
        };
        match last.ack(BasicAckOptions { multiple: true }).await {
            Ok(true) => Ok(()),
            // The channel closed under the batch: the broker delivers it
            // again and the log drops the copies.
            Ok(false) => {
                self.broken = true;
                Err(unreachable_error(
                    &self.config,
                    "the channel closed before the ack",
                ))
            }
            Err(e) => {
                self.broken = true;
                Err(unreachable_error(&self.config, e))
            }
        }
    }
}

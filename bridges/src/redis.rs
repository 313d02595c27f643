//! Redis through `redis-rs`: streams both ways, pub/sub outbound.
//!
//! CloudEvents has no Redis binding; Backbone writes and reads one form,
//! documented in `docs/bridges.md`: a stream entry (or pub/sub message)
//! whose field `cloudevent` holds the structured-mode JSON event, the
//! data as `data_base64` (the protobuf payload, byte for byte). Inbound
//! also takes `data` (proto3 JSON) in that object; an entry without a
//! `cloudevent` field is the JSON object of its fields, for the bridge's
//! mapping.
//!
//! Outbound, a batch is one pipeline of `XADD <key> * cloudevent <json>`
//! (or `PUBLISH <channel> <json>`); it counts as sent when Redis replied
//! to every command. How durable an `XADD` is then is Redis's
//! persistence setting (`appendonly`, `appendfsync`). A `PUBLISH`
//! reaches only the subscribers connected at that moment.
//!
//! Inbound, the bridge reads its stream through a consumer group
//! (`XREADGROUP`, consumer `bridge-<name>`; the group is created at the
//! stream's start when missing) and `XACK`s a batch after the log took
//! it. After a restart it first takes again what it had read but not
//! acknowledged (its pending entries). Redis pub/sub cannot be consumed
//! durably (a message published while the bridge is away is gone), so
//! there is no pub/sub inbound: publish to a stream instead.

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use backbone_schemas::{Headers, cloudevents};
use bytes::Bytes;
use redis::{
    AsyncCommands as _, AsyncConnectionConfig, Client, Value as RedisValue,
    aio::MultiplexedConnection,
    streams::{StreamId, StreamReadOptions, StreamReadReply},
};
use serde_json::{Map, Value, json};

use crate::{
    config::{BridgeConfig, RedisTarget},
    error::{BridgeError, BridgeErrorKind},
    inbound::Source,
    message::{Outgoing, Received},
    outbound::Sink,
};

/// The field of a stream entry holding the structured-mode event.
pub const EVENT_FIELD: &str = "cloudevent";
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long Redis may take to answer (beyond a blocking read's wait).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

fn redis_error(
    config: &BridgeConfig,
    kind: BridgeErrorKind,
    e: impl std::fmt::Display,
) -> BridgeError {
    BridgeError::with_detail(kind, format!("bridge {}: Redis: {e}", config.name))
}

async fn connect(
    config: &BridgeConfig,
    response_timeout: Duration,
) -> Result<MultiplexedConnection, BridgeError> {
    let client = Client::open(config.url.as_str())
        .map_err(|e| redis_error(config, BridgeErrorKind::Config, e))?;
    let options = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(response_timeout));
    client
        .get_multiplexed_async_connection_with_config(&options)
        .await
        .map_err(|e| redis_error(config, BridgeErrorKind::Unreachable, e))
}

/// Sends events to Redis streams or channels.
#[derive(Debug)]
pub struct RedisSink {
    config: BridgeConfig,
    connection: Option<MultiplexedConnection>,
}

impl RedisSink {
    /// A sink for `config`; connects on the first send.
    pub fn new(config: BridgeConfig) -> Self {
        Self {
            config,
            connection: None,
        }
    }
}

#[async_trait]
impl Sink for RedisSink {
    async fn send(&mut self, batch: &[Outgoing]) -> Result<(), BridgeError> {
        if self.connection.is_none() {
            self.connection = Some(connect(&self.config, RESPONSE_TIMEOUT).await?);
        }
        let Some(connection) = self.connection.as_mut() else {
            unreachable!("connected above");
        };
        let mut pipe = redis::pipe();
        for event in batch {
            let json = event.structured();
            match self.config.redis_target {
                RedisTarget::Stream => {
                    pipe.xadd(&event.address, "*", &[(EVENT_FIELD, json)]);
                }
                RedisTarget::Pubsub => {
                    pipe.publish(&event.address, json);
                }
            }
        }
        match pipe.query_async::<Vec<RedisValue>>(connection).await {
            Ok(replies) if replies.len() == batch.len() => Ok(()),
            Ok(replies) => Err(redis_error(
                &self.config,
                BridgeErrorKind::NotConfirmed,
                format!("{} replies to {} commands", replies.len(), batch.len()),
            )),
            Err(e) => {
                self.connection = None;
                let kind = if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                    BridgeErrorKind::Unreachable
                } else {
                    BridgeErrorKind::NotConfirmed
                };
                Err(redis_error(&self.config, kind, e))
            }
        }
    }
}

/// Takes events from a Redis stream through a consumer group.
#[derive(Debug)]
pub struct RedisSource {
    config: BridgeConfig,
    key: String,
    connection: Option<MultiplexedConnection>,
    /// Still taking the entries read before a restart but not acknowledged.
    draining_pending: bool,
}

impl RedisSource {
    /// A source for `config` (its `source` is the stream key); connects on
    /// the first receive.
    pub fn new(config: BridgeConfig) -> Self {
        Self {
            key: config.source.clone().unwrap_or_default(),
            config,
            connection: None,
            draining_pending: true,
        }
    }

    async fn subscribe(&self, wait: Duration) -> Result<MultiplexedConnection, BridgeError> {
        let mut connection = connect(&self.config, wait + RESPONSE_TIMEOUT).await?;
        let created: redis::RedisResult<()> = connection
            .xgroup_create_mkstream(&self.key, &self.config.group, "0")
            .await;
        match created {
            Ok(()) => Ok(connection),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(connection),
            Err(e) => Err(redis_error(&self.config, BridgeErrorKind::Unreachable, e)),
        }
    }

    /// An entry as a received message: the body is its `cloudevent`
    /// field; without one (a legacy producer's entry) the JSON object of
    /// its fields, for a mapping.
    fn received(&self, entry: StreamId) -> Received<String> {
        let mut fields = Map::new();
        let mut params = HashMap::new();
        let mut event = None;
        for (field, value) in &entry.map {
            let bytes: Option<Vec<u8>> = redis::from_redis_value_ref(value).ok();
            if field == EVENT_FIELD {
                event = bytes.clone();
            }
            let text = bytes.map(|b| String::from_utf8_lossy(&b).into_owned());
            if let Some(text) = &text {
                params.insert(field.clone(), text.clone());
            }
            fields.insert(field.clone(), json!(text));
        }
        params.insert("routing_key".into(), self.key.clone());
        params.insert("message_id".into(), entry.id.clone());
        let (content_type, body) = match event {
            Some(event) => (Some(cloudevents::STRUCTURED.to_owned()), Bytes::from(event)),
            None => (None, Bytes::from(Value::Object(fields.clone()).to_string())),
        };
        let mut all = Map::new();
        all.insert("stream".into(), json!(self.key));
        all.insert("entry_id".into(), json!(entry.id));
        all.insert("fields".into(), Value::Object(fields));
        Received {
            source: format!("redis:{}", self.key),
            address: self.key.clone(),
            message_id: Some(entry.id.clone()),
            content_type,
            attributes: Headers::new(),
            properties: all,
            params,
            body,
            ack: entry.id,
        }
    }
}

#[async_trait]
impl Source for RedisSource {
    type Ack = String;

    async fn receive(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Received<String>>, BridgeError> {
        if self.connection.is_none() {
            self.connection = Some(self.subscribe(wait).await?);
            self.draining_pending = true;
        }
        let Some(connection) = self.connection.as_mut() else {
            unreachable!("connected above");
        };
        let consumer = self.config.consumer_name();
        let mut options = StreamReadOptions::default()
            .group(&self.config.group, &consumer)
            .count(max);
        let from = if self.draining_pending {
            "0"
        } else {
            options = options.block(wait.as_millis().try_into().unwrap_or(usize::MAX));
            ">"
        };
        let reply: Option<StreamReadReply> = connection
            .xread_options(&[&self.key], &[from], &options)
            .await
            .map_err(|e| {
                self.connection = None;
                redis_error(&self.config, BridgeErrorKind::Unreachable, e)
            })?;
        let entries: Vec<StreamId> = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .collect();
        if self.draining_pending && entries.is_empty() {
            self.draining_pending = false;
        }
        Ok(entries.into_iter().map(|e| self.received(e)).collect())
    }

    async fn ack(&mut self, acks: Vec<String>) -> Result<(), BridgeError> {
        let Some(connection) = self.connection.as_mut() else {
            return Err(redis_error(
                &self.config,
                BridgeErrorKind::Unreachable,
                "not connected",
            ));
        };
        let acked: redis::RedisResult<u64> =
            connection.xack(&self.key, &self.config.group, &acks).await;
        acked.map(|_| ()).map_err(|e| {
            self.connection = None;
            redis_error(&self.config, BridgeErrorKind::Unreachable, e)
        })
    }
}

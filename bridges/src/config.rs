//! [`BridgeConfig`]: one `[[bridges]]` entry of the server's or the
//! standalone bridge's TOML.
//!
//! ```toml
//! [[bridges]]                          # Backbone -> RabbitMQ
//! name = "social-out"                  # durable consumer bridge-social-out
//! direction = "outbound"
//! broker = "rabbitmq"
//! url = "amqp://app:secret@10.0.0.5:5672/%2f"
//! start = "new"                        # or "all": where a new bridge starts
//! event_types = ["user.followed"]      # [default: every type]
//! exchange = "events"                  # a durable topic exchange [default: events]
//! address = "{type}"                   # routing key [default: the event type]
//! routes = { "user.followed" = "social.follow" }   # per-type overrides
//!
//! [[bridges]]                          # Redis stream -> Backbone
//! name = "chat-in"
//! direction = "inbound"
//! broker = "redis"
//! url = "redis://10.0.0.6:6379"
//! source = "chat-events"               # the stream key (a queue on RabbitMQ)
//! group = "backbone"                   # the consumer group [default: backbone]
//!
//! [[bridges.mapping.events]]           # optional: legacy JSON -> events
//! type = "user.followed"               # (backbone_schemas::mapping)
//! id = "/event_id"
//! when = [{ pointer = "/event", equals = "user.followed" }]
//! [bridges.mapping.events.fields]
//! followerId = "/follower_id"
//! followeeId = "/following_id"
//! ```
//!
//! An address template may hold `{type}` (`user.followed`), `{type_}`
//! (`user_followed`, for brokers whose names take no dots) and `{key}`
//! (the event's key, e.g. a conversation id: one channel per
//! conversation). The
//! defaults follow the seed systems' names: on RabbitMQ the routing key
//! is the event type on the `events` topic exchange; on Redis the stream
//! key (or pub/sub channel) is the event type; on Service Bus the topic is
//! `events-{type_}`, and `events-user_message_received` for
//! `message.received` (the WhatsApp bot's topics).

use std::{collections::BTreeMap, fmt, time::Duration};

use backbone_schemas::mapping::Mapping;
use serde::Deserialize;

/// Which way events cross.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// External broker -> Backbone log.
    Inbound,
    /// Backbone log -> external broker.
    Outbound,
}

/// The external broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    /// RabbitMQ, AMQP 0.9.1.
    Rabbitmq,
    /// Redis: streams (inbound and outbound) or pub/sub (outbound only).
    Redis,
    /// Any AMQP 1.0 broker (RabbitMQ's `rabbitmq_amqp1_0` plugin, ActiveMQ
    /// Artemis, Qpid): links to node addresses, SASL PLAIN or ANONYMOUS.
    Amqp1,
    /// Azure Service Bus: AMQP 1.0 over TLS, authorized per entity with SAS
    /// tokens over claims-based security (CBS).
    Servicebus,
}

impl fmt::Display for BrokerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rabbitmq => "rabbitmq",
            Self::Redis => "redis",
            Self::Amqp1 => "amqp1",
            Self::Servicebus => "servicebus",
        })
    }
}

/// What an outbound Redis bridge writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisTarget {
    /// `XADD` to a stream: durable, readable by consumer groups.
    #[default]
    Stream,
    /// `PUBLISH` to a channel: only subscribers connected at that moment
    /// receive it (what the seed systems' pub/sub listeners expect).
    Pubsub,
}

/// Where a new outbound bridge starts in the log; once its durable
/// consumer exists it goes on from where it stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Events stored after the bridge first ran (the legacy side has
    /// the history already).
    #[default]
    New,
    /// Every event in the log.
    All,
}

/// One bridge.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Letters, digits, `-` and `_`: the durable consumer is
    /// `bridge-<name>`, and its dead letters are `deadletter.bridge-<name>.>`.
    pub name: String,
    /// Inbound or outbound.
    pub direction: Direction,
    /// The external broker's kind.
    pub broker: BrokerKind,
    /// Where the broker is: `amqp://user:password@host:port/vhost`
    /// (RabbitMQ), `redis://host:port`, `amqp[s]://[user:password@]host:port`
    /// (AMQP 1.0), or, for Service Bus, the namespace's connection string
    /// (`Endpoint=sb://<namespace>.servicebus.windows.net/;SharedAccessKeyName=<rule>;SharedAccessKey=<key>`).
    pub url: String,
    /// Outbound: where a new bridge starts in the log.
    #[serde(default)]
    pub start: StartAt,
    /// Outbound: the event types sent; empty sends every type.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// RabbitMQ: the durable topic exchange published to (outbound) or the
    /// `bindings` bind the queue to (inbound).
    #[serde(default = "default_exchange")]
    pub exchange: String,
    /// Outbound: the routing key, stream key, channel or AMQP 1.0 node
    /// address of an event [default: `{type}`; `events-{type_}` on Service
    /// Bus, the WhatsApp bot's topics].
    #[serde(default)]
    pub address: Option<String>,
    /// Outbound: per event type, an address instead of `address`.
    #[serde(default)]
    pub routes: BTreeMap<String, String>,
    /// Outbound Redis: a stream or a pub/sub channel.
    #[serde(default)]
    pub redis_target: RedisTarget,
    /// Inbound: the RabbitMQ queue (declared durable) or Redis stream key
    /// consumed.
    #[serde(default)]
    pub source: Option<String>,
    /// Inbound RabbitMQ: binding keys of the queue on `exchange`.
    #[serde(default)]
    pub bindings: Vec<String>,
    /// Inbound Redis: the consumer group (created at the stream's start
    /// when missing).
    #[serde(default = "default_group")]
    pub group: String,
    /// Inbound: how a message that is not a CloudEvent (a legacy JSON
    /// payload) becomes events ([`backbone_schemas::mapping`]); without
    /// one such a message is dead-lettered (`NotACloudEvent`).
    #[serde(default)]
    pub mapping: Option<Mapping>,
    /// Inbound with a mapping: the events' `ce-source` [default:
    /// `bridge/<name>`].
    #[serde(default)]
    pub ce_source: Option<String>,
    /// Messages moved per round trip.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// First delay before reconnecting to a broker that failed; doubles
    /// per failed attempt.
    #[serde(default = "default_reconnect_base", with = "humantime_serde")]
    pub reconnect_base: Duration,
    /// The longest delay between reconnects.
    #[serde(default = "default_reconnect_max", with = "humantime_serde")]
    pub reconnect_max: Duration,
}

fn default_exchange() -> String {
    "events".into()
}
fn default_group() -> String {
    "backbone".into()
}
fn default_batch_size() -> usize {
    256
}
fn default_reconnect_base() -> Duration {
    Duration::from_millis(100)
}
fn default_reconnect_max() -> Duration {
    Duration::from_secs(10)
}

impl BridgeConfig {
    /// A bridge with every optional setting at its default.
    pub fn new(
        name: impl Into<String>,
        direction: Direction,
        broker: BrokerKind,
        url: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            direction,
            broker,
            url: url.into(),
            start: StartAt::default(),
            event_types: Vec::new(),
            exchange: default_exchange(),
            address: None,
            routes: BTreeMap::new(),
            redis_target: RedisTarget::default(),
            source: None,
            bindings: Vec::new(),
            group: default_group(),
            mapping: None,
            ce_source: None,
            batch_size: default_batch_size(),
            reconnect_base: default_reconnect_base(),
            reconnect_max: default_reconnect_max(),
        }
    }

    /// The durable consumer (outbound) and dead-letter consumer name.
    pub fn consumer_name(&self) -> String {
        format!("bridge-{}", self.name)
    }

    /// The address of an event of `event_type` with `key`: its route,
    /// else the `address` template, filled in.
    pub fn address_of(&self, event_type: &str, key: &str) -> String {
        let template = self
            .routes
            .get(event_type)
            .map_or_else(|| self.default_address_of(event_type), String::as_str);
        template
            .replace("{type_}", &event_type.replace('.', "_"))
            .replace("{type}", event_type)
            .replace("{key}", key)
    }

    /// The address template of an event without a route.
    pub fn address_template(&self) -> &str {
        match (&self.address, self.broker) {
            (Some(address), _) => address,
            (None, BrokerKind::Servicebus) => "events-{type_}",
            (None, _) => "{type}",
        }
    }

    /// The template of an `event_type` without a route: the
    /// [`address_template`](Self::address_template), except on Service Bus
    /// without an `address`, where `message.received` keeps the WhatsApp
    /// bot's topic name, `events-user_message_received`.
    fn default_address_of(&self, event_type: &str) -> &str {
        match (&self.address, self.broker, event_type) {
            (None, BrokerKind::Servicebus, "message.received") => "events-user_message_received",
            _ => self.address_template(),
        }
    }

    /// Whether an outbound bridge sends events of `event_type`.
    pub fn sends(&self, event_type: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type)
    }

    /// The `ce-source` of events a mapping makes.
    pub fn mapped_source(&self) -> String {
        self.ce_source
            .clone()
            .unwrap_or_else(|| format!("bridge/{}", self.name))
    }

    /// The delay before reconnect `attempt` (1 for the first).
    pub fn reconnect_delay(&self, attempt: u32) -> Duration {
        backbone_core::backoff::exponential(self.reconnect_base, self.reconnect_max, attempt)
    }

    /// Why the bridge cannot run as configured, if it cannot.
    pub fn problem(&self) -> Option<String> {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let problem = if !name_ok {
            "the name takes letters, digits, - and _".to_owned()
        } else if self.batch_size == 0 {
            "batch_size must be at least 1".to_owned()
        } else if self.reconnect_base.is_zero() || self.reconnect_max < self.reconnect_base {
            "reconnect_base must be positive and at most reconnect_max".to_owned()
        } else {
            match (self.direction, self.broker) {
                (Direction::Inbound, _) if self.source.as_deref().is_none_or(str::is_empty) => {
                    format!(
                        "an inbound bridge names its source ({})",
                        match self.broker {
                            BrokerKind::Rabbitmq => "the queue",
                            BrokerKind::Redis => "the stream key",
                            BrokerKind::Amqp1 => "the node address",
                            BrokerKind::Servicebus =>
                                "the queue, or <topic>/subscriptions/<subscription>",
                        }
                    )
                }
                (Direction::Inbound, kind)
                    if kind != BrokerKind::Rabbitmq && !self.bindings.is_empty() =>
                {
                    "bindings are RabbitMQ's".to_owned()
                }
                (Direction::Inbound, BrokerKind::Redis)
                    if self.redis_target == RedisTarget::Pubsub =>
                {
                    "Redis pub/sub cannot be consumed durably; an inbound bridge reads a stream"
                        .to_owned()
                }
                (_, BrokerKind::Rabbitmq) if !self.url.starts_with("amqp://") => {
                    "a RabbitMQ url is amqp://user:password@host:port/vhost (amqps:// is not supported yet)".to_owned()
                }
                (_, BrokerKind::Redis) if !self.url.starts_with("redis://") => {
                    "a Redis url is redis://[user:password@]host:port[/db] (rediss:// is not supported yet)".to_owned()
                }
                (_, BrokerKind::Amqp1)
                    if !(self.url.starts_with("amqp://") || self.url.starts_with("amqps://")) =>
                {
                    "an AMQP 1.0 url is amqp[s]://[user:password@]host[:port]".to_owned()
                }
                (_, BrokerKind::Servicebus)
                    if crate::servicebus::ConnectionString::parse(&self.url).is_err() =>
                {
                    crate::servicebus::ConnectionString::parse(&self.url)
                        .err()
                        .unwrap_or_default()
                }
                (Direction::Outbound, _)
                    if self.source.is_some()
                        || !self.bindings.is_empty()
                        || self.mapping.is_some()
                        || self.ce_source.is_some() =>
                {
                    "source, bindings, mapping and ce_source are for inbound bridges".to_owned()
                }
                (Direction::Inbound, _)
                    if self.mapping.as_ref().and_then(Mapping::problem).is_some() =>
                {
                    format!(
                        "mapping: {}",
                        self.mapping
                            .as_ref()
                            .and_then(Mapping::problem)
                            .unwrap_or_default()
                    )
                }
                (Direction::Outbound, _)
                    if self.address_template().is_empty()
                        || self.routes.values().any(String::is_empty) =>
                {
                    "an address is never empty".to_owned()
                }
                _ => return None,
            }
        };
        Some(format!("bridge {}: {problem}", self.name))
    }
}

/// Why `bridges` cannot run together, if they cannot: the first
/// bridge's problem, or a name used twice (names key the durable
/// consumers and dead letters).
pub fn problem_of_all(bridges: &[BridgeConfig]) -> Option<String> {
    bridges.iter().find_map(BridgeConfig::problem).or_else(|| {
        let mut names: Vec<&str> = bridges.iter().map(|b| b.name.as_str()).collect();
        names.sort_unstable();
        names
            .windows(2)
            .find(|w| w[0] == w[1])
            .map(|w| format!("two bridges are named {}", w[0]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_seed_names_and_routes_override_them() {
        let config: BridgeConfig = toml::from_str(
            "name = \"out\"\ndirection = \"outbound\"\nbroker = \"rabbitmq\"\nurl = \"amqp://h\"\n\
             routes = { \"payment.received\" = \"events-{type_}\" }\n",
        )
        .unwrap();
        assert_eq!(config.problem(), None);
        assert_eq!(config.exchange, "events");
        assert_eq!(config.address_of("user.followed", "u-1"), "user.followed");
        assert_eq!(
            config.address_of("payment.received", "u-1"),
            "events-payment_received"
        );
        let per_key = BridgeConfig {
            address: Some("chat:{key}".into()),
            ..config.clone()
        };
        assert_eq!(per_key.address_of("message.received", "c-7"), "chat:c-7");
        assert_eq!(config.consumer_name(), "bridge-out");
        assert!(config.sends("anything.at_all"));
    }

    #[test]
    fn every_misconfiguration_is_named() {
        let base = BridgeConfig::new("in", Direction::Inbound, BrokerKind::Redis, "redis://h");
        assert!(base.problem().unwrap().contains("source"));
        let bad_name = BridgeConfig {
            name: "a b".into(),
            ..base.clone()
        };
        assert!(bad_name.problem().unwrap().contains("name"));
        let bindings = BridgeConfig {
            source: Some("s".into()),
            bindings: vec!["#".into()],
            ..base.clone()
        };
        assert!(bindings.problem().unwrap().contains("RabbitMQ"));
        let zero = BridgeConfig {
            source: Some("s".into()),
            batch_size: 0,
            ..base
        };
        assert!(zero.problem().unwrap().contains("batch_size"));
        let pubsub_in = BridgeConfig {
            source: Some("s".into()),
            redis_target: RedisTarget::Pubsub,
            ..BridgeConfig::new("in", Direction::Inbound, BrokerKind::Redis, "redis://h")
        };
        assert!(pubsub_in.problem().unwrap().contains("pub/sub"));
        let tls = BridgeConfig::new("o", Direction::Outbound, BrokerKind::Rabbitmq, "amqps://h");
        assert!(tls.problem().unwrap().contains("amqps"));
        assert!(toml::from_str::<BridgeConfig>("name = \"x\"\nnope = 1").is_err());
    }

    #[test]
    fn service_bus_defaults_to_the_whatsapp_bots_topics() {
        let connection =
            "Endpoint=sb://bot.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=k";
        let out = BridgeConfig::new(
            "sb",
            Direction::Outbound,
            BrokerKind::Servicebus,
            connection,
        );
        assert_eq!(out.problem(), None);
        assert_eq!(
            out.address_of("payment.received", "u-42"),
            "events-payment_received"
        );
        assert_eq!(
            out.address_of("message.received", "c-1"),
            "events-user_message_received"
        );
        let amqp1 = BridgeConfig::new("a", Direction::Outbound, BrokerKind::Amqp1, "amqps://h");
        assert_eq!(amqp1.problem(), None);
        assert_eq!(amqp1.address_of("user.followed", "u-1"), "user.followed");
        let wrong_url = BridgeConfig::new("a", Direction::Outbound, BrokerKind::Amqp1, "http://h");
        assert!(wrong_url.problem().unwrap().contains("amqp[s]://"));
        let no_key = BridgeConfig::new(
            "sb",
            Direction::Outbound,
            BrokerKind::Servicebus,
            "Endpoint=sb://bot.servicebus.windows.net/;SharedAccessKeyName=send",
        );
        assert!(no_key.problem().unwrap().contains("SharedAccessKey"));
        let bindings = BridgeConfig {
            source: Some("q".into()),
            bindings: vec!["#".into()],
            ..BridgeConfig::new("in", Direction::Inbound, BrokerKind::Amqp1, "amqp://h")
        };
        assert!(bindings.problem().unwrap().contains("RabbitMQ"));
    }
}

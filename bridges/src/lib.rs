//! Bridges between Backbone's log and the brokers the seed systems run
//! today, so old and new services run side by side while a system
//! migrates (strangler fig).
//!
//! A bridge is one [`BridgeConfig`] (`[[bridges]]` in TOML): a direction,
//! a broker and where to read or write.
//!
//! - **Outbound** ([`outbound`]): a durable consumer of the log sends each
//!   event to the broker and acknowledges it in the log only after the
//!   broker confirmed it. After a crash the unconfirmed tail is sent
//!   again; every copy carries the event's `ce-id` as its message id, so
//!   downstream recognises the redelivery.
//! - **Inbound** ([`inbound`]): each message taken from a queue or stream
//!   consumer group becomes an event, is published to the log with its
//!   `ce-id` (so a message taken twice is stored once), and is
//!   acknowledged upstream only after the log acknowledged it. A message
//!   that is not a valid event goes to the dead-letter stream with its
//!   reason and original bytes, and is then acknowledged: nothing is lost
//!   and nothing blocks the queue.
//!
//! Brokers, each behind a cargo feature: [`rabbitmq`] (AMQP 0.9.1 through
//! `lapin`, CloudEvents AMQP binding), [`redis`] (streams both ways,
//! pub/sub outbound, through `redis-rs`) and `amqp1` (AMQP 1.0 through
//! `fe2o3-amqp`, CloudEvents AMQP binding; Azure Service Bus with SAS
//! tokens over CBS, [`servicebus`]). All reconnect with the exponential
//! backoff of [`backbone_core::backoff`].
//!
//! Bridges run inside `backbone-server` (on the embedded log) or on their
//! own as `backbone-bridge --config bridges.toml` ([`BridgesFile`]) beside
//! JetStream.

#[cfg(feature = "amqp1")]
pub mod amqp1;
pub mod config;
pub mod error;
pub mod file;
pub mod inbound;
pub mod message;
pub mod outbound;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
#[cfg(feature = "redis")]
pub mod redis;
pub mod servicebus;

use std::sync::Arc;

use backbone_broker::Broker;
use backbone_consumers::Shutdown;

pub use config::{BridgeConfig, BrokerKind, Direction, RedisTarget, StartAt};
pub use error::{BridgeError, BridgeErrorKind};
pub use file::BridgesFile;
pub use outbound::BridgeCounters;

/// Runs the bridge `config` against `broker` (reading `stream` when
/// outbound) until `shutdown` triggers. Fails at once on a configuration
/// problem or a broker this build has no client for; an unreachable
/// broker is retried, not an error.
pub async fn run(
    broker: Arc<dyn Broker>,
    stream: &str,
    config: &BridgeConfig,
    counters: Arc<BridgeCounters>,
    shutdown: Shutdown,
) -> Result<(), BridgeError> {
    if let Some(problem) = config.problem() {
        return Err(BridgeError::with_detail(BridgeErrorKind::Config, problem));
    }
    let _ = (&broker, stream, &counters, &shutdown);
    match (config.direction, config.broker) {
        #[cfg(feature = "rabbitmq")]
        (Direction::Outbound, BrokerKind::Rabbitmq) => {
            let sink = rabbitmq::RabbitSink::new(config.clone());
            outbound::run_outbound(broker, stream, config, sink, counters, shutdown).await
        }
        #[cfg(feature = "rabbitmq")]
        (Direction::Inbound, BrokerKind::Rabbitmq) => {
            let source = rabbitmq::RabbitSource::new(config.clone());
            inbound::run_inbound(broker, config, source, counters, shutdown).await
        }
        #[cfg(feature = "redis")]
        (Direction::Outbound, BrokerKind::Redis) => {
            let sink = redis::RedisSink::new(config.clone());
            outbound::run_outbound(broker, stream, config, sink, counters, shutdown).await
        }
        #[cfg(feature = "redis")]
        (Direction::Inbound, BrokerKind::Redis) => {
            let source = redis::RedisSource::new(config.clone());
            inbound::run_inbound(broker, config, source, counters, shutdown).await
        }
        #[cfg(feature = "amqp1")]
        (Direction::Outbound, BrokerKind::Amqp1 | BrokerKind::Servicebus) => {
            let sink = amqp1::Amqp1Sink::new(config.clone())?;
            outbound::run_outbound(broker, stream, config, sink, counters, shutdown).await
        }
        #[cfg(feature = "amqp1")]
        (Direction::Inbound, BrokerKind::Amqp1 | BrokerKind::Servicebus) => {
            let source = amqp1::Amqp1Source::new(config.clone())?;
            inbound::run_inbound(broker, config, source, counters, shutdown).await
        }
        #[allow(unreachable_patterns)]
        (_, kind) => Err(BridgeError::with_detail(
            BridgeErrorKind::Unsupported,
            format!(
                "bridge {}: this build has no {kind} client (cargo feature {kind})",
                config.name
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use backbone_broker::memory::MemoryBroker;
    use backbone_consumers::shutdown_channel;

    use super::*;

    /// A bridge that cannot run is refused at once with `Config`, before
    /// any connection: a bad Service Bus connection string, an AMQP 1.0
    /// url of another scheme.
    #[tokio::test]
    async fn misconfigured_amqp1_and_service_bus_bridges_are_config_errors() {
        for config in [
            BridgeConfig::new(
                "sb",
                Direction::Outbound,
                BrokerKind::Servicebus,
                "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send",
            ),
            BridgeConfig {
                source: Some("q".into()),
                ..BridgeConfig::new("a", Direction::Inbound, BrokerKind::Amqp1, "http://h")
            },
        ] {
            let (_trigger, shutdown) = shutdown_channel();
            let error = run(
                Arc::new(MemoryBroker::new()),
                "EVENTS",
                &config,
                Arc::default(),
                shutdown,
            )
            .await
            .unwrap_err();
            assert_eq!(error.kind(), &BridgeErrorKind::Config, "{config:?}");
        }
    }
}

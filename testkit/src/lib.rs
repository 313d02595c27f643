//! Test helpers for Backbone.
//!
//! - [`NatsServer`]: a real `nats-server` process with JetStream on a free
//!   port and a temporary store, killed on drop; restartable on the same port
//!   and store to test crashes and reconnects.
//! - [`RabbitMq`], [`Redis`]: real `rabbitmq-server` and `redis-server`
//!   processes for the bridges, restartable on the same port and data.
//! - [`NatsCluster`]: three (or more) routed servers on loopback.
//! - [`TestCerts`]: a CA, a server and a client certificate generated on the
//!   fly, for TLS tests without key files in the repository.
//! - [`free_port`]: an unused loopback TCP port.
//! - [`conformance`]: the adapter conformance suite, one `#[tokio::test]`
//!   per scenario through [`conformance_tests!`].

pub mod conformance;

mod binary;
mod cluster;
mod config;
mod external;
mod port;
mod probe;
mod server;
mod tls;

pub use binary::{NATS_SERVER_BIN, NatsServerMissing, find_nats_server};
pub use cluster::NatsCluster;
pub use config::{AccountUser, NatsServerBuilder, ServerTls};
pub use external::{RABBITMQ_SERVER_BIN, REDIS_SERVER_BIN, RabbitMq, Redis};
pub use port::free_port;
pub use server::NatsServer;
pub use tls::TestCerts;

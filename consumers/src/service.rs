//! The read-model service: runs any set of read models from a TOML config,
//! each as its own durable consumer, with `/healthz` and `/metrics`.
//!
//! ```toml
//! data_dir = "/var/lib/backbone/read-models"
//! models = ["all"]            # or e.g. ["billing", "audit"]
//! stream = "EVENTS"
//! durable_prefix = ""         # durable name = prefix + model name
//! batch_size = 256
//! grace_time_secs = 10
//! metrics_addr = "127.0.0.1:9464"
//! reactors = ["follow-notifier"]  # side effects; none by default
//! ack_wait_secs = 30          # also bounds the wait after a restart
//! unhealthy_after_secs = 30   # /healthz: how long a runner may keep failing
//!
//! [backend]
//! kind = "embedded"           # or "jetstream" with urls = ["nats://..."]
//! path = "/var/lib/backbone/log"
//! ```

use std::{fmt, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use backbone_broker::{
    Broker, StreamErrorKind,
    embedded::{EmbeddedBroker, EmbeddedOptions},
    jetstream::{JetStreamBroker, JetStreamOptions},
    stream::{EVENT_STREAM, StreamConfig},
};
use serde::Deserialize;

use crate::{
    config::RuntimeConfig,
    error::Error,
    metrics::Metrics,
    models::resolve,
    projection::{ProjectionRunner, RunReport},
    reactor::{ReactorRunner, RunMode},
    reactors,
    shutdown::Shutdown,
    store::ProjectionStore,
};

/// Where the event log is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum BackendConfig {
    /// The embedded sled log in `path`.
    Embedded {
        /// The log's directory.
        path: PathBuf,
    },
    /// NATS JetStream.
    Jetstream {
        /// Server URLs.
        urls: Vec<String>,
    },
}

/// The service's configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The event log.
    pub backend: BackendConfig,
    /// Where read-model stores live, one directory per model.
    pub data_dir: PathBuf,
    /// Read models to run; `all` for every one.
    #[serde(default = "all_models")]
    pub models: Vec<String>,
    /// The stream consumed.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Prefix of durable consumer names.
    #[serde(default)]
    pub durable_prefix: String,
    /// Events per batch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Seconds to finish in-flight work after SIGINT/SIGTERM.
    #[serde(default = "default_grace")]
    pub grace_time_secs: u64,
    /// Address of `/healthz` and `/metrics`; none when absent.
    #[serde(default)]
    pub metrics_addr: Option<SocketAddr>,
    /// Deliveries before a failing event is dead-lettered.
    #[serde(default = "default_max_deliver")]
    pub max_deliver: u32,
    /// First retry delay of a transient failure, milliseconds.
    #[serde(default = "default_backoff_ms")]
    pub backoff_base_ms: u64,
    /// Seconds a delivery may stay unacknowledged.
    #[serde(default = "default_ack_wait")]
    pub ack_wait_secs: u64,
    /// Milliseconds one fetch waits for messages.
    #[serde(default = "default_fetch_wait")]
    pub fetch_wait_ms: u64,
    /// Reactors (side effects) to run live, e.g. `follow-notifier`; none
    /// by default. Each is its own durable consumer (prefix + name).
    #[serde(default)]
    pub reactors: Vec<String>,
    /// Seconds a runner may keep failing (broker unreachable, dead letters
    /// unpublishable) before `/healthz` answers 503.
    #[serde(default = "default_unhealthy_after")]
    pub unhealthy_after_secs: u64,
}

fn all_models() -> Vec<String> {
    vec!["all".into()]
}
fn default_stream() -> String {
    EVENT_STREAM.into()
}
fn default_batch() -> usize {
    256
}
fn default_grace() -> u64 {
    10
}
fn default_max_deliver() -> u32 {
    5
}
fn default_backoff_ms() -> u64 {
    200
}
fn default_ack_wait() -> u64 {
    30
}
fn default_fetch_wait() -> u64 {
    500
}
fn default_unhealthy_after() -> u64 {
    30
}

/// Why the service could not start or run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceErrorKind {
    /// The config file is unreadable or invalid.
    Config,
    /// The broker could not be opened or reached.
    Connect,
    /// A read-model store could not be opened (e.g. `Locked`).
    Store,
    /// The metrics address could not be bound.
    Http,
    /// A read model's run failed.
    Run,
}

impl fmt::Display for ServiceErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Config => "invalid configuration",
            Self::Connect => "cannot connect to the broker",
            Self::Store => "cannot open a read-model store",
            Self::Http => "cannot serve metrics",
            Self::Run => "a read model failed",
        })
    }
}

/// Error of the service.
pub type ServiceError = Error<ServiceErrorKind>;

impl ServiceConfig {
    /// Parses a TOML config.
    pub fn from_toml(text: &str) -> Result<Self, ServiceError> {
        let config: Self = toml::from_str(text)
            .map_err(|e| ServiceError::with_source(ServiceErrorKind::Config, e))?;
        resolve(&config.models)
            .map_err(|e| ServiceError::with_source(ServiceErrorKind::Config, e))?;
        reactors::validate(&config.reactors)
            .map_err(|e| ServiceError::with_source(ServiceErrorKind::Config, e))?;
        if config.ack_wait_secs == 0 {
            return Err(ServiceError::with_detail(
                ServiceErrorKind::Config,
                "ack_wait_secs must be positive",
            ));
        }
        if config.batch_size == 0 {
            return Err(ServiceError::with_detail(
                ServiceErrorKind::Config,
                "batch_size must be positive",
            ));
        }
        Ok(config)
    }

    /// Reads and parses a TOML config file.
    pub fn load(path: &std::path::Path) -> Result<Self, ServiceError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ServiceError::with_source(ServiceErrorKind::Config, e)
                .detail(path.display().to_string())
        })?;
        Self::from_toml(&text)
    }

    /// The grace time after a shutdown signal.
    pub fn grace_time(&self) -> Duration {
        Duration::from_secs(self.grace_time_secs)
    }

    /// The runtime settings of the read model `name`.
    pub fn runtime(&self, name: &str) -> RuntimeConfig {
        RuntimeConfig {
            stream: self.stream.clone(),
            durable_name: format!("{}{name}", self.durable_prefix),
            batch_size: self.batch_size,
            fetch_wait: Duration::from_millis(self.fetch_wait_ms),
            ack_wait: Duration::from_secs(self.ack_wait_secs),
            max_deliver: self.max_deliver,
            backoff_base: Duration::from_millis(self.backoff_base_ms),
            ..Default::default()
        }
    }

    /// Opens or connects to the configured broker.
    pub async fn connect(&self) -> Result<Arc<dyn Broker>, ServiceError> {
        let connect_err = |e| ServiceError::with_source(ServiceErrorKind::Connect, e);
        Ok(match &self.backend {
            BackendConfig::Embedded { path } => Arc::new(
                EmbeddedBroker::open(EmbeddedOptions {
                    path: path.clone(),
                    ..Default::default()
                })
                .map_err(connect_err)?,
            ),
            BackendConfig::Jetstream { urls } => Arc::new(
                JetStreamBroker::connect(JetStreamOptions {
                    urls: urls.clone(),
                    ..Default::default()
                })
                .await
                .map_err(connect_err)?,
            ),
        })
    }
}

/// A runner the service drives.
enum Runner {
    Projection(ProjectionRunner),
    Reactor(ReactorRunner),
}

/// Runs the configured read models and reactors on `broker` until
/// `shutdown`, serving `/healthz` and `/metrics` when configured. Returns
/// each runner's report, by model or reactor name. A runner that fails does
/// not stop the others; `/healthz` reports it until the service stops.
pub async fn run_service(
    config: &ServiceConfig,
    broker: Arc<dyn Broker>,
    metrics: Metrics,
    shutdown: Shutdown,
) -> Result<Vec<(String, RunReport)>, ServiceError> {
    let models = resolve(&config.models)
        .map_err(|e| ServiceError::with_source(ServiceErrorKind::Config, e))?;
    if config.stream == EVENT_STREAM {
        if let Err(e) = broker.stream_info(&config.stream).await {
            if e.kind() == &StreamErrorKind::StreamNotFound {
                broker
                    .ensure_stream(&StreamConfig::event_log())
                    .await
                    .map_err(|e| ServiceError::with_source(ServiceErrorKind::Connect, e))?;
            }
        }
    }
    metrics
        .health()
        .set_unhealthy_after(Duration::from_secs(config.unhealthy_after_secs));
    let mut runners: Vec<(String, Runner)> = Vec::new();
    for model in models {
        let store = ProjectionStore::open(config.data_dir.join(model.name())).map_err(|e| {
            ServiceError::with_source(ServiceErrorKind::Store, e).detail(model.name())
        })?;
        let name = model.name().to_owned();
        let runner = ProjectionRunner::new(
            broker.clone(),
            model,
            store,
            config.runtime(&name),
            &metrics,
        );
        runners.push((name, Runner::Projection(runner)));
    }
    for name in &config.reactors {
        let store_err = |e| ServiceError::with_source(ServiceErrorKind::Store, e).detail(name);
        let reactor = reactors::open(name, &config.data_dir)
            .ok_or_else(|| {
                ServiceError::with_detail(
                    ServiceErrorKind::Config,
                    format!("unknown reactor {name}"),
                )
            })?
            .map_err(store_err)?;
        let store = ProjectionStore::open(config.data_dir.join(name)).map_err(store_err)?;
        let runner = ReactorRunner::new(
            broker.clone(),
            reactor,
            store,
            config.runtime(name),
            RunMode::Live,
            &metrics,
        );
        runners.push((name.clone(), Runner::Reactor(runner)));
    }
    if let Some(addr) = config.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| ServiceError::with_source(ServiceErrorKind::Http, e))?;
        tracing::info!(%addr, "serving /healthz and /metrics");
        tokio::spawn(crate::http::serve(
            listener,
            metrics.clone(),
            shutdown.clone(),
        ));
    }
    let handles: Vec<_> = runners
        .into_iter()
        .map(|(name, runner)| {
            let shutdown = shutdown.clone();
            tracing::info!(runner = %name, "starting");
            let handle = match runner {
                Runner::Projection(r) => tokio::spawn(r.run(shutdown)),
                Runner::Reactor(r) => tokio::spawn(r.run(shutdown)),
            };
            (name, handle)
        })
        .collect();
    let mut reports = Vec::new();
    let mut failure = None;
    for (name, handle) in handles {
        match handle.await {
            Ok(Ok(report)) => reports.push((name, report)),
            Ok(Err(e)) => {
                tracing::error!(model = %name, error = %e, "read model failed");
                failure.get_or_insert(
                    ServiceError::with_source(ServiceErrorKind::Run, e).detail(name),
                );
            }
            Err(e) => {
                failure.get_or_insert(
                    ServiceError::with_source(ServiceErrorKind::Run, e).detail(name),
                );
            }
        }
    }
    if let Err(e) = broker.close().await {
        tracing::warn!(error = %e, "closing the broker failed");
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(reports),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_config_with_defaults() {
        let config = ServiceConfig::from_toml(
            "data_dir = \"/tmp/rm\"\nmodels = [\"billing\"]\n[backend]\nkind = \"jetstream\"\nurls = [\"nats://127.0.0.1:4222\"]\n",
        )
        .unwrap();
        assert_eq!(
            config.backend,
            BackendConfig::Jetstream {
                urls: vec!["nats://127.0.0.1:4222".into()]
            }
        );
        assert_eq!(config.runtime("billing").durable_name, "billing");
        assert_eq!(config.grace_time(), Duration::from_secs(10));
        assert!(config.reactors.is_empty());
        assert_eq!(config.runtime("billing").ack_wait, Duration::from_secs(30));
        assert_eq!(config.unhealthy_after_secs, 30);
        let with_reactor = ServiceConfig::from_toml(
            "data_dir = \"/tmp/rm\"\nmodels = []\nreactors = [\"follow-notifier\"]\nack_wait_secs = 5\n[backend]\nkind = \"embedded\"\npath = \"l\"\n",
        )
        .unwrap();
        assert_eq!(with_reactor.reactors, vec!["follow-notifier"]);
        assert_eq!(
            with_reactor.runtime("follow-notifier").ack_wait,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn bad_configs_are_config_errors() {
        let cases = [
            "data_dir = 1",
            "data_dir = \"x\"\n[backend]\nkind = \"carrier-pigeon\"\n",
            "data_dir = \"x\"\nmodels = [\"nope\"]\n[backend]\nkind = \"embedded\"\npath = \"l\"\n",
            "data_dir = \"x\"\nbatch_size = 0\n[backend]\nkind = \"embedded\"\npath = \"l\"\n",
            "data_dir = \"x\"\nreactors = [\"nope\"]\n[backend]\nkind = \"embedded\"\npath = \"l\"\n",
            "data_dir = \"x\"\nack_wait_secs = 0\n[backend]\nkind = \"embedded\"\npath = \"l\"\n",
        ];
        for text in cases {
            let err = ServiceConfig::from_toml(text).unwrap_err();
            assert_eq!(err.kind(), &ServiceErrorKind::Config, "{text}");
        }
    }
}

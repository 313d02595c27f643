//! [`ServerConfig`]: the server's TOML configuration.
//!
//! ```toml
//! data_dir = "/var/lib/backbone"  # <data_dir>/log, <data_dir>/read-models/<name>
//! models = ["all"]                # or e.g. ["billing", "audit"]
//! stream = "EVENTS"
//! durable_prefix = ""             # durable name = prefix + model name
//! batch_size = 256
//! grace_time = "10s"
//! reactors = ["follow-notifier"]  # side effects; none by default
//! ack_wait = "30s"                # also bounds the wait after a restart
//! unhealthy_after = "30s"         # /healthz: how long a runner may keep failing
//!
//! [http]
//! listen = "127.0.0.1:7070"       # every route: /v1/..., /healthz, /metrics
//! max_body_bytes = 1048576        # larger requests answer 413
//! max_in_flight = 512             # more concurrent requests answer 503
//!
//! [[bridges]]                     # optional: RabbitMQ, Redis, AMQP 1.0, Service Bus
//! name = "social-out"             # (backbone_bridges::config)
//! direction = "outbound"
//! broker = "rabbitmq"
//! url = "amqp://10.0.0.5:5672/%2f"
//!
//! [backend]                       # optional: the embedded log in <data_dir>/log
//! kind = "jetstream"
//! urls = ["nats://10.0.0.1:4222"]
//! auth = { creds_file = "/etc/backbone/billing.creds" }
//! tls = { ca_file = "/etc/backbone/ca.pem", require = true }
//! ```
//!
//! Durations are humantime strings (`"250ms"`, `"30s"`, `"2m"`). The
//! `[backend]` table is [`backbone_broker::Backend`], the same type every
//! binary reads, so each service can authenticate as its own NATS user.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use backbone_bridges::BridgeConfig;
use backbone_broker::{Backend, Broker, embedded::EmbeddedOptions};
use serde::Deserialize;

use backbone_consumers::{RuntimeConfig, layout, models::resolve, reactors};

use crate::{
    access::TokenConfig, spool::SpoolConfig, telemetry::TelemetryConfig, webhook::WebhookConfig,
};
use backbone_core::Error;

/// The service's configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The event log; the embedded log in `<data_dir>/log` when absent.
    #[serde(default)]
    pub backend: Option<Backend>,
    /// The data directory, laid out as [`crate::layout`] describes (the
    /// same layout `replay-tool --data-dir` expects).
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
    /// Time to finish in-flight work after SIGINT/SIGTERM.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub grace_time: Duration,
    /// The HTTP listener and its bounds.
    #[serde(default)]
    pub http: HttpConfig,
    /// Bearer tokens and their scopes; none: the server is open
    /// ([`crate::access`]).
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Webhook routes, one per provider ([`crate::webhook`]).
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// Trace export ([`crate::telemetry`]).
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// The durable spool for events the broker cannot take
    /// ([`crate::spool`]); JetStream backends only.
    #[serde(default)]
    pub spool: SpoolConfig,
    /// Bridges to RabbitMQ, Redis, AMQP 1.0 and Service Bus, run with the server
    /// ([`backbone_bridges::config`]).
    #[serde(default)]
    pub bridges: Vec<BridgeConfig>,
    /// Deliveries before a failing event is dead-lettered.
    #[serde(default = "default_max_deliver")]
    pub max_deliver: u32,
    /// First retry delay of a transient failure; doubles per delivery.
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub backoff_base: Duration,
    /// How long a delivery may stay unacknowledged; positive.
    #[serde(default = "default_ack_wait", with = "humantime_serde")]
    pub ack_wait: Duration,
    /// How long one fetch waits for messages.
    #[serde(default = "default_fetch_wait", with = "humantime_serde")]
    pub fetch_wait: Duration,
    /// Reactors (side effects) to run live, e.g. `follow-notifier`; none
    /// by default. Each is its own durable consumer (prefix + name).
    #[serde(default)]
    pub reactors: Vec<String>,
    /// How long a runner may keep failing (broker unreachable, dead
    /// letters unpublishable) before `/healthz` answers 503.
    #[serde(default = "default_unhealthy_after", with = "humantime_serde")]
    pub unhealthy_after: Duration,
    /// How long after applying an event a read model still skips a copy of
    /// it (same `ce-id`); `replay-tool rebuild --dedup-horizon` must match.
    #[serde(default = "default_dedup_horizon", with = "humantime_serde")]
    pub dedup_horizon: Duration,
}

/// The `[http]` table: where the server listens and how much it takes on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// The address every route is served on.
    pub listen: SocketAddr,
    /// The largest request body accepted; larger ones answer 413.
    pub max_body_bytes: usize,
    /// Requests handled at once; beyond that the server answers 503 with
    /// `Retry-After` instead of queueing without bound.
    pub max_in_flight: usize,
}

/// The default listen address: loopback, so nothing is exposed by accident.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("a valid address"),
            max_body_bytes: 1024 * 1024,
            max_in_flight: 512,
        }
    }
}

fn all_models() -> Vec<String> {
    vec!["all".into()]
}
// Every runtime default comes from `RuntimeConfig::default()` and the
// health threshold from `health`: one source for each.
fn default_stream() -> String {
    RuntimeConfig::default().stream
}
fn default_batch() -> usize {
    RuntimeConfig::default().batch_size
}
fn default_grace() -> Duration {
    Duration::from_secs(10)
}
fn default_max_deliver() -> u32 {
    RuntimeConfig::default().max_deliver
}
fn default_backoff() -> Duration {
    RuntimeConfig::default().backoff_base
}
fn default_ack_wait() -> Duration {
    RuntimeConfig::default().ack_wait
}
fn default_fetch_wait() -> Duration {
    RuntimeConfig::default().fetch_wait
}
fn default_dedup_horizon() -> Duration {
    RuntimeConfig::default().dedup_horizon
}
fn default_unhealthy_after() -> Duration {
    backbone_consumers::health::DEFAULT_UNHEALTHY_AFTER
}

/// Why the server could not start or run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerErrorKind {
    /// The config file is unreadable or invalid.
    Config,
    /// The broker could not be opened or reached.
    Connect,
    /// A read-model store could not be opened (e.g. `Locked`).
    Store,
    /// The HTTP address could not be bound.
    Http,
    /// A read model's run failed.
    Run,
}

impl fmt::Display for ServerErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Config => "invalid configuration",
            Self::Connect => "cannot connect to the broker",
            Self::Store => "cannot open a read-model store",
            Self::Http => "cannot serve HTTP",
            Self::Run => "a read model failed",
        })
    }
}

/// Error of the server.
pub type ServerError = Error<ServerErrorKind>;

impl ServerConfig {
    /// Parses a TOML config.
    pub fn from_toml(text: &str) -> Result<Self, ServerError> {
        let config: Self = toml::from_str(text)
            .map_err(|e| ServerError::with_source(ServerErrorKind::Config, e))?;
        resolve(&config.models)
            .map_err(|e| ServerError::with_source(ServerErrorKind::Config, e))?;
        reactors::validate(&config.reactors)
            .map_err(|e| ServerError::with_source(ServerErrorKind::Config, e))?;
        if config.ack_wait.is_zero() {
            return Err(ServerError::with_detail(
                ServerErrorKind::Config,
                "ack_wait must be positive",
            ));
        }
        if config.http.max_body_bytes == 0 || config.http.max_in_flight == 0 {
            return Err(ServerError::with_detail(
                ServerErrorKind::Config,
                "http.max_body_bytes and http.max_in_flight must be positive",
            ));
        }
        let mut hashes = std::collections::BTreeSet::new();
        for token in &config.tokens {
            if let Some(problem) = token.problem() {
                return Err(ServerError::with_detail(ServerErrorKind::Config, problem));
            }
            if !hashes.insert(token.sha256.to_ascii_lowercase()) {
                return Err(ServerError::with_detail(
                    ServerErrorKind::Config,
                    format!("token {}: the same sha256 is configured twice", token.name),
                ));
            }
        }
        for webhook in &config.webhooks {
            webhook
                .resolve_mapping()
                .map_err(|problem| ServerError::with_detail(ServerErrorKind::Config, problem))?;
        }
        if let Some(problem) = backbone_bridges::config::problem_of_all(&config.bridges) {
            return Err(ServerError::with_detail(ServerErrorKind::Config, problem));
        }
        if config.batch_size == 0 {
            return Err(ServerError::with_detail(
                ServerErrorKind::Config,
                "batch_size must be positive",
            ));
        }
        Ok(config)
    }

    /// The defaults for a data directory, as `backbone-server --data-dir`
    /// runs without a config file: every read model, no reactor, the
    /// embedded log.
    pub fn for_data_dir(data_dir: PathBuf) -> Self {
        Self::from_toml("data_dir = \"\"")
            .map(|config| Self { data_dir, ..config })
            .expect("the defaults are valid")
    }

    /// Reads and parses a TOML config file.
    pub fn load(path: &Path) -> Result<Self, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ServerError::with_source(ServerErrorKind::Config, e).detail(path.display().to_string())
        })?;
        Self::from_toml(&text)
    }

    /// The configured backend, or the embedded log in `<data_dir>/log`.
    pub fn backend(&self) -> Backend {
        self.backend.clone().unwrap_or_else(|| {
            Backend::Embedded(EmbeddedOptions {
                path: layout::log_path(&self.data_dir),
                ..Default::default()
            })
        })
    }

    /// `<data_dir>/spool`, where events wait while the broker is
    /// unreachable.
    pub fn spool_dir(&self) -> PathBuf {
        self.data_dir.join("spool")
    }

    /// `<data_dir>/read-models`, where every store of the service lives.
    pub fn read_models_dir(&self) -> PathBuf {
        layout::read_models_dir(&self.data_dir)
    }

    /// The runtime settings of the read model or reactor `name`.
    pub fn runtime(&self, name: &str) -> RuntimeConfig {
        RuntimeConfig {
            stream: self.stream.clone(),
            durable_name: format!("{}{name}", self.durable_prefix),
            batch_size: self.batch_size,
            fetch_wait: self.fetch_wait,
            ack_wait: self.ack_wait,
            max_deliver: self.max_deliver,
            backoff_base: self.backoff_base,
            dedup_horizon: self.dedup_horizon,
            ..Default::default()
        }
    }

    /// Opens or connects to the configured broker.
    pub async fn connect(&self) -> Result<Arc<dyn Broker>, ServerError> {
        let backend = self.backend();
        tracing::info!(backend = %backend.describe(), "connecting");
        backend.connect().await.map_err(|e| {
            ServerError::with_source(ServerErrorKind::Connect, e).detail(backend.describe())
        })
    }
}

#[cfg(test)]
mod tests {
    use backbone_broker::jetstream::Auth;

    use super::*;

    #[test]
    fn a_bridge_that_cannot_run_is_a_config_error() {
        let bridge = "[[bridges]]\nname = \"in\"\ndirection = \"inbound\"\nbroker = \"redis\"\nurl = \"redis://h\"\n";
        let missing_source = ServerConfig::from_toml(&format!("data_dir = \"/x\"\n{bridge}"));
        assert_eq!(missing_source.unwrap_err().kind(), &ServerErrorKind::Config);
        let with_source = format!("{bridge}source = \"s\"\n");
        let config = ServerConfig::from_toml(&format!("data_dir = \"/x\"\n{with_source}")).unwrap();
        assert_eq!(config.bridges[0].consumer_name(), "bridge-in");
        let twice =
            ServerConfig::from_toml(&format!("data_dir = \"/x\"\n{with_source}{with_source}"));
        assert_eq!(twice.unwrap_err().kind(), &ServerErrorKind::Config);
    }

    #[test]
    fn parses_a_full_config_with_defaults() {
        let config = ServerConfig::from_toml(
            "data_dir = \"/tmp/bb\"\nmodels = [\"billing\"]\n[backend]\nkind = \"jetstream\"\n\
             urls = [\"nats://127.0.0.1:4222\"]\nauth = { user_password = { user = \"billing\", password = \"pw\" } }\n",
        )
        .unwrap();
        let Some(Backend::Jetstream(options)) = &config.backend else {
            panic!("not jetstream: {:?}", config.backend);
        };
        assert_eq!(options.urls, vec!["nats://127.0.0.1:4222".to_owned()]);
        assert_eq!(
            options.auth,
            Auth::UserPassword {
                user: "billing".into(),
                password: "pw".into()
            }
        );
        assert_eq!(config.runtime("billing").durable_name, "billing");
        assert_eq!(config.grace_time, Duration::from_secs(10));
        assert!(config.reactors.is_empty());
        assert_eq!(config.runtime("billing").ack_wait, Duration::from_secs(30));
        assert_eq!(config.unhealthy_after, Duration::from_secs(30));
        assert_eq!(config.read_models_dir(), Path::new("/tmp/bb/read-models"));
        assert_eq!(config.http, HttpConfig::default());
    }

    #[test]
    fn the_local_example_parses_and_matches_the_data_dir_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/local.toml");
        let config = ServerConfig::load(&path).unwrap();
        assert_eq!(config.backend, None);
        let defaults = ServerConfig::for_data_dir(config.data_dir.clone());
        assert_eq!(defaults.http, config.http);
    }

    #[test]
    fn the_shipped_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/server.toml");
        let config = ServerConfig::load(&path).unwrap();
        let Backend::Jetstream(options) = config.backend() else {
            panic!("the example uses JetStream");
        };
        assert!(matches!(options.auth, Auth::CredsFile(_)));
        assert!(options.tls.is_some_and(|tls| tls.require));
        assert_eq!(config.ack_wait, Duration::from_secs(30));
    }

    #[test]
    fn durations_are_humantime_strings() {
        let config = ServerConfig::from_toml(
            "data_dir = \"x\"\nmodels = []\nreactors = [\"follow-notifier\"]\nack_wait = \"5s\"\n\
             fetch_wait = \"50ms\"\nbackoff_base = \"1s\"\ngrace_time = \"2m\"\nunhealthy_after = \"1s\"\n",
        )
        .unwrap();
        let runtime = config.runtime("follow-notifier");
        assert_eq!(runtime.ack_wait, Duration::from_secs(5));
        assert_eq!(runtime.fetch_wait, Duration::from_millis(50));
        assert_eq!(runtime.backoff_base, Duration::from_secs(1));
        assert_eq!(config.grace_time, Duration::from_secs(120));
        assert_eq!(config.unhealthy_after, Duration::from_secs(1));
    }

    #[test]
    fn without_a_backend_table_the_log_is_in_the_data_dir() {
        let config = ServerConfig::from_toml("data_dir = \"/srv/bb\"\n").unwrap();
        assert_eq!(
            config.backend(),
            Backend::Embedded(EmbeddedOptions {
                path: PathBuf::from("/srv/bb/log"),
                ..Default::default()
            })
        );
    }

    #[test]
    fn bad_configs_are_config_errors() {
        let cases = [
            "data_dir = 1",
            "data_dir = \"x\"\n[backend]\nkind = \"carrier-pigeon\"\n",
            "data_dir = \"x\"\nmodels = [\"nope\"]\n",
            "data_dir = \"x\"\nbatch_size = 0\n",
            "data_dir = \"x\"\nreactors = [\"nope\"]\n",
            "data_dir = \"x\"\nack_wait = \"0s\"\n",
            "data_dir = \"x\"\nack_wait = \"thirty\"\n",
            "data_dir = \"x\"\n[http]\nlisten = \"nowhere\"\n",
            "data_dir = \"x\"\n[http]\nmax_in_flight = 0\n",
            // The listener moved into [http]; the old key is rejected.
            "data_dir = \"x\"\nmetrics_addr = \"127.0.0.1:9464\"\n",
            "data_dir = \"x\"\n[[tokens]]\nname = \"a\"\nsha256 = \"not-hex\"\n",
            "data_dir = \"x\"\n[[webhooks]]\nname = \"w\"\nmapping = \"carrier-pigeon\"\nsecret_env = \"S\"\n",
            "data_dir = \"x\"\n[[webhooks]]\nname = \"w\"\nsecret_env = \"S\"\n[webhooks.mapping]\nsignature_header = \"x\"\n\
             [[webhooks.mapping.events]]\ntype = \"payment.received\"\nid = \"/id\"\nfields = { colour = \"/c\" }\n",
            "data_dir = \"x\"\n[[tokens]]\nname = \"a\"\nsha256 = \"00000000000000000000000000000000000000000000000000000000000000ff\"\npublish = [\"nope.*\"]\n",
            "data_dir = \"x\"\n[[tokens]]\nname = \"a\"\nsha256 = \"00000000000000000000000000000000000000000000000000000000000000ff\"\n\
             [[tokens]]\nname = \"b\"\nsha256 = \"00000000000000000000000000000000000000000000000000000000000000FF\"\n",
            // The integer-seconds keys of earlier versions are rejected, not ignored.
            "data_dir = \"x\"\nack_wait_secs = 30\n",
            "data_dir = \"x\"\n[backend]\nkind = \"jetstream\"\nauth = { password = \"p\" }\n",
        ];
        for text in cases {
            let err = ServerConfig::from_toml(text).unwrap_err();
            assert_eq!(err.kind(), &ServerErrorKind::Config, "{text}");
        }
    }
}

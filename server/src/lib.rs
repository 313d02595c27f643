//! The Backbone server: one process that owns the event log, runs the read
//! models and reactors, and serves HTTP.
//!
//! On one machine the embedded log belongs to one process; the server is
//! that process, so services publish and operators look *through* it
//! instead of opening the log themselves. On JetStream it is the same
//! program, one per service or per host.
//!
//! ```text
//! backbone-server --data-dir ./backbone-data          # the embedded default
//! backbone-server --config server.toml                # read models, reactors, [http], [backend]
//! ```
//!
//! - **Config** ([`config`]): the TOML file, [`ServerConfig`].
//! - **Runners**: every configured read model and reactor, each its own
//!   durable consumer, as `backbone-consumers` runs them.
//! - **HTTP** ([`app`], on axum): `POST /v1/events` publishes one event or
//!   a batch per the CloudEvents HTTP binding ([`cloudevents`]);
//!   `GET /v1/models/...` answers the read models' queries; `/healthz`,
//!   `/readyz` and `/metrics` (Prometheus, through `prometheus-client`).
//!   Every failure is an [`ApiError`]: a status and a JSON `kind`.
//! - **Webhooks** ([`webhook`]): `POST /v1/webhooks/{name}` verifies the
//!   provider's HMAC-SHA256 signature and maps its JSON to events
//!   (declarative JSON-pointer mappings; WhatsApp Cloud, an image
//!   callback and a payment provider shipped), idempotent by the
//!   provider's ids.
//! - **Spool** ([`spool`]): on JetStream, events the broker cannot take
//!   are fsynced locally, answered 202, and published in order when it
//!   answers again.
//! - **Access** ([`access`]): bearer tokens from the config, hashed at
//!   rest, scoped to the event types a service publishes and the read
//!   models it reads.
//!
//! See `docs/server.md` for the operator's view.

pub mod access;
pub mod api_error;
pub mod app;
pub mod cloudevents;
pub mod config;
pub mod metrics;
mod routes;
mod runners;
pub mod spool;
pub mod webhook;

use std::{net::SocketAddr, sync::Arc};

pub use api_error::ApiError;
use backbone_broker::{Backend, Broker};
use backbone_consumers::{Metrics, RunReport, Shutdown};
pub use config::{HttpConfig, ServerConfig, ServerError, ServerErrorKind};
pub use routes::publish::{EXPECTED_LAST_SUBJECT_SEQ, Receipt};
use tokio::net::TcpListener;

/// The file in the data directory naming where the server that holds it
/// listens (`{"url": "http://127.0.0.1:7070", "pid": 4242}`): how
/// `replay-tool` finds the server instead of reporting the log locked. It
/// exists while the server serves.
pub const DISCOVERY_FILE: &str = "server.json";

/// A started server: its listener bound and its stores open, not yet
/// serving.
pub struct Server {
    listener: TcpListener,
    runners: Vec<(String, runners::Runner)>,
    state: Arc<app::AppState>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field(
                "runners",
                &self.runners.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens every configured read model and reactor on `broker` and binds
    /// the HTTP listener. Fails with `Store` when a store is held by
    /// another process, `Http` when the address is taken.
    pub async fn start(
        config: &ServerConfig,
        broker: Arc<dyn Broker>,
        metrics: Metrics,
    ) -> Result<Self, ServerError> {
        let webhooks = webhook::open(&config.webhooks)?;
        let spool = match config.backend() {
            Backend::Jetstream(_) if config.spool.enabled => Some(Arc::new(
                spool::Spool::open(&config.spool_dir(), config.spool.max_bytes).await?,
            )),
            _ => None,
        };
        let runners::Opened { runners, stores } = runners::open(config, &broker, &metrics).await?;
        let listener = TcpListener::bind(config.http.listen).await.map_err(|e| {
            ServerError::with_source(ServerErrorKind::Http, e)
                .detail(config.http.listen.to_string())
        })?;
        let state = Arc::new(app::AppState::new(
            config, broker, stores, metrics, webhooks, spool,
        ));
        Ok(Self {
            listener,
            runners,
            state,
        })
    }

    /// The address the server listens on (the configured one, with the
    /// port the system picked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves HTTP and runs every runner until `shutdown`; then stops
    /// accepting requests, lets the runners commit, and closes the broker.
    /// Returns each runner's report by name.
    pub async fn run(self, shutdown: Shutdown) -> Result<Vec<(String, RunReport)>, ServerError> {
        let addr = self.local_addr();
        tracing::info!(%addr, "serving HTTP");
        let discovery = self.state.data_dir.join(DISCOVERY_FILE);
        if let Err(e) = write_discovery(&discovery, addr) {
            tracing::warn!(error = %e, path = %discovery.display(), "cannot write the discovery file");
        }
        let handles = runners::spawn(self.runners, &shutdown);
        let drainer =
            self.state.spool.clone().map(|spool| {
                tokio::spawn(spool.drain(self.state.broker.clone(), shutdown.clone()))
            });
        let app = app::router(self.state.clone());
        let mut http_shutdown = shutdown.clone();
        let http = tokio::spawn(async move {
            axum::serve(self.listener, app)
                .with_graceful_shutdown(async move { http_shutdown.wait().await })
                .await
        });
        let reports = runners::join(handles).await;
        match http.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server failed"),
            Err(e) => tracing::warn!(error = %e, "HTTP task failed"),
        }
        if let Some(drainer) = drainer {
            let _ = drainer.await;
        }
        if let Some(spool) = &self.state.spool {
            spool.close().await;
        }
        if let Err(e) = self.state.broker.close().await {
            tracing::warn!(error = %e, "closing the broker failed");
        }
        let _ = std::fs::remove_file(&discovery);
        reports
    }
}

/// Writes the discovery file: the URL a local client reaches `addr` at.
fn write_discovery(path: &std::path::Path, mut addr: SocketAddr) -> std::io::Result<()> {
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let body = serde_json::json!({ "url": format!("http://{addr}"), "pid": std::process::id() });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, body.to_string() + "\n")
}

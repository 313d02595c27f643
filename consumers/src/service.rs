//! The read-model service: runs any set of read models and reactors from a
//! TOML config ([`ServiceConfig`]), each as its own durable consumer, with
//! `/healthz` and `/metrics`.

use std::sync::Arc;

use backbone_broker::{
    Broker, StreamErrorKind,
    stream::{EVENT_STREAM, StreamConfig},
};

pub use crate::service_config::{ServiceConfig, ServiceError, ServiceErrorKind};
use crate::{
    metrics::Metrics,
    models::resolve,
    projection::{ProjectionRunner, RunReport},
    reactor::{ReactorRunner, RunMode},
    reactors,
    rebuild::live_path,
    shutdown::Shutdown,
    store::ProjectionStore,
};

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
    if config.stream == EVENT_STREAM
        && let Err(e) = broker.stream_info(&config.stream).await
        && e.kind() == &StreamErrorKind::StreamNotFound
    {
        broker
            .ensure_stream(&StreamConfig::event_log())
            .await
            .map_err(|e| ServiceError::with_source(ServiceErrorKind::Connect, e))?;
    }
    metrics.health().set_unhealthy_after(config.unhealthy_after);
    let stores = config.read_models_dir();
    let mut runners: Vec<(String, Runner)> = Vec::new();
    for model in models {
        let store = ProjectionStore::open(live_path(&stores, model.name())).map_err(|e| {
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
        let reactor = reactors::open(name, &stores)
            .ok_or_else(|| {
                ServiceError::with_detail(
                    ServiceErrorKind::Config,
                    format!("unknown reactor {name}"),
                )
            })?
            .map_err(store_err)?;
        let store = ProjectionStore::open(live_path(&stores, name)).map_err(store_err)?;
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

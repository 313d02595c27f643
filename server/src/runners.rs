//! The server's read models and reactors: each its own durable consumer,
//! opened from the config and run until shutdown.

use std::{collections::BTreeMap, sync::Arc};

use backbone_broker::{
    Broker, StreamErrorKind,
    stream::{EVENT_STREAM, StreamConfig},
};
use backbone_consumers::{
    Metrics, ProjectionRunner, ProjectionStore, ReactorRunner, RunMode, RunReport, Shutdown,
    models::resolve, reactors, rebuild::live_path,
};
use tokio::task::JoinHandle;

use crate::config::{ServerConfig, ServerError, ServerErrorKind};

/// A runner the server drives.
pub(crate) enum Runner {
    Projection(ProjectionRunner),
    Reactor(ReactorRunner),
}

/// The runners to start, and the read models' stores by name (for queries).
pub(crate) struct Opened {
    pub(crate) runners: Vec<(String, Runner)>,
    pub(crate) stores: BTreeMap<String, ProjectionStore>,
}

/// Creates the event stream when the config consumes it and it is missing,
/// then opens every configured read model and reactor on `broker`. A store
/// that cannot be opened (e.g. held by another process) fails the start.
pub(crate) async fn open(
    config: &ServerConfig,
    broker: &Arc<dyn Broker>,
    metrics: &Metrics,
) -> Result<Opened, ServerError> {
    let models = resolve(&config.models)
        .map_err(|e| ServerError::with_source(ServerErrorKind::Config, e))?;
    if config.stream == EVENT_STREAM
        && let Err(e) = broker.stream_info(&config.stream).await
        && e.kind() == &StreamErrorKind::StreamNotFound
    {
        broker
            .ensure_stream(&StreamConfig::event_log())
            .await
            .map_err(|e| ServerError::with_source(ServerErrorKind::Connect, e))?;
    }
    metrics.health().set_unhealthy_after(config.unhealthy_after);
    let stores = config.read_models_dir();
    let mut runners: Vec<(String, Runner)> = Vec::new();
    let mut queryable = BTreeMap::new();
    for model in models {
        let store = ProjectionStore::open(live_path(&stores, model.name())).map_err(|e| {
            ServerError::with_source(ServerErrorKind::Store, e).detail(model.name())
        })?;
        let name = model.name().to_owned();
        queryable.insert(name.clone(), store.clone());
        let runner =
            ProjectionRunner::new(broker.clone(), model, store, config.runtime(&name), metrics);
        runners.push((name, Runner::Projection(runner)));
    }
    for name in &config.reactors {
        let store_err = |e| ServerError::with_source(ServerErrorKind::Store, e).detail(name);
        let reactor = reactors::open(name, &stores)
            .ok_or_else(|| {
                ServerError::with_detail(ServerErrorKind::Config, format!("unknown reactor {name}"))
            })?
            .map_err(store_err)?;
        let store = ProjectionStore::open(live_path(&stores, name)).map_err(store_err)?;
        let runner = ReactorRunner::new(
            broker.clone(),
            reactor,
            store,
            config.runtime(name),
            RunMode::Live,
            metrics,
        );
        runners.push((name.clone(), Runner::Reactor(runner)));
    }
    Ok(Opened {
        runners,
        stores: queryable,
    })
}

type Handles = Vec<(
    String,
    JoinHandle<Result<RunReport, backbone_consumers::RunError>>,
)>;

/// Starts every runner on its own task.
pub(crate) fn spawn(runners: Vec<(String, Runner)>, shutdown: &Shutdown) -> Handles {
    runners
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
        .collect()
}

/// Waits for every runner; returns each report by name, or the first
/// failure. A runner that fails does not stop the others; `/healthz`
/// reports it until the server stops.
pub(crate) async fn join(handles: Handles) -> Result<Vec<(String, RunReport)>, ServerError> {
    let mut reports = Vec::new();
    let mut failure = None;
    for (name, handle) in handles {
        match handle.await {
            Ok(Ok(report)) => reports.push((name, report)),
            Ok(Err(e)) => {
                tracing::error!(runner = %name, error = %e, "runner failed");
                failure
                    .get_or_insert(ServerError::with_source(ServerErrorKind::Run, e).detail(name));
            }
            Err(e) => {
                failure
                    .get_or_insert(ServerError::with_source(ServerErrorKind::Run, e).detail(name));
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(reports),
    }
}

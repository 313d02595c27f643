//! The server's read models and reactors: each its own durable consumer,
//! opened from the config and run until shutdown.
//!
//! [`Runners`] also owns the read models' stores, which the query routes
//! borrow, and can stop one projection and start it again on a new store:
//! what a rebuild ([`crate::rebuilds`]) needs to swap a store in while the
//! rest of the server keeps serving.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

use backbone_broker::{Broker, stream::ensure_event_log};
use backbone_consumers::{
    Metrics, ProjectionRunner, ProjectionStore, ReactorRunner, ReadModel, RunError, RunMode,
    RunReport, RuntimeConfig, Shutdown, ShutdownTrigger, models::resolve, reactors,
    rebuild::live_path, shutdown_channel,
};
use tokio::{sync::Mutex, task::JoinHandle};

use crate::config::{ServerConfig, ServerError, ServerErrorKind};

/// A runner the server drives.
enum Runner {
    Projection(ProjectionRunner),
    Reactor(ReactorRunner),
}

impl Runner {
    fn spawn(self, shutdown: Shutdown) -> JoinHandle<Result<RunReport, RunError>> {
        match self {
            Self::Projection(r) => tokio::spawn(r.run(shutdown)),
            Self::Reactor(r) => tokio::spawn(r.run(shutdown)),
        }
    }
}

/// A runner on its task, with the trigger that stops it alone.
struct Running {
    stop: ShutdownTrigger,
    handle: JoinHandle<Result<RunReport, RunError>>,
}

/// What a projection is restarted from.
#[derive(Debug)]
pub(crate) struct ProjectionSpec {
    /// The model.
    pub(crate) model: Arc<dyn ReadModel>,
    /// Its runtime settings (durable name, batch size, ...).
    pub(crate) runtime: RuntimeConfig,
}

/// Every runner of the server and the read models' stores.
pub(crate) struct Runners {
    broker: Arc<dyn Broker>,
    metrics: Metrics,
    stores_dir: std::path::PathBuf,
    projections: BTreeMap<String, ProjectionSpec>,
    /// Opened, not yet started (until [`Runners::start`]).
    pending: std::sync::Mutex<Vec<(String, Runner)>>,
    running: Mutex<BTreeMap<String, Running>>,
    /// The stores the queries read; a store is absent while it is swapped.
    stores: RwLock<BTreeMap<String, ProjectionStore>>,
}

impl std::fmt::Debug for Runners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runners")
            .field("projections", &self.projections.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Creates the event stream when the config consumes it and it is missing,
/// then opens every configured read model and reactor on `broker`. A store
/// that cannot be opened (e.g. held by another process) fails the start.
pub(crate) async fn open(
    config: &ServerConfig,
    broker: &Arc<dyn Broker>,
    metrics: &Metrics,
) -> Result<Runners, ServerError> {
    let models = resolve(&config.models)
        .map_err(|e| ServerError::with_source(ServerErrorKind::Config, e))?;
    ensure_event_log(broker.as_ref(), &config.stream)
        .await
        .map_err(|e| ServerError::with_source(ServerErrorKind::Connect, e))?;
    metrics.health().set_unhealthy_after(config.unhealthy_after);
    let stores_dir = config.read_models_dir();
    let mut runners = Runners {
        broker: broker.clone(),
        metrics: metrics.clone(),
        stores_dir,
        projections: BTreeMap::new(),
        pending: std::sync::Mutex::new(Vec::new()),
        running: Mutex::new(BTreeMap::new()),
        stores: RwLock::new(BTreeMap::new()),
    };
    let mut pending = Vec::new();
    for model in models {
        let name = model.name().to_owned();
        let spec = ProjectionSpec {
            model,
            runtime: config.runtime(&name),
        };
        pending.push((name.clone(), runners.projection(&name, &spec)?));
        runners.projections.insert(name, spec);
    }
    for name in &config.reactors {
        let store_err = |e| ServerError::with_source(ServerErrorKind::Store, e).detail(name);
        let reactor = reactors::open(name, &runners.stores_dir)
            .ok_or_else(|| {
                ServerError::with_detail(ServerErrorKind::Config, format!("unknown reactor {name}"))
            })?
            .map_err(store_err)?;
        let store =
            ProjectionStore::open(live_path(&runners.stores_dir, name)).map_err(store_err)?;
        let runner = ReactorRunner::new(
            broker.clone(),
            reactor,
            store,
            config.runtime(name),
            RunMode::Live,
            metrics,
        );
        pending.push((name.clone(), Runner::Reactor(runner)));
    }
    runners.pending = std::sync::Mutex::new(pending);
    Ok(runners)
}

impl Runners {
    /// Opens projection `name`'s live store, makes it queryable, and
    /// returns its runner.
    fn projection(&self, name: &str, spec: &ProjectionSpec) -> Result<Runner, ServerError> {
        let store = ProjectionStore::open(live_path(&self.stores_dir, name))
            .map_err(|e| ServerError::with_source(ServerErrorKind::Store, e).detail(name))?;
        self.stores
            .write()
            .expect("the stores lock is never poisoned")
            .insert(name.to_owned(), store.clone());
        Ok(Runner::Projection(ProjectionRunner::new(
            self.broker.clone(),
            spec.model.clone(),
            store,
            spec.runtime.clone(),
            &self.metrics,
        )))
    }

    /// The names of the projections this server runs.
    pub(crate) fn projection_names(&self) -> impl Iterator<Item = &str> {
        self.projections.keys().map(String::as_str)
    }

    /// Projection `name`'s model and settings, when this server runs it.
    pub(crate) fn spec(&self, name: &str) -> Option<&ProjectionSpec> {
        self.projections.get(name)
    }

    /// The directory of the read models' stores.
    pub(crate) fn stores_dir(&self) -> &std::path::Path {
        &self.stores_dir
    }

    /// Whether `name`'s runner is on its task.
    pub(crate) async fn is_running(&self, name: &str) -> bool {
        self.running.lock().await.contains_key(name)
    }

    /// Read model `name`'s store, when this server runs it and it is not
    /// being swapped.
    pub(crate) fn store(&self, name: &str) -> Option<ProjectionStore> {
        self.stores
            .read()
            .expect("the stores lock is never poisoned")
            .get(name)
            .cloned()
    }

    /// Read model `name`'s store for a status row: `None` when this server
    /// does not run it, the state to show while a rebuild swaps it.
    pub(crate) fn held(&self, name: &str) -> Option<Result<ProjectionStore, String>> {
        self.spec(name)?;
        Some(
            self.store(name)
                .ok_or_else(|| "being swapped in by a rebuild".to_owned()),
        )
    }

    /// Every queryable store, by name.
    pub(crate) fn stores(&self) -> BTreeMap<String, ProjectionStore> {
        self.stores
            .read()
            .expect("the stores lock is never poisoned")
            .clone()
    }

    /// Starts every opened runner on its own task.
    pub(crate) async fn start(&self) {
        let pending = std::mem::take(&mut *self.pending.lock().expect("never poisoned"));
        let mut running = self.running.lock().await;
        for (name, runner) in pending {
            tracing::info!(runner = %name, "starting");
            running.insert(name, spawn(runner));
        }
    }

    /// Stops projection `name`'s runner and waits until it has committed
    /// and returned; its store stays queryable.
    pub(crate) async fn stop(&self, name: &str) -> Option<Result<RunReport, ServerError>> {
        let stopped = self.running.lock().await.remove(name)?;
        stopped.stop.trigger();
        Some(join_one(name, stopped.handle).await)
    }

    /// Takes projection `name`'s store out of the queries (they answer 503
    /// until [`Runners::restart`]), so that no handle keeps it open.
    pub(crate) fn withdraw(&self, name: &str) {
        self.stores
            .write()
            .expect("the stores lock is never poisoned")
            .remove(name);
    }

    /// Opens projection `name`'s live store again and starts its runner on
    /// it (after a swap, on the rebuilt store).
    pub(crate) async fn restart(&self, name: &str) -> Result<(), ServerError> {
        let spec = self.projections.get(name).ok_or_else(|| {
            ServerError::with_detail(ServerErrorKind::Config, format!("no read model {name}"))
        })?;
        let runner = self.projection(name, spec)?;
        tracing::info!(runner = %name, "restarting");
        self.running
            .lock()
            .await
            .insert(name.to_owned(), spawn(runner));
        Ok(())
    }

    /// Stops every runner, lets each commit, and returns each report by
    /// name, or the first failure. A runner that failed earlier did not
    /// stop the others; `/healthz` reported it.
    pub(crate) async fn stop_all(&self) -> Result<Vec<(String, RunReport)>, ServerError> {
        let running = std::mem::take(&mut *self.running.lock().await);
        for runner in running.values() {
            runner.stop.trigger();
        }
        let mut reports = Vec::new();
        let mut failure = None;
        for (name, runner) in running {
            match join_one(&name, runner.handle).await {
                Ok(report) => reports.push((name, report)),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(reports),
        }
    }
}

fn spawn(runner: Runner) -> Running {
    let (stop, shutdown) = shutdown_channel();
    Running {
        stop,
        handle: runner.spawn(shutdown),
    }
}

async fn join_one(
    name: &str,
    handle: JoinHandle<Result<RunReport, RunError>>,
) -> Result<RunReport, ServerError> {
    let failed = |e: ServerError| {
        tracing::error!(runner = %name, error = %e, "runner failed");
        e.detail(name)
    };
    match handle.await {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(e)) => Err(failed(ServerError::with_source(ServerErrorKind::Run, e))),
        Err(e) => Err(failed(ServerError::with_source(ServerErrorKind::Run, e))),
    }
}

//! Rebuilding a read model while the server runs it.
//!
//! The live store belongs to the model's runner, so a rebuild here is the
//! `replay-tool rebuild` sequence with the runner stopped only for its
//! last step:
//!
//! 1. **applying**: the log is applied into the shadow store
//!    (`<model>.rebuild`, resumed when an interrupted rebuild left one) up
//!    to the live store's checkpoint, in passes while the runner keeps
//!    consuming, until the shadow is within one batch of it;
//! 2. **pausing**: the runner is stopped (it commits its batch) and the
//!    shadow catches up to exactly the live checkpoint;
//! 3. **verifying** (when asked): the two digests are compared; a mismatch
//!    keeps the live store and the shadow, and the runner starts again;
//! 4. **swapping**: the store leaves the queries (they answer 503
//!    `Rebuilding` for that moment), the durable consumer is deleted and
//!    the shadow is swapped in with the journaled renames of
//!    [`backbone_consumers::swap`]; the runner starts on the rebuilt
//!    store, right after its checkpoint.
//!
//! Only projections are rebuilt; reactors never run, so no side effect
//! fires. One rebuild per model at a time. A server shutdown stops a
//! rebuild between batches; its shadow is resumed by the next one.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use backbone_broker::Broker;
use backbone_consumers::{
    ProjectionStore, RebuildOptions, RebuildProgress, Shutdown, StoreErrorKind, apply_log,
    rebuild::shadow_path,
};
use serde::Serialize;
use tokio::{sync::watch, task::JoinHandle};

use crate::runners::{ProjectionSpec, Runners};

/// Where a rebuild stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Applying the log into the shadow while the runner runs.
    Applying,
    /// The runner is stopped; the shadow catches up to its checkpoint.
    Pausing,
    /// Comparing the shadow's digest with the live store's.
    Verifying,
    /// Swapping the shadow into place.
    Swapping,
    /// The rebuilt store is live and its runner runs.
    Done,
    /// The rebuild stopped; the live store is unchanged and runs.
    Failed,
}

impl Phase {
    /// Whether the rebuild has ended.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Failed)
    }
}

/// Why a rebuild failed, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum FailureKind {
    /// The rebuilt digest differs from the live one (`verify`).
    VerifyMismatch,
    /// The shadow is past the live checkpoint (left by a rebuild to a
    /// later sequence), so the two cannot be compared (`verify`).
    ShadowAhead,
    /// The shadow is held by another process (a `replay-tool rebuild`).
    Locked,
    /// Reading the log failed.
    Read,
    /// A store failed.
    Store,
    /// The swap failed; the next open of the store completes it.
    Swap,
    /// The server stopped first; the shadow is resumed next time.
    Interrupted,
}

/// A failed rebuild's reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RebuildFailure {
    /// The class of failure.
    pub kind: FailureKind,
    /// What went wrong.
    pub message: String,
}

/// A rebuild's state, as the admin routes answer it and its event stream
/// sends it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RebuildStatus {
    /// The read model.
    pub model: String,
    /// Where it stands.
    pub phase: Phase,
    /// Whether the swap waits for equal digests.
    pub verify: bool,
    /// Events applied so far.
    pub applied: u64,
    /// Events the model rejected (they are dead letters).
    pub rejected: u64,
    /// The sequence the shadow has committed.
    pub current_seq: u64,
    /// The sequence the current pass ends at.
    pub target_seq: u64,
    /// The rebuilt store's digest (hex), once complete.
    pub digest: Option<String>,
    /// The live store's digest (hex) it was compared with (`verify`).
    pub live_digest: Option<String>,
    /// Seconds since the start.
    pub seconds: f64,
    /// Why it failed.
    pub failure: Option<RebuildFailure>,
}

/// Why a rebuild cannot start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartRefusal {
    /// This server does not run that read model.
    UnknownModel,
    /// A rebuild of that model is running.
    AlreadyRunning,
    /// The server is stopping.
    Stopping,
}

/// The server's rebuilds: the latest one of each model.
#[derive(Debug, Default)]
pub struct Rebuilds {
    latest: Mutex<BTreeMap<String, watch::Receiver<RebuildStatus>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// What a rebuild job needs from the server.
pub(crate) struct Job {
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) runners: Arc<Runners>,
    pub(crate) shutdown: Shutdown,
}

impl Rebuilds {
    /// Starts a rebuild of `model`; its state is then followed with
    /// [`Rebuilds::watch`].
    pub(crate) fn start(
        &self,
        job: Job,
        model: &str,
        verify: bool,
        batch_size: usize,
    ) -> Result<watch::Receiver<RebuildStatus>, StartRefusal> {
        if job.runners.spec(model).is_none() {
            return Err(StartRefusal::UnknownModel);
        }
        if job.shutdown.is_triggered() {
            return Err(StartRefusal::Stopping);
        }
        let mut latest = self.latest.lock().expect("never poisoned");
        if latest
            .get(model)
            .is_some_and(|s| !s.borrow().phase.is_final())
        {
            return Err(StartRefusal::AlreadyRunning);
        }
        let initial = RebuildStatus {
            model: model.to_owned(),
            phase: Phase::Applying,
            verify,
            applied: 0,
            rejected: 0,
            current_seq: 0,
            target_seq: 0,
            digest: None,
            live_digest: None,
            seconds: 0.0,
            failure: None,
        };
        let (sender, receiver) = watch::channel(initial);
        latest.insert(model.to_owned(), receiver.clone());
        let name = model.to_owned();
        let task = tokio::spawn(async move {
            let run = Run {
                job,
                name,
                batch_size: batch_size.max(1),
                started: Instant::now(),
                sender,
            };
            run.execute().await;
        });
        let mut tasks = self.tasks.lock().expect("never poisoned");
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
        Ok(receiver)
    }

    /// The latest rebuild of `model`, if there was one.
    pub fn watch(&self, model: &str) -> Option<watch::Receiver<RebuildStatus>> {
        self.latest
            .lock()
            .expect("never poisoned")
            .get(model)
            .cloned()
    }

    /// The latest rebuild of every model.
    pub fn all(&self) -> Vec<RebuildStatus> {
        let latest = self.latest.lock().expect("never poisoned");
        latest.values().map(|s| s.borrow().clone()).collect()
    }

    /// Waits for every rebuild to end (after the shutdown they stop at the
    /// next batch, or after their swap).
    pub(crate) async fn finish(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("never poisoned"));
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// One rebuild in progress.
struct Run {
    job: Job,
    name: String,
    batch_size: usize,
    started: Instant,
    sender: watch::Sender<RebuildStatus>,
}

type Failure = (FailureKind, String);

fn failure(kind: FailureKind) -> impl Fn(String) -> Failure {
    move |message| (kind, message)
}

fn hex(digest: u64) -> String {
    format!("{digest:016x}")
}

impl Run {
    fn update(&self, change: impl FnOnce(&mut RebuildStatus)) {
        let seconds = self.started.elapsed().as_secs_f64();
        self.sender.send_modify(|s| {
            change(s);
            s.seconds = seconds;
        });
    }

    async fn execute(self) {
        let spec = self
            .job
            .runners
            .spec(&self.name)
            .expect("checked at the start");
        let result = self.rebuild(spec).await;
        if let Err((kind, message)) = result {
            tracing::warn!(model = %self.name, ?kind, %message, "rebuild failed");
            // Whatever stopped the rebuild, the live model runs again
            // (unless the server is stopping).
            if !self.job.shutdown.is_triggered()
                && let Err(e) = self.ensure_running().await
            {
                tracing::error!(model = %self.name, error = %e, "cannot restart the runner");
            }
            self.update(|s| {
                s.phase = Phase::Failed;
                s.failure = Some(RebuildFailure { kind, message });
            });
        }
    }

    async fn ensure_running(&self) -> Result<(), crate::ServerError> {
        if self.job.runners.is_running(&self.name).await {
            return Ok(());
        }
        self.job.runners.restart(&self.name).await
    }

    fn options(&self, spec: &ProjectionSpec, up_to: u64) -> RebuildOptions {
        RebuildOptions {
            stream: spec.runtime.stream.clone(),
            up_to: Some(up_to),
            batch_size: self.batch_size,
            swap: false,
            durable_name: Some(spec.runtime.durable_name.clone()),
            dedup_horizon: spec.runtime.dedup_horizon,
        }
    }

    fn live_store(&self) -> Result<ProjectionStore, Failure> {
        self.job
            .runners
            .store(&self.name)
            .ok_or_else(|| (FailureKind::Store, "the live store is not open".to_owned()))
    }

    /// Applies the log into `shadow` up to `up_to`, stopping early on the
    /// server's shutdown.
    async fn apply(
        &self,
        spec: &ProjectionSpec,
        shadow: &ProjectionStore,
        up_to: u64,
    ) -> Result<(), Failure> {
        let options = self.options(spec, up_to);
        let mut progress = |p: RebuildProgress| {
            self.update(|s| {
                s.current_seq = p.current_seq;
                s.target_seq = p.target_seq;
            });
        };
        let mut shutdown = self.job.shutdown.clone();
        let report = tokio::select! {
            report = apply_log(self.job.broker.as_ref(), spec.model.as_ref(), shadow, &options, &mut progress) => report,
            () = shutdown.wait() => {
                return Err((FailureKind::Interrupted, "the server is stopping".to_owned()));
            }
        }
        .map_err(|e| {
            let kind = match e.kind() {
                backbone_consumers::RebuildErrorKind::Read => FailureKind::Read,
                _ => FailureKind::Store,
            };
            (kind, e.to_string())
        })?;
        self.update(|s| {
            s.applied += report.applied;
            s.rejected += report.rejected;
        });
        Ok(())
    }

    async fn rebuild(&self, spec: &ProjectionSpec) -> Result<(), Failure> {
        let store_failure = failure(FailureKind::Store);
        let shadow_dir = shadow_path(self.job.runners.stores_dir(), &self.name);
        let shadow = ProjectionStore::open(&shadow_dir).map_err(|e| match e.kind() {
            StoreErrorKind::Locked => (FailureKind::Locked, e.to_string()),
            _ => store_failure(e.to_string()),
        })?;
        // Passes while the runner consumes: each ends at the checkpoint
        // the live store had when it began.
        loop {
            let target = self
                .live_store()?
                .checkpoint()
                .map_err(|e| store_failure(e.to_string()))?;
            let before = shadow
                .checkpoint()
                .map_err(|e| store_failure(e.to_string()))?;
            if target <= before {
                break;
            }
            self.apply(spec, &shadow, target).await?;
            if target - before <= self.batch_size as u64 {
                break;
            }
        }
        self.update(|s| s.phase = Phase::Pausing);
        if let Some(Err(e)) = self.job.runners.stop(&self.name).await {
            tracing::warn!(model = %self.name, error = %e, "the runner had failed before the pause");
        }
        let live = self.live_store()?;
        let checkpoint = live
            .checkpoint()
            .map_err(|e| store_failure(e.to_string()))?;
        self.apply(spec, &shadow, checkpoint).await?;
        let digest = shadow.digest().map_err(|e| store_failure(e.to_string()))?;
        self.update(|s| s.digest = Some(hex(digest)));
        let verify = self.sender.borrow().verify;
        if verify {
            self.update(|s| s.phase = Phase::Verifying);
            let shadow_checkpoint = shadow
                .checkpoint()
                .map_err(|e| store_failure(e.to_string()))?;
            if shadow_checkpoint > checkpoint {
                return Err((
                    FailureKind::ShadowAhead,
                    format!(
                        "the shadow is at seq {shadow_checkpoint}, past the live checkpoint \
                         {checkpoint}; rebuild without verify, or remove {}",
                        shadow_dir.display()
                    ),
                ));
            }
            let live_digest = live.digest().map_err(|e| store_failure(e.to_string()))?;
            self.update(|s| s.live_digest = Some(hex(live_digest)));
            if live_digest != digest {
                return Err((
                    FailureKind::VerifyMismatch,
                    format!(
                        "rebuilt digest {} != live digest {} at seq {checkpoint}; the live \
                         store is unchanged and the shadow kept",
                        hex(digest),
                        hex(live_digest)
                    ),
                ));
            }
        }
        self.update(|s| s.phase = Phase::Swapping);
        // Every handle on both stores must be gone before the renames.
        self.job.runners.withdraw(&self.name);
        drop((live, shadow));
        let swap = RebuildOptions {
            swap: true,
            ..self.options(spec, checkpoint)
        };
        let swapped = backbone_consumers::rebuild(
            self.job.broker.as_ref(),
            spec.model.as_ref(),
            self.job.runners.stores_dir(),
            &swap,
            &mut |_| {},
        )
        .await
        .map_err(|e| (FailureKind::Swap, e.to_string()))?;
        self.job
            .runners
            .restart(&self.name)
            .await
            .map_err(|e| store_failure(e.to_string()))?;
        self.update(|s| {
            s.phase = Phase::Done;
            s.current_seq = swapped.checkpoint;
            s.target_seq = swapped.checkpoint;
            s.digest = Some(hex(swapped.digest));
        });
        tracing::info!(model = %self.name, checkpoint = swapped.checkpoint, "rebuilt and swapped in");
        Ok(())
    }
}

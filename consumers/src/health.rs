//! [`Health`]: whether every runner of the service is running and not stuck
//! failing, for `/healthz`.
//!
//! Each runner (projection or reactor) registers under its durable consumer
//! name when it is created and reports as it goes: running once bound,
//! failing while the broker or a dead-letter publish keeps erroring, stopped
//! when its run returns (or its task dies). The service is healthy only while
//! every registered runner is running and none has been failing for longer
//! than the threshold (`unhealthy_after`), so a short broker blip does not
//! flap the probe but a stuck runner does.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::Serialize;

/// How long a runner may keep failing before the service reports unhealthy.
pub const DEFAULT_UNHEALTHY_AFTER: Duration = Duration::from_secs(30);

/// Where a runner is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Starting,
    Running,
    Stopped { error: Option<String> },
}

#[derive(Debug, Clone)]
struct Failure {
    origin: &'static str,
    since: Instant,
    error: String,
}

#[derive(Debug, Clone)]
struct Runner {
    consumer: String,
    name: String,
    state: State,
    failure: Option<Failure>,
}

#[derive(Debug)]
struct Inner {
    unhealthy_after: Duration,
    runners: Vec<Runner>,
}

/// The health of every runner of a service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Mutex<Inner>>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                unhealthy_after: DEFAULT_UNHEALTHY_AFTER,
                runners: Vec::new(),
            })),
        }
    }
}

/// One unhealthy runner, as `/healthz` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unhealthy {
    /// The durable consumer name.
    pub consumer: String,
    /// The read model or reactor name.
    pub name: String,
    /// `starting`, `failing` or `stopped`.
    pub state: &'static str,
    /// The last error, when there was one.
    pub error: Option<String>,
}

/// The verdict of [`Health::report`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// True when every runner is running and none is stuck failing.
    pub healthy: bool,
    /// Runners registered.
    pub runners: usize,
    /// The runners that make the service unhealthy.
    pub unhealthy: Vec<Unhealthy>,
}

impl Health {
    /// A registry with no runners and the default threshold.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how long a runner may keep failing before it counts as unhealthy.
    pub fn set_unhealthy_after(&self, threshold: Duration) {
        self.lock().unhealthy_after = threshold;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, consumer: &str, f: impl FnOnce(&mut Runner)) {
        let mut inner = self.lock();
        if let Some(runner) = inner.runners.iter_mut().find(|r| r.consumer == consumer) {
            f(runner);
        }
    }

    /// Registers (or re-registers, as starting) the runner of `name` under
    /// the durable consumer name `consumer`.
    pub fn register(&self, consumer: &str, name: &str) {
        let mut inner = self.lock();
        let fresh = Runner {
            consumer: consumer.to_owned(),
            name: name.to_owned(),
            state: State::Starting,
            failure: None,
        };
        match inner.runners.iter_mut().find(|r| r.consumer == consumer) {
            Some(runner) => *runner = fresh,
            None => inner.runners.push(fresh),
        }
    }

    /// The runner is bound and consuming.
    pub fn running(&self, consumer: &str) {
        self.update(consumer, |r| r.state = State::Running);
    }

    /// Something the runner retries keeps failing; `origin` names what
    /// (`fetch`, `dead-letter`), so only success of the same kind clears it.
    pub fn failing(&self, consumer: &str, origin: &'static str, error: impl Into<String>) {
        let error = error.into();
        self.update(consumer, |r| match &mut r.failure {
            Some(f) if f.origin == origin => f.error = error,
            _ => {
                r.failure = Some(Failure {
                    origin,
                    since: Instant::now(),
                    error,
                })
            }
        });
    }

    /// What failed with `origin` succeeded again.
    pub fn recovered(&self, consumer: &str, origin: &'static str) {
        self.update(consumer, |r| {
            if r.failure.as_ref().is_some_and(|f| f.origin == origin) {
                r.failure = None;
            }
        });
    }

    /// The runner's run returned, with its error if it failed.
    pub fn stopped(&self, consumer: &str, error: Option<String>) {
        self.update(consumer, |r| r.state = State::Stopped { error });
    }

    /// Whether the service is healthy, and which runners are not.
    pub fn report(&self) -> HealthReport {
        let inner = self.lock();
        let mut unhealthy = Vec::new();
        for r in &inner.runners {
            let (state, error) = match (&r.state, &r.failure) {
                (State::Starting, _) => ("starting", r.failure.as_ref().map(|f| f.error.clone())),
                (State::Stopped { error }, _) => ("stopped", error.clone()),
                (State::Running, Some(f)) if f.since.elapsed() >= inner.unhealthy_after => {
                    ("failing", Some(format!("{}: {}", f.origin, f.error)))
                }
                (State::Running, _) => continue,
            };
            unhealthy.push(Unhealthy {
                consumer: r.consumer.clone(),
                name: r.name.clone(),
                state,
                error,
            });
        }
        HealthReport {
            healthy: unhealthy.is_empty(),
            runners: inner.runners.len(),
            unhealthy,
        }
    }

    /// Marks `consumer` stopped when dropped before [`RunGuard::finish`]:
    /// a run that panicked or was aborted is not healthy.
    pub(crate) fn guard(&self, consumer: &str) -> RunGuard {
        RunGuard {
            health: self.clone(),
            consumer: consumer.to_owned(),
            finished: false,
        }
    }
}

/// Records how a run ended, even when it ends by unwinding.
#[derive(Debug)]
pub(crate) struct RunGuard {
    health: Health,
    consumer: String,
    finished: bool,
}

impl RunGuard {
    /// Records the run's result.
    pub(crate) fn finish<T, E: std::fmt::Display>(mut self, result: &Result<T, E>) {
        self.finished = true;
        let error = result.as_ref().err().map(|e| {
            let text = e.to_string();
            tracing::error!(consumer = %self.consumer, error = %text, "runner stopped with an error");
            text
        });
        self.health.stopped(&self.consumer, error);
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.health.stopped(
                &self.consumer,
                Some("the runner task ended abnormally".into()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_only_while_every_runner_runs_without_a_lasting_failure() {
        let health = Health::new();
        assert!(health.report().healthy, "no runners: nothing is failing");
        health.register("billing", "billing");
        health.register("audit", "audit");
        let report = health.report();
        assert!(!report.healthy);
        assert_eq!(report.unhealthy.len(), 2);
        assert_eq!(report.unhealthy[0].state, "starting");
        health.running("billing");
        health.running("audit");
        assert!(health.report().healthy);

        health.set_unhealthy_after(Duration::ZERO);
        health.failing("audit", "fetch", "connection refused");
        let report = health.report();
        assert_eq!(report.unhealthy.len(), 1);
        assert_eq!(report.unhealthy[0].name, "audit");
        assert_eq!(report.unhealthy[0].state, "failing");
        assert_eq!(
            report.unhealthy[0].error.as_deref(),
            Some("fetch: connection refused")
        );
        health.recovered("audit", "dead-letter");
        assert!(!health.report().healthy, "another origin does not clear it");
        health.recovered("audit", "fetch");
        assert!(health.report().healthy);

        health.stopped("billing", Some("store failed".into()));
        let report = health.report();
        assert_eq!(report.unhealthy[0].state, "stopped");
        assert_eq!(report.unhealthy[0].error.as_deref(), Some("store failed"));
    }

    #[test]
    fn a_short_failure_stays_healthy_until_the_threshold() {
        let health = Health::new();
        health.set_unhealthy_after(Duration::from_secs(3600));
        health.register("billing", "billing");
        health.running("billing");
        health.failing("billing", "fetch", "timeout");
        assert!(health.report().healthy);
    }

    #[test]
    fn a_dropped_guard_marks_the_runner_stopped() {
        let health = Health::new();
        health.register("billing", "billing");
        health.running("billing");
        drop(health.guard("billing"));
        assert_eq!(health.report().unhealthy[0].state, "stopped");
        health.register("billing", "billing");
        health.running("billing");
        health.guard("billing").finish::<(), String>(&Ok(()));
        let report = health.report();
        assert_eq!(
            (report.unhealthy[0].state, report.unhealthy[0].error.clone()),
            ("stopped", None)
        );
    }
}

//! Running scenarios against a harness and reporting ok / skipped / FAILED.

use std::{fmt, sync::Arc, time::Duration};

use super::{
    harness::Harness,
    scenarios::{SCENARIOS, Scenario},
    support::Ctx,
};

/// The longest one scenario may take before it counts as failed (hung).
const SCENARIO_LIMIT: Duration = Duration::from_secs(180);

/// How a scenario ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every check held.
    Passed,
    /// Not run: the harness does not claim what the scenario needs.
    Skipped(String),
    /// A check failed, the scenario panicked, or it hung.
    Failed(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Passed => f.write_str("ok"),
            Self::Skipped(why) => write!(f, "skipped ({why})"),
            Self::Failed(why) => write!(f, "FAILED: {why}"),
        }
    }
}

/// Runs one scenario on its own streams and durables, in its own task so a
/// panic or hang is reported as a failure.
pub async fn run_scenario(harness: Arc<dyn Harness>, scenario: &Scenario) -> Outcome {
    let features = harness.features();
    let missing: Vec<String> = scenario
        .requires
        .iter()
        .filter(|r| !r.met_by(&features))
        .map(|r| format!("{r:?}"))
        .collect();
    if !missing.is_empty() {
        return Outcome::Skipped(format!("harness lacks {}", missing.join(", ")));
    }
    let task = tokio::spawn((scenario.run)(Ctx::new(harness)));
    match tokio::time::timeout(SCENARIO_LIMIT, task).await {
        Ok(Ok(Ok(()))) => Outcome::Passed,
        Ok(Ok(Err(failure))) => Outcome::Failed(failure.to_string()),
        Ok(Err(join)) => Outcome::Failed(panic_text(join)),
        Err(_) => Outcome::Failed(format!("did not finish within {SCENARIO_LIMIT:?}")),
    }
}

fn panic_text(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => {
            let text = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "non-text panic".to_owned());
            format!("panicked: {text}")
        }
        Err(join) => format!("task failed: {join}"),
    }
}

/// The outcome of every scenario of a run, in run order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `(scenario name, outcome)` pairs.
    pub outcomes: Vec<(&'static str, Outcome)>,
}

impl Report {
    /// The failed scenarios with their reasons.
    pub fn failures(&self) -> Vec<(&'static str, &str)> {
        self.outcomes
            .iter()
            .filter_map(|(name, outcome)| match outcome {
                Outcome::Failed(why) => Some((*name, why.as_str())),
                _ => None,
            })
            .collect()
    }

    /// Panics listing every failed scenario, if any failed.
    pub fn assert_passed(&self) {
        let failures = self.failures();
        if !failures.is_empty() {
            let list: Vec<String> = failures
                .iter()
                .map(|(name, why)| format!("  {name}: {why}"))
                .collect();
            panic!(
                "{} of {} conformance scenarios failed:\n{}",
                failures.len(),
                self.outcomes.len(),
                list.join("\n")
            );
        }
    }
}

/// Runs every scenario on one shared harness (scenarios that close the
/// broker last), printing `scenario <name> ... <outcome>` for each.
pub async fn run_all(harness: impl Harness) -> Report {
    let harness: Arc<dyn Harness> = Arc::new(harness);
    let ordered = SCENARIOS
        .iter()
        .filter(|s| !s.closes_broker)
        .chain(SCENARIOS.iter().filter(|s| s.closes_broker));
    let mut report = Report::default();
    for scenario in ordered {
        let outcome = run_scenario(Arc::clone(&harness), scenario).await;
        println!("scenario {} ... {outcome}", scenario.name);
        report.outcomes.push((scenario.name, outcome));
    }
    report
}

/// Runs the scenario called `name` on `harness`, prints its outcome, and
/// panics if it failed. Used by the tests [`crate::conformance_tests!`]
/// generates.
pub async fn run_named(name: &str, harness: impl Harness) {
    let scenario = SCENARIOS
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no conformance scenario is called {name}"));
    let outcome = run_scenario(Arc::new(harness), scenario).await;
    println!("scenario {name} ... {outcome}");
    if let Outcome::Failed(why) = outcome {
        panic!("scenario {name} failed: {why}");
    }
}

/// Panics unless `names` lists every scenario exactly once.
pub fn assert_covers(names: &[&str]) {
    let mut listed: Vec<&str> = names.to_vec();
    listed.sort_unstable();
    let mut known: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
    known.sort_unstable();
    assert_eq!(
        listed, known,
        "conformance_tests! and SCENARIOS list different scenarios"
    );
}

//! The adapter conformance suite: one set of scenarios, every adapter.
//!
//! Modelled on Watermill's universal pub/sub tests. An adapter's test file
//! implements [`Harness`] (a broker on a backing store, a way to restart it,
//! and the [`SuiteFeatures`] it claims) and invokes
//! [`conformance_tests!`](crate::conformance_tests), which generates one
//! `#[tokio::test]` per scenario on a fresh harness:
//!
//! ```ignore
//! use backbone_testkit::conformance::{Harness, SuiteFeatures};
//! struct MemoryHarness(Arc<dyn Broker>);
//! impl Harness for MemoryHarness { /* ... */ }
//! async fn harness() -> MemoryHarness { MemoryHarness(Arc::new(MemoryBroker::new())) }
//! backbone_testkit::conformance_tests!(harness);
//! ```
//!
//! [`run_all`] runs every scenario on one shared harness instead and returns
//! a [`Report`].
//!
//! # Isolation
//! Every scenario creates its own streams (`CT_<label>_<token>` capturing
//! `ct.<token>.<label>.>`) and durables (`<name>_<token>`), with a token
//! unique to the process and run, so scenarios never see each other's data
//! even on a shared broker.
//!
//! # What is asserted
//! Behaviour, never speed: waits are generous ([`PATIENCE`]) and timing
//! checks are lower bounds only (a nak delay is not cut short). Errors are
//! checked by kind. A scenario needing a capability the harness does not
//! claim ([`Requirement`]) is reported as skipped; capabilities the broker
//! reports itself, such as several filter subjects, are tested both ways: the
//! feature works where claimed and fails with `Unsupported` where not.

mod harness;
mod macros;
mod runner;
mod scenarios;
#[cfg(test)]
mod self_test;
mod support;

pub use harness::{Harness, SuiteFeatures};
pub use runner::{Outcome, Report, assert_covers, run_all, run_named, run_scenario};
pub use scenarios::{Requirement, SCENARIOS, Scenario};
pub use support::{Failure, PATIENCE, Verdict};

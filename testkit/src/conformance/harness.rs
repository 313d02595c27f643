//! What an adapter's test file provides to run the suite: a [`Harness`].

use std::sync::Arc;

use backbone_broker::Broker;
use futures::future::BoxFuture;

/// What the adapter under test claims beyond the contract's core. A scenario
/// that needs a capability the harness does not claim is reported as skipped,
/// never silently passed.
///
/// Capabilities the broker reports itself ([`backbone_broker::Features`], e.g.
/// `multiple_filter_subjects`) are read from [`Broker::features`] instead: the
/// suite then checks that an unsupported request fails with `Unsupported`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SuiteFeatures {
    /// [`Harness::restart`] can stop and start the backing broker (a server
    /// process, or a reopened embedded store).
    pub restartable: bool,
    /// Acknowledged messages and consumer progress survive a restart.
    pub persistent: bool,
    /// Settling a delivery that is no longer pending fails with
    /// `AckErrorKind::NotPending`. JetStream does not report this for plain
    /// acks, so its harness leaves it off.
    pub detects_double_ack: bool,
    /// Headers come back in the order they were published across different
    /// names too. Without it the suite still requires every header, the
    /// order of each name's values, and nothing else: async-nats decodes
    /// delivered headers into a hash map, so the JetStream adapter cannot
    /// keep the order of different names.
    pub preserves_header_order: bool,
}

/// A factory for the broker under test, implemented by each adapter's test
/// file.
///
/// The suite gives each scenario its own streams, subjects and durable names
/// (unique per run), so scenarios never see each other's data whether they
/// share one harness ([`super::run_all`]) or each get a fresh one
/// ([`crate::conformance_tests!`]).
///
/// Methods return boxed futures so the suite can hold a `dyn Harness`:
/// implement them with `Box::pin(async move { ... })`.
pub trait Harness: Send + Sync + 'static {
    /// A broker on the harness's backing store. Calls may return the same
    /// instance; after [`Harness::restart`] or after a scenario closed it, a
    /// usable one (reconnected or reopened). Panics if the broker cannot be
    /// reached, which fails the scenario.
    fn broker(&self) -> BoxFuture<'_, Arc<dyn Broker>>;

    /// Restarts the backing broker: kills and restarts the server process, or
    /// closes and reopens the embedded store. Brokers handed out before may
    /// fail afterwards (`BrokerUnavailable`); call [`Harness::broker`] again.
    /// While a restart runs, [`Harness::broker`] waits for it. Returns false
    /// when the adapter cannot restart (then [`SuiteFeatures::restartable`]
    /// is false too).
    fn restart(&self) -> BoxFuture<'_, bool>;

    /// What the adapter claims.
    fn features(&self) -> SuiteFeatures;
}

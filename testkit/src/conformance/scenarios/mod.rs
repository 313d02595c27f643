//! Every scenario of the suite, in the order [`super::run_all`] runs them.

mod delivery;
mod log;
mod positions;
mod pubsub;
mod restart;
mod timing;

use futures::future::BoxFuture;

use super::{
    harness::SuiteFeatures,
    support::{Ctx, Verdict},
};

/// A capability a scenario needs beyond the contract's core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// The harness can restart the broker.
    Restartable,
    /// Data survives a restart.
    Persistent,
    /// A second settle of a delivery fails with `NotPending`.
    DetectsDoubleAck,
}

impl Requirement {
    /// Whether `features` meets the requirement.
    pub fn met_by(self, features: &SuiteFeatures) -> bool {
        match self {
            Self::Restartable => features.restartable,
            Self::Persistent => features.persistent,
            Self::DetectsDoubleAck => features.detects_double_ack,
        }
    }
}

/// One scenario: a name, what it needs, and its body.
#[derive(Clone, Copy)]
pub struct Scenario {
    /// Unique snake_case name; the test function generated for it has it too.
    pub name: &'static str,
    /// Capabilities it needs; without them it is skipped.
    pub requires: &'static [Requirement],
    /// The scenario closes the broker it is given, so a shared harness runs
    /// it last.
    pub closes_broker: bool,
    pub(crate) run: fn(Ctx) -> BoxFuture<'static, Verdict>,
}

impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scenario")
            .field("name", &self.name)
            .field("requires", &self.requires)
            .field("closes_broker", &self.closes_broker)
            .finish()
    }
}

macro_rules! scenario {
    ($module:ident::$name:ident $(, requires = [$($req:ident),*])? $(, closes_broker = $closes:literal)?) => {
        Scenario {
            name: stringify!($name),
            requires: &[$($(Requirement::$req),*)?],
            closes_broker: false $(|| $closes)?,
            run: |ctx| Box::pin($module::$name(ctx)),
        }
    };
}

/// Every scenario. Keep in step with [`crate::conformance_tests!`], whose
/// generated `conformance_covers_every_scenario` test checks it.
pub static SCENARIOS: &[Scenario] = &[
    scenario!(pubsub::publish_subscribe_headers_intact),
    scenario!(pubsub::concurrent_subscribe),
    scenario!(pubsub::many_subjects_concurrently),
    scenario!(pubsub::per_subject_order),
    scenario!(pubsub::subject_isolation),
    scenario!(pubsub::new_subscriber_receives_old_events),
    scenario!(pubsub::consumer_groups_each_get_everything),
    scenario!(pubsub::unacked_stay_pending),
    scenario!(delivery::redelivery_after_nak),
    scenario!(delivery::no_next_before_ack),
    scenario!(delivery::continue_after_consumer_close),
    scenario!(delivery::concurrent_close),
    scenario!(delivery::continue_after_errors),
    scenario!(delivery::nak_delay_honoured),
    scenario!(delivery::ack_wait_redelivery),
    scenario!(delivery::max_deliver_exhausted_reported),
    scenario!(delivery::recreated_durable_skips_acked),
    scenario!(delivery::term_never_redelivers),
    scenario!(
        delivery::double_ack_not_pending,
        requires = [DetectsDoubleAck]
    ),
    scenario!(timing::in_progress_extends_ack_wait),
    scenario!(timing::backoff_delays_honoured),
    scenario!(log::dedup_window),
    scenario!(log::expected_last_subject_seq),
    scenario!(log::publish_routing_errors),
    scenario!(log::get_by_seq),
    scenario!(log::last_on_subject),
    scenario!(log::read_ranges),
    scenario!(log::stream_info_counts),
    scenario!(log::purge_rules),
    scenario!(positions::start_by_time),
    scenario!(positions::start_by_sequence),
    scenario!(positions::filters),
    scenario!(positions::multiple_filter_subjects),
    scenario!(positions::consumer_errors),
    scenario!(positions::subject_rules_are_shared),
    scenario!(
        restart::durable_survives_restart,
        requires = [Restartable, Persistent]
    ),
    scenario!(
        restart::restart_during_publishes_loses_nothing,
        requires = [Restartable, Persistent]
    ),
    scenario!(restart::publisher_close_loses_nothing, closes_broker = true),
];

//! Backbone's consumer runtime and the seed services' read models.
//!
//! The crate has two layers. The **runtime** (everything below but
//! `models` and `reactors`) is what a service team builds its own read
//! models on; with `default-features = false` it is all they compile. The
//! **seed layer** sits on top of it behind the `models` feature: the seed
//! services' read models and reactors. The runtime never reaches up into
//! the seed layer; `scripts/test` builds it alone to keep it that way. The
//! process that runs read models from a config, with HTTP, is
//! `backbone-server` (`server/`).
//!
//! - **Projections** ([`ReadModel`]) build deterministic state in their own
//!   sled store ([`ProjectionStore`]). [`ProjectionRunner`] and
//!   [`ReactorRunner`] share one loop (binding, fetching, exhausted events,
//!   the wait for a previous process's deliveries); a projection fetches a batch,
//!   applies it through a [`Transaction`] and commits the writes together
//!   with the checkpoint before acknowledging: at-least-once delivery,
//!   exactly-once effect, in stream order.
//! - **Reactors** ([`Reactor`]) perform side effects, keyed by event id, and
//!   never fire during a replay ([`RunMode`]).
//! - **Failure policy**: [`HandlerError::Transient`] is retried with
//!   exponential backoff; [`HandlerError::Permanent`], exhausted deliveries
//!   and undecodable messages go to the dead-letter stream ([`dead_letter`]).
//! - **Redrives** ([`redrive`]) put a dead letter back for the one
//!   consumer that wrote it; every other consumer skips it, so each applies
//!   the event exactly once, live and in rebuilds.
//! - **Layout** ([`layout`]): `<data_dir>/log`, `<data_dir>/read-models/`,
//!   shared with `replay-tool`.
//! - **Rebuilds** ([`rebuild()`]) re-apply the log into a shadow store and
//!   swap it in, for `replay-tool rebuild`.
//! - **Read models** of the seed services live in `models`, with a
//!   registry by name; each has a [`ProjectionStore::digest`] to compare a
//!   rebuild with the live model.
//! - **Reactors** of the seed services live in `reactors`
//!   (`follow-notifier`, writing a de-duplicated outbox).
//! - **Rebuild swaps** are journaled; opening a store completes or undoes an
//!   interrupted one ([`swap`]).
//! - **Status** (`status`, with `models`): the report `replay-tool status`
//!   prints and the server's admin API answers.
//! - **Health and metrics** ([`health`], [`metrics`]): what each runner
//!   reports, for the server's `/healthz` and `/metrics`.
//!
//! See `docs/consumers.md` for the operator's view.

mod ack_floor;
pub mod config;
pub mod dead_letter;
pub mod dedup;
pub mod digest;
pub mod error;
pub mod health;
pub mod layout;
pub mod metrics;
pub mod model;
#[cfg(feature = "models")]
pub mod models;
#[cfg(feature = "otel")]
mod otel;
mod owed;
pub mod projection;
pub mod reactor;
#[cfg(feature = "models")]
pub mod reactors;
pub mod rebuild;
pub mod redrive;
mod runner;
pub mod shutdown;
mod startup;
#[cfg(feature = "models")]
pub mod status;
pub mod store;
pub mod swap;
pub mod transaction;

pub use config::RuntimeConfig;
pub use error::{
    HandlerError, RebuildError, RebuildErrorKind, RunError, RunErrorKind, StoreError,
    StoreErrorKind,
};
pub use health::{Health, HealthReport};
pub use metrics::Metrics;
pub use model::ReadModel;
pub use projection::{ProjectionRunner, RunReport};
pub use reactor::{Reactor, ReactorRunner, RunMode};
pub use rebuild::{RebuildOptions, RebuildProgress, RebuildReport, apply_log, rebuild};
pub use shutdown::{Shutdown, ShutdownTrigger, shutdown_channel};
pub use store::{ProjectionStore, StoreOptions};
pub use transaction::Transaction;

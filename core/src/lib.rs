//! The small core every Backbone crate shares, with nothing heavy in it:
//!
//! - [`Error`]: the error shape of every operation, `Error<Kind>` with a
//!   `PartialEq` kind per operation, as in async-nats;
//! - [`Headers`]: message headers as they travel on the wire;
//! - [`backoff`]: the one retry-delay rule;
//! - [`release`]: waiting out a store lock that is still being released;
//! - [`subject`]: the subject grammar (names, publish subjects, patterns,
//!   matching and overlap), the one set of rules every adapter validates
//!   with, so the same bad input fails the same way everywhere.
//!
//! The broker contract (`backbone-broker`) builds on this crate alone; the
//! protobuf schemas (`backbone-schemas`) re-export it.

pub mod backoff;
pub mod error;
pub mod headers;
pub mod release;
pub mod subject;

pub use error::{Error, Source};
pub use headers::Headers;

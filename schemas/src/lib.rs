//! Backbone's event schemas and wire contract.
//!
//! (Being written: see issue 2.)

pub mod error;
pub mod headers;

pub use error::Error;
pub use headers::Headers;

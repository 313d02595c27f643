//! The server's routes, one file per area.

pub(crate) mod health;
pub(crate) mod publish;

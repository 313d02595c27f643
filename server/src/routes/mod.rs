//! The server's routes, one file per area.

pub(crate) mod admin;
pub(crate) mod health;
pub(crate) mod log;
pub(crate) mod models;
pub(crate) mod publish;
pub(crate) mod rebuilds;

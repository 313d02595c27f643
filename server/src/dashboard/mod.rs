//! `GET /`: the operator dashboard, one page served by the server itself
//! (no CDN): health, streams with their rate, consumers with lag, read
//! models with checkpoints, and dead letters with a redrive button. It
//! polls `/healthz`, `/v1/admin/status` and `/v1/admin/dead-letters` every
//! second; with tokens configured it asks for an admin token and keeps it
//! for the browser tab only (`sessionStorage`).

use axum::{
    http::header,
    response::{Html, IntoResponse},
};

const PAGE: &str = include_str!("index.html");

/// `GET /`.
#[utoipa::path(get, path = "/", tag = "health", summary = "The operator dashboard (HTML)", responses((status = 200, description = "OK")))]
pub(crate) async fn page() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE))
}

//! `/v1/admin/...`: what an operator asks a running server, with a token
//! of `admin` scope.
//!
//! - `GET /v1/admin/status`: the [`StatusReport`] `replay-tool status`
//!   prints (streams, consumers with lag, dead-letter depth, read-model
//!   checkpoints), read through the server's own broker and stores, so it
//!   answers while the server holds the embedded log.

use std::sync::Arc;

use axum::{Extension, Json, Router, extract::State, http::StatusCode, routing::get};
use backbone_consumers::status::{StatusReport, read_model_rows};

use crate::{access::Principal, api_error::ApiError, app::AppState};

/// The admin routes.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/v1/admin/status", get(status))
}

/// `GET /v1/admin/status`.
async fn status(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<StatusReport>, ApiError> {
    principal.check_admin()?;
    let rows = read_model_rows(&state.data_dir, |name| state.stores.get(name).cloned());
    StatusReport::collect(state.broker.as_ref(), rows)
        .await
        .map(Json)
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "BrokerUnavailable",
                e.to_string(),
            )
            .retry_after(crate::api_error::RETRY_AFTER)
        })
}

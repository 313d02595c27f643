//! `GET /openapi.json`: the OpenAPI 3.1 document of every route, generated
//! by `utoipa` from the handlers' `#[utoipa::path]` attributes.

use axum::Json;
use utoipa::{
    Modify, OpenApi, ToSchema,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::{dashboard, metrics, routes, webhook};

/// Every failed request's body.
#[derive(Debug, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorObject,
}

/// The error object: `kind` for code, `message` for people, and members
/// that depend on the kind (`header`, `index`, `expected`, `found`,
/// `actual`, `scope`, ...).
#[derive(Debug, ToSchema)]
pub struct ErrorObject {
    /// Stable, e.g. `MissingHeader`, `UnknownType`, `Forbidden`.
    pub kind: String,
    /// What went wrong.
    pub message: String,
}

/// Bearer tokens, when the server has `[[tokens]]`.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Backbone server",
        description = "Publish events (CloudEvents HTTP binding), ingest webhooks, query read models, administer the log. \
                       Every route may also answer 503 Overloaded with Retry-After when the server is at its request limit. \
                       With [[tokens]] configured, /v1 routes other than webhooks need a bearer token."
    ),
    paths(
        routes::publish::publish,
        webhook::ingest,
        routes::models::list,
        routes::models::follow_counts,
        routes::models::followers,
        routes::models::following,
        routes::models::feed,
        routes::models::balances,
        routes::models::ledger,
        routes::models::payment,
        routes::models::images,
        routes::models::latest_tune,
        routes::models::pack,
        routes::models::conversations,
        routes::models::unread,
        routes::models::conversation,
        routes::models::audit_events,
        routes::models::audit_event,
        routes::admin::status,
        routes::admin::letters,
        routes::admin::letter,
        routes::admin::redrive,
        routes::admin::purge,
        routes::log::messages,
        routes::rebuilds::start,
        routes::rebuilds::list,
        routes::rebuilds::show,
        routes::rebuilds::events,
        routes::health::healthz,
        routes::health::readyz,
        metrics::scrape,
        dashboard::page,
        document,
    ),
    components(schemas(ErrorBody, ErrorObject)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

/// The OpenAPI document of this server.
#[utoipa::path(get, path = "/openapi.json", tag = "health", summary = "This document", responses((status = 200, description = "OK")))]
pub(crate) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

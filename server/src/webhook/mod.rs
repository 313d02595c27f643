//! Webhook ingest: `POST /v1/webhooks/{name}`, one route per provider
//! declared in the config.
//!
//! ```toml
//! [[webhooks]]
//! name = "whatsapp"                    # the route: /v1/webhooks/whatsapp
//! mapping = "whatsapp-cloud"           # a shipped mapping, or an inline table
//! secret_env = "WHATSAPP_APP_SECRET"   # or secret_file = "/etc/backbone/whatsapp.secret"
//! source = "message-service"           # ce-source of its events [default: webhook/<name>]
//! ```
//!
//! A delivery is verified first: HMAC-SHA256 of the raw body with the
//! secret must equal the signature header (names per [`WebhookMapping`]);
//! missing or wrong answers 401 `BadSignature` and the body is neither
//! read further nor logged. Then the mapping turns it into events, each
//! validated like any published event, and they are published in order.
//! The bearer tokens do not apply: the signature is the provider's
//! credential.
//!
//! Shipped mappings: `whatsapp-cloud` (Meta's message webhooks ->
//! `message.received`), `image-callback` (an image-generation provider's
//! callbacks -> `tune.created`, `image.processed`, `pack.images_updated`),
//! `payment-provider` (-> `payment.received`, `payment.refunded`). Their
//! TOML is in `server/src/webhook/presets/`.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use backbone_schemas::mapping::{self, EventMapping, Mapping};
use hmac::{Hmac, Mac as _};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::{
    api_error::ApiError,
    app::AppState,
    cloudevents,
    config::{ServerError, ServerErrorKind},
    routes::publish,
};

/// The mappings shipped with the server, by name.
const PRESETS: [(&str, &str); 3] = [
    (
        "whatsapp-cloud",
        include_str!("presets/whatsapp-cloud.toml"),
    ),
    (
        "image-callback",
        include_str!("presets/image-callback.toml"),
    ),
    (
        "payment-provider",
        include_str!("presets/payment-provider.toml"),
    ),
];

/// A provider's webhook: where its signature is and the events it makes
/// ([`backbone_schemas::mapping`] says how `events` are written).
///
/// ```toml
/// signature_header = "x-hub-signature-256"   # where the HMAC-SHA256 is
/// signature_prefix = "sha256="               # what precedes its hex digits
/// [[events]]
/// type = "message.received"
/// # ...
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookMapping {
    /// The request header holding the signature.
    pub signature_header: String,
    /// Text before the signature's hex digits, e.g. `sha256=`.
    #[serde(default)]
    pub signature_prefix: String,
    /// The events a delivery produces.
    pub events: Vec<EventMapping>,
}

impl WebhookMapping {
    /// Why the mapping is invalid, if it is ([`Mapping::problem`]).
    pub fn problem(&self) -> Option<String> {
        Mapping {
            events: self.events.clone(),
        }
        .problem()
    }
}

/// A shipped mapping by name.
pub fn preset(name: &str) -> Option<WebhookMapping> {
    PRESETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| toml::from_str(text).expect("the shipped mappings parse"))
}

/// One `[[webhooks]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The route's last segment, and part of every event id it makes.
    pub name: String,
    /// A shipped mapping's name, or a mapping table.
    pub mapping: MappingRef,
    /// The environment variable holding the signing secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// A file holding the signing secret (trailing newline ignored).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// The events' `ce-source` [default: `webhook/<name>`].
    #[serde(default)]
    pub source: Option<String>,
}

/// A mapping by name or inline.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum MappingRef {
    /// A shipped mapping.
    Preset(String),
    /// A mapping written in the config.
    Inline(WebhookMapping),
}

impl WebhookConfig {
    /// The mapping, or why there is none.
    pub fn resolve_mapping(&self) -> Result<WebhookMapping, String> {
        let mapping = match &self.mapping {
            MappingRef::Preset(name) => preset(name).ok_or_else(|| {
                let known: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
                format!(
                    "webhook {}: no shipped mapping {name:?} (known: {})",
                    self.name,
                    known.join(", ")
                )
            })?,
            MappingRef::Inline(m) => m.clone(),
        };
        match mapping.problem() {
            Some(problem) => Err(format!("webhook {}: {problem}", self.name)),
            None => Ok(mapping),
        }
    }

    fn secret(&self) -> Result<Vec<u8>, String> {
        let secret = match (&self.secret_env, &self.secret_file) {
            (Some(var), None) => std::env::var(var)
                .map_err(|_| format!("webhook {}: ${var} is not set", self.name))?,
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| format!("webhook {}: cannot read {}: {e}", self.name, path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            _ => {
                return Err(format!(
                    "webhook {}: give exactly one of secret_env, secret_file",
                    self.name
                ));
            }
        };
        if secret.is_empty() {
            return Err(format!("webhook {}: the secret is empty", self.name));
        }
        Ok(secret.into_bytes())
    }
}

/// A webhook ready to serve: its mapping and secret.
pub struct Webhook {
    name: String,
    source: String,
    signature_header: String,
    signature_prefix: String,
    mapping: Mapping,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Resolves every configured webhook's mapping and secret; a missing
/// secret or a bad mapping fails the start.
pub fn open(configs: &[WebhookConfig]) -> Result<HashMap<String, Webhook>, ServerError> {
    let config_error = |detail: String| ServerError::with_detail(ServerErrorKind::Config, detail);
    let mut webhooks = HashMap::new();
    for config in configs {
        let WebhookMapping {
            signature_header,
            signature_prefix,
            events,
        } = config.resolve_mapping().map_err(config_error)?;
        let webhook = Webhook {
            name: config.name.clone(),
            source: config
                .source
                .clone()
                .unwrap_or_else(|| format!("webhook/{}", config.name)),
            signature_header,
            signature_prefix,
            mapping: Mapping { events },
            secret: config.secret().map_err(config_error)?,
        };
        if webhooks.insert(config.name.clone(), webhook).is_some() {
            return Err(config_error(format!(
                "webhook {} is configured twice",
                config.name
            )));
        }
    }
    Ok(webhooks)
}

impl Webhook {
    /// 401 `BadSignature` unless the signature header holds the body's
    /// HMAC-SHA256 (compared in constant time).
    fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
        let bad = |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "BadSignature", message);
        let header = headers
            .get(&self.signature_header)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| bad(&format!("no {} header", self.signature_header)))?;
        let digits = header
            .trim()
            .strip_prefix(&self.signature_prefix)
            .ok_or_else(|| bad("the signature has the wrong prefix"))?;
        let signature = hex::decode(digits).map_err(|_| bad("the signature is not hex"))?;
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(body);
        mac.verify_slice(&signature)
            .map_err(|_| bad("the signature does not match the body"))
    }
}

/// `POST /v1/webhooks/{name}`.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{name}",
    tag = "webhooks",
    summary = "A provider's signed webhook delivery, mapped to events",
    params(("name" = String, Path, description = "The webhook's configured name")),
    responses((status = 200, description = "OK"), (status = 201, description = "Stored"), (status = 202, description = "Spooled: published when the broker is back"), (status = 400, description = "Bad request", body = crate::openapi::ErrorBody), (status = 401, description = "No valid token (or signature)", body = crate::openapi::ErrorBody), (status = 404, description = "Not found", body = crate::openapi::ErrorBody), (status = 413, description = "Over the size limit", body = crate::openapi::ErrorBody), (status = 422, description = "Unprocessable", body = crate::openapi::ErrorBody), (status = 503, description = "Unavailable; retry after Retry-After", body = crate::openapi::ErrorBody)),
)]
pub(crate) async fn ingest(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let webhook = state
        .webhooks
        .get(&name)
        .ok_or_else(|| ApiError::not_found(format!("no webhook {name}")))?;
    let body = body.map_err(|e| state.body_rejection(&e))?;
    webhook.verify(&headers, &body)?;
    let json: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::malformed(format!("the delivery is not JSON: {e}")))?;
    let delivery = mapping::Delivery {
        body: &json,
        query: &query,
    };
    let events = webhook
        .mapping
        .events(
            &format!("backbone-webhook/{}", webhook.name),
            &webhook.source,
            &delivery,
        )
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Unmappable",
                e.reason.clone(),
            )
            .with("type", e.event_type)
        })?;
    if events.is_empty() {
        return Ok((StatusCode::OK, Json(json!({ "results": [] }))).into_response());
    }
    let mut envelopes = events
        .into_iter()
        .enumerate()
        .map(|(i, event)| cloudevents::structured(event).map_err(|e| e.at(i)))
        .collect::<Result<Vec<_>, _>>()?;
    let span = crate::telemetry::publish_span(&headers, &mut envelopes);
    Ok(tracing::Instrument::instrument(publish::store(&state, &envelopes), span).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_mapping_is_valid() {
        for (name, _) in PRESETS {
            let mapping = preset(name).unwrap();
            assert_eq!(mapping.problem(), None, "{name}");
        }
    }

    #[test]
    fn a_missing_or_empty_secret_fails_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let config = |secret_env: Option<&str>, secret_file: Option<PathBuf>| WebhookConfig {
            name: "w".into(),
            mapping: MappingRef::Preset("payment-provider".into()),
            secret_env: secret_env.map(str::to_owned),
            secret_file,
            source: None,
        };
        for c in [
            config(Some("BACKBONE_TEST_SURELY_UNSET_SECRET"), None),
            config(None, Some(empty)),
            config(None, Some(dir.path().join("absent"))),
            config(None, None),
        ] {
            let err = open(&[c]).unwrap_err();
            assert_eq!(err.kind(), &ServerErrorKind::Config);
        }
    }
}

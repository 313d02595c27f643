//! Access control: bearer tokens from the config, each with scopes.
//!
//! ```toml
//! [[tokens]]
//! name = "social-api"                      # shown in logs, never the token
//! sha256 = "9f86d081884c7d65..."           # hex SHA-256 of the token: hashed at rest
//! publish = ["user.*"]                     # event types it may publish: a type, "<domain>.*" or "*"
//! read = ["notifications"]                 # read models it may query, or "*"
//! admin = false                            # admin routes
//! ```
//!
//! Without any `[[tokens]]` the server is open, as on a developer's
//! loopback; with one or more, every `/v1/` route needs
//! `Authorization: Bearer <token>`: none or an unknown one is 401
//! `Unauthorized`, a known one outside its scopes 403 `Forbidden`. The
//! probes (`/healthz`, `/readyz`) and `/metrics` stay open, as scrapers and
//! load balancers expect. A token is looked up by its SHA-256, so the
//! config never holds a usable secret; a token is never logged and no
//! `Debug` shows it (a request's principal shows only the token's name).

use std::{collections::HashMap, fmt, sync::Arc};

use axum::{
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use backbone_schemas::Registry;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::{api_error::ApiError, app::AppState};

/// One `[[tokens]]` entry.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds the token, for logs and errors.
    pub name: String,
    /// The token's SHA-256, 64 hex digits (`printf %s "$TOKEN" | sha256sum`).
    pub sha256: String,
    /// Event types the token may publish: `payment.received`, `payment.*`
    /// or `*`.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Read models the token may query, or `*`.
    #[serde(default)]
    pub read: Vec<String>,
    /// Whether the token may use the admin routes.
    #[serde(default)]
    pub admin: bool,
}

impl fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenConfig")
            .field("name", &self.name)
            .field("publish", &self.publish)
            .field("read", &self.read)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

impl TokenConfig {
    /// Why the entry is invalid, if it is: a hash that is not 64 hex
    /// digits, or a publish scope naming no registered event type.
    pub fn problem(&self) -> Option<String> {
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some(format!("token {}: sha256 must be 64 hex digits", self.name));
        }
        let types = Registry::global().event_types();
        self.publish
            .iter()
            .find(|scope| !types.iter().any(|t| type_in_scope(&t.type_name, scope)))
            .map(|scope| {
                format!(
                    "token {}: publish scope {scope:?} names no registered event type",
                    self.name
                )
            })
    }

    fn may_publish(&self, event_type: &str) -> bool {
        self.publish.iter().any(|s| type_in_scope(event_type, s))
    }

    fn may_read(&self, model: &str) -> bool {
        self.read.iter().any(|s| s == "*" || s == model)
    }
}

fn type_in_scope(event_type: &str, scope: &str) -> bool {
    match scope.strip_suffix(".*") {
        _ if scope == "*" => true,
        Some(domain) => event_type.split_once('.').is_some_and(|(d, _)| d == domain),
        None => scope == event_type,
    }
}

/// Who made a request.
#[derive(Debug, Clone)]
pub enum Principal {
    /// No tokens are configured: everything is allowed.
    Open,
    /// The holder of this token.
    Token(Arc<TokenConfig>),
}

impl Principal {
    /// 403 unless the principal may publish `event_type`.
    pub fn check_publish(&self, event_type: &str) -> Result<(), ApiError> {
        match self {
            Self::Open => Ok(()),
            Self::Token(t) if t.may_publish(event_type) => Ok(()),
            Self::Token(t) => Err(forbidden(&t.name, &format!("publish:{event_type}"))),
        }
    }

    /// 403 unless the principal may query read model `model`.
    pub fn check_read(&self, model: &str) -> Result<(), ApiError> {
        match self {
            Self::Open => Ok(()),
            Self::Token(t) if t.may_read(model) => Ok(()),
            Self::Token(t) => Err(forbidden(&t.name, &format!("read:{model}"))),
        }
    }

    /// 403 unless the principal may use the admin routes.
    pub fn check_admin(&self) -> Result<(), ApiError> {
        match self {
            Self::Open => Ok(()),
            Self::Token(t) if t.admin => Ok(()),
            Self::Token(t) => Err(forbidden(&t.name, "admin")),
        }
    }
}

fn forbidden(name: &str, scope: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "Forbidden",
        format!("token {name} lacks the scope {scope}"),
    )
    .with("scope", scope)
}

/// The configured tokens, by hash.
#[derive(Debug, Default)]
pub struct Access {
    by_hash: HashMap<String, Arc<TokenConfig>>,
}

impl Access {
    /// Access control over `tokens` (validated by the config).
    pub fn new(tokens: &[TokenConfig]) -> Self {
        let by_hash = tokens
            .iter()
            .map(|t| (t.sha256.to_ascii_lowercase(), Arc::new(t.clone())))
            .collect();
        Self { by_hash }
    }

    /// The principal of a request with these `Authorization` header values.
    fn principal(&self, authorization: Option<&HeaderValue>) -> Result<Principal, ApiError> {
        if self.by_hash.is_empty() {
            return Ok(Principal::Open);
        }
        let token = authorization
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("an Authorization: Bearer token is required"))?;
        let hash: String = Sha256::digest(token.trim().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.by_hash
            .get(&hash)
            .map(|t| Principal::Token(t.clone()))
            .ok_or_else(|| unauthorized("unknown token"))
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
}

/// Resolves the request's [`Principal`] into its extensions; 401 (with
/// `WWW-Authenticate: Bearer`) when tokens are configured and none valid
/// was sent.
pub(crate) async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    match state
        .access
        .principal(request.headers().get(header::AUTHORIZATION))
    {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(e) => {
            let mut response = e.into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "s3cret";

    fn token(publish: &[&str], read: &[&str]) -> TokenConfig {
        TokenConfig {
            name: "social-api".into(),
            sha256: Sha256::digest(TOKEN)
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect(),
            publish: publish.iter().map(|s| (*s).to_owned()).collect(),
            read: read.iter().map(|s| (*s).to_owned()).collect(),
            admin: false,
        }
    }

    fn bearer(value: &str) -> HeaderValue {
        HeaderValue::from_str(value).unwrap()
    }

    #[test]
    fn scopes_are_types_domains_or_everything() {
        let access = Access::new(&[token(&["user.*", "payment.received"], &["notifications"])]);
        let principal = access.principal(Some(&bearer("Bearer s3cret"))).unwrap();
        assert!(principal.check_publish("user.followed").is_ok());
        assert!(principal.check_publish("payment.received").is_ok());
        let denied = principal.check_publish("payment.refunded").unwrap_err();
        assert_eq!(
            (denied.status, denied.kind),
            (StatusCode::FORBIDDEN, "Forbidden")
        );
        assert!(principal.check_read("notifications").is_ok());
        assert!(principal.check_read("billing").is_err());
        assert!(principal.check_admin().is_err());
    }

    #[test]
    fn missing_malformed_and_unknown_tokens_are_unauthorized() {
        let access = Access::new(&[token(&["*"], &["*"])]);
        for header in [
            None,
            Some(bearer("s3cret")),
            Some(bearer("Bearer nope")),
            Some(bearer("Basic s3cret")),
        ] {
            let e = access.principal(header.as_ref()).unwrap_err();
            assert_eq!(
                (e.status, e.kind),
                (StatusCode::UNAUTHORIZED, "Unauthorized")
            );
        }
        assert!(matches!(
            Access::default().principal(None),
            Ok(Principal::Open)
        ));
    }

    #[test]
    fn debug_and_errors_never_show_the_hash_or_token() {
        let t = token(&["user.*"], &[]);
        let shown = format!("{t:?}");
        assert!(
            !shown.contains(&t.sha256) && !shown.contains(TOKEN),
            "{shown}"
        );
        let e = Principal::Token(Arc::new(t))
            .check_publish("payment.received")
            .unwrap_err();
        assert!(!e.message.contains(TOKEN));
    }

    #[test]
    fn bad_entries_are_named() {
        let mut t = token(&["usr.*"], &[]);
        assert!(t.problem().unwrap().contains("usr.*"));
        t.publish.clear();
        t.sha256 = "abc".into();
        assert!(t.problem().is_some());
    }
}

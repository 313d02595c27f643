//! How to reach and authenticate to NATS.

use std::{fmt, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

/// Credentials presented to the server. Secrets never appear in `Debug`.
///
/// In a config file: `auth = { user_password = { user = "u", password = "p" } }`,
/// `auth = { token = "t" }`, `auth = { nkey_seed = "SU..." }`,
/// `auth = { creds_file = "/etc/backbone/svc.creds" }`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// A user name and password.
    UserPassword {
        /// User name.
        user: String,
        /// Password (redacted in `Debug`).
        password: String,
    },
    /// A shared token (redacted in `Debug`).
    Token(String),
    /// An NKey seed, `SU...` (redacted in `Debug`).
    NKeySeed(String),
    /// A `.creds` file holding a user JWT and seed.
    CredsFile(PathBuf),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::UserPassword { user, .. } => f
                .debug_struct("UserPassword")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
            Self::Token(_) => f.write_str("Token(<redacted>)"),
            Self::NKeySeed(_) => f.write_str("NKeySeed(<redacted>)"),
            Self::CredsFile(path) => f.debug_tuple("CredsFile").field(path).finish(),
        }
    }
}

/// Client-side TLS. Build with `..Default::default()`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsOptions {
    /// Require TLS even if the server does not ask for it.
    pub require: bool,
    /// CA certificate (PEM) trusted for the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for servers that verify clients.
    pub client_cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub client_key_file: Option<PathBuf>,
}

/// How the client reconnects after losing the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconnectOptions {
    /// Reconnect attempts before giving up; `None` retries forever.
    pub max_attempts: Option<usize>,
    /// First delay between attempts; doubles up to `max_delay`.
    #[serde(with = "humantime_serde")]
    pub initial_delay: Duration,
    /// Longest delay between attempts.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
}

impl Default for ReconnectOptions {
    fn default() -> Self {
        Self {
            max_attempts: None,
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
        }
    }
}

/// Options of [`super::JetStreamBroker::connect`]. Build with
/// `..Default::default()`.
///
/// In a config file durations are written like `"5s"` or `"250ms"`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JetStreamOptions {
    /// Server URLs (`nats://host:port`, `tls://host:port`); tried in order.
    pub urls: Vec<String>,
    /// Connection name shown in the server's monitoring.
    pub name: Option<String>,
    /// Credentials.
    pub auth: Auth,
    /// TLS settings; `None` uses TLS only if the server requires it.
    pub tls: Option<TlsOptions>,
    /// Bound on establishing the first connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Bound on every JetStream API request (streams, consumers, gets).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Bound on one publish attempt, from send to acknowledgement.
    #[serde(with = "humantime_serde")]
    pub publish_timeout: Duration,
    /// Extra attempts after a publish timed out while connected. Retries
    /// reuse the message id, so they are only made for messages that have one.
    pub publish_retries: u32,
    /// Publishes awaiting acknowledgement at once in `publish_batch`.
    pub max_in_flight: usize,
    /// Reconnect behaviour.
    pub reconnect: ReconnectOptions,
}

impl Default for JetStreamOptions {
    fn default() -> Self {
        Self {
            urls: vec!["nats://127.0.0.1:4222".into()],
            name: None,
            auth: Auth::None,
            tls: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            publish_timeout: Duration::from_secs(5),
            publish_retries: 1,
            max_in_flight: 256,
            reconnect: ReconnectOptions::default(),
        }
    }
}

impl fmt::Debug for JetStreamOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // URLs may carry `user:password@`; show only what follows the `@`.
        let urls: Vec<String> = self.urls.iter().map(|u| redact_url(u)).collect();
        f.debug_struct("JetStreamOptions")
            .field("urls", &urls)
            .field("name", &self.name)
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("publish_timeout", &self.publish_timeout)
            .field("publish_retries", &self.publish_retries)
            .field("max_in_flight", &self.max_in_flight)
            .field("reconnect", &self.reconnect)
            .finish()
    }
}

/// `url` with any `user:password@` replaced by `<redacted>@`, for logs.
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}<redacted>@{}", &url[..scheme_end + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        for auth in [
            Auth::UserPassword {
                user: "svc".into(),
                password: "hunter2-secret".into(),
            },
            Auth::Token("hunter2-secret".into()),
            Auth::NKeySeed("hunter2-secret".into()),
        ] {
            let options = JetStreamOptions {
                urls: vec!["nats://svc:hunter2-secret@127.0.0.1:4222".into()],
                auth,
                ..Default::default()
            };
            let text = format!("{options:?} {options:#?}");
            assert!(!text.contains("hunter2-secret"), "{text}");
            assert!(text.contains("<redacted>"));
        }
    }
}

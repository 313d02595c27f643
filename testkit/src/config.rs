//! Server configuration variants, rendered into a nats-server config file.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
};

use crate::server::NatsServer;

/// A user of a multi-account setup, with per-user subject permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountUser {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
    /// Subjects the user may publish to; empty allows all.
    pub publish_allow: Vec<String>,
    /// Subjects the user may subscribe to; empty allows all.
    pub subscribe_allow: Vec<String>,
}

/// Server-side TLS: certificate, key, and the CA that client certificates
/// must chain to when `verify` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// The server certificate (PEM).
    pub cert_file: PathBuf,
    /// The server private key (PEM).
    pub key_file: PathBuf,
    /// The CA certificate (PEM) verifying client certificates.
    pub ca_file: Option<PathBuf>,
    /// Require clients to present a certificate signed by `ca_file`.
    pub verify: bool,
}

/// Builds a [`NatsServer`] with a chosen configuration; see
/// [`NatsServer::builder`].
#[derive(Debug, Clone)]
pub struct NatsServerBuilder {
    pub(crate) port: Option<u16>,
    pub(crate) server_name: Option<String>,
    pub(crate) cluster_member: bool,
    jetstream: bool,
    user_password: Option<(String, String)>,
    token: Option<String>,
    accounts: Vec<(String, Vec<AccountUser>)>,
    tls: Option<ServerTls>,
    max_payload: Option<usize>,
    sync_always: bool,
    extra: String,
}

impl Default for NatsServerBuilder {
    fn default() -> Self {
        Self {
            port: None,
            server_name: None,
            cluster_member: false,
            jetstream: true,
            user_password: None,
            token: None,
            accounts: Vec::new(),
            tls: None,
            max_payload: None,
            sync_always: false,
            extra: String::new(),
        }
    }
}

impl NatsServerBuilder {
    /// Enables or disables JetStream (on by default).
    pub fn jetstream(mut self, enabled: bool) -> Self {
        self.jetstream = enabled;
        self
    }

    /// Listens on `port` instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Names the server (required for clustering).
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Requires this user name and password.
    pub fn user_password(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user_password = Some((user.into(), password.into()));
        self
    }

    /// Requires this token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Adds an account with JetStream enabled and these users.
    pub fn account(mut self, name: impl Into<String>, users: Vec<AccountUser>) -> Self {
        self.accounts.push((name.into(), users));
        self
    }

    /// Serves TLS with these files.
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Limits message size (subject, headers and payload) to `bytes`.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = Some(bytes);
        self
    }

    /// Sets JetStream's `sync_interval: always` (fsync every write). Needs a
    /// server that knows the option (2.10 or newer).
    pub fn sync_always(mut self, always: bool) -> Self {
        self.sync_always = always;
        self
    }

    /// Appends raw configuration text, for settings without a typed option.
    pub fn config_text(mut self, text: impl Into<String>) -> Self {
        self.extra.push('\n');
        self.extra.push_str(&text.into());
        self
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(self) -> NatsServer {
        NatsServer::start_with(self)
    }

    pub(crate) fn has_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub(crate) fn has_auth(&self) -> bool {
        self.user_password.is_some() || self.token.is_some() || !self.accounts.is_empty()
    }

    pub(crate) fn jetstream_enabled(&self) -> bool {
        self.jetstream
    }

    /// The config file's text for a server on `port` keeping its store in
    /// `store_dir`.
    pub(crate) fn render(&self, port: u16, store_dir: &Path) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "listen: \"127.0.0.1:{port}\"");
        if let Some(name) = &self.server_name {
            let _ = writeln!(out, "server_name: {}", quote(name));
        }
        if let Some(bytes) = self.max_payload {
            let _ = writeln!(out, "max_payload: {bytes}");
        }
        if self.jetstream {
            let _ = writeln!(out, "jetstream {{");
            let _ = writeln!(
                out,
                "  store_dir: {}",
                quote(&store_dir.display().to_string())
            );
            if self.sync_always {
                let _ = writeln!(out, "  sync_interval: always");
            }
            let _ = writeln!(out, "}}");
        }
        if let Some((user, password)) = &self.user_password {
            let _ = writeln!(
                out,
                "authorization {{ user: {}, password: {} }}",
                quote(user),
                quote(password)
            );
        }
        if let Some(token) = &self.token {
            let _ = writeln!(out, "authorization {{ token: {} }}", quote(token));
        }
        if !self.accounts.is_empty() {
            self.render_accounts(&mut out);
        }
        if let Some(tls) = &self.tls {
            let _ = writeln!(out, "tls {{");
            let _ = writeln!(
                out,
                "  cert_file: {}",
                quote(&tls.cert_file.display().to_string())
            );
            let _ = writeln!(
                out,
                "  key_file: {}",
                quote(&tls.key_file.display().to_string())
            );
            if let Some(ca) = &tls.ca_file {
                let _ = writeln!(out, "  ca_file: {}", quote(&ca.display().to_string()));
            }
            let _ = writeln!(out, "  verify: {}", tls.verify);
            let _ = writeln!(out, "  timeout: 5");
            let _ = writeln!(out, "}}");
        }
        out.push_str(&self.extra);
        out.push('\n');
        out
    }

    fn render_accounts(&self, out: &mut String) {
        let _ = writeln!(out, "accounts {{");
        for (account, users) in &self.accounts {
            let _ = writeln!(out, "  {}: {{", quote(account));
            if self.jetstream {
                let _ = writeln!(out, "    jetstream: enabled");
            }
            let _ = writeln!(out, "    users: [");
            for user in users {
                let _ = write!(
                    out,
                    "      {{ user: {}, password: {}",
                    quote(&user.user),
                    quote(&user.password)
                );
                let publish = permission_list(&user.publish_allow);
                let subscribe = permission_list(&user.subscribe_allow);
                if publish.is_some() || subscribe.is_some() {
                    out.push_str(", permissions: {");
                    if let Some(list) = publish {
                        let _ = write!(out, " publish: {{ allow: {list} }}");
                    }
                    if let Some(list) = subscribe {
                        let _ = write!(out, " subscribe: {{ allow: {list} }}");
                    }
                    out.push_str(" }");
                }
                let _ = writeln!(out, " }}");
            }
            let _ = writeln!(out, "    ]");
            let _ = writeln!(out, "  }}");
        }
        let _ = writeln!(out, "}}");
    }
}

fn permission_list(subjects: &[String]) -> Option<String> {
    (!subjects.is_empty()).then(|| {
        let items: Vec<String> = subjects.iter().map(|s| quote(s)).collect();
        format!("[{}]", items.join(", "))
    })
}

/// A double-quoted config string; test values never hold quotes, but
/// backslashes in paths must survive.
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_accounts_with_permissions() {
        let text = NatsServerBuilder::default()
            .account(
                "APP",
                vec![AccountUser {
                    user: "svc".into(),
                    password: "pw".into(),
                    publish_allow: vec!["events.>".into()],
                    ..Default::default()
                }],
            )
            .max_payload(1024)
            .render(4222, Path::new("/tmp/js"));
        assert!(text.contains("listen: \"127.0.0.1:4222\""));
        assert!(text.contains("max_payload: 1024"));
        assert!(text.contains("store_dir: \"/tmp/js\""));
        assert!(text.contains("publish: { allow: [\"events.>\"] }"));
        assert!(text.contains("jetstream: enabled"));
    }

    #[test]
    fn jetstream_can_be_disabled() {
        let text = NatsServerBuilder::default()
            .jetstream(false)
            .render(4222, Path::new("/tmp/js"));
        assert!(!text.contains("jetstream"));
    }
}

//! Choosing an adapter at run time, from flags or a config file.
//!
//! Services and tools hold an `Arc<dyn Broker>` and never name an adapter
//! type; [`Backend`] is the one place that does. In TOML:
//!
//! ```toml
//! [backend]
//! kind = "embedded"
//! path = "/var/lib/backbone/log"
//! ```
//!
//! ```toml
//! [backend]
//! kind = "jetstream"
//! urls = ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]
//! auth = { user_password = { user = "payment-service", password = "..." } }
//! tls = { ca_file = "/etc/backbone/ca.pem", require = true }
//! publish_timeout = "5s"
//! ```

use std::sync::Arc;

use serde::{Deserialize, Serialize};

#[cfg(feature = "embedded")]
use crate::embedded::{EmbeddedBroker, EmbeddedOptions};
#[cfg(feature = "jetstream")]
use crate::jetstream::{JetStreamBroker, JetStreamOptions, redact_url};
use crate::{broker::Broker, error::ConnectError, memory::MemoryBroker};

/// Which adapter to use, with its options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Backend {
    /// In process, not persistent: for tests.
    Memory,
    /// The sled-backed log on local disk (the default; feature `embedded`).
    #[cfg(feature = "embedded")]
    Embedded(EmbeddedOptions),
    /// NATS JetStream (feature `jetstream`; boxed: its options dwarf the
    /// other variants).
    #[cfg(feature = "jetstream")]
    Jetstream(Box<JetStreamOptions>),
}

impl Default for Backend {
    /// The embedded log; without that feature JetStream on localhost, and
    /// without either the in-memory adapter.
    fn default() -> Self {
        #[cfg(feature = "embedded")]
        return Self::Embedded(EmbeddedOptions::default());
        #[cfg(all(not(feature = "embedded"), feature = "jetstream"))]
        return Self::Jetstream(Box::default());
        #[cfg(not(any(feature = "embedded", feature = "jetstream")))]
        Self::Memory
    }
}

impl Backend {
    /// Opens the store or connects to the server.
    ///
    /// Fails with `Locked` when another process holds an embedded store,
    /// and with `Unreachable` when no server answers within the connect
    /// timeout; never hangs.
    pub async fn connect(&self) -> Result<Arc<dyn Broker>, ConnectError> {
        Ok(match self {
            Self::Memory => Arc::new(MemoryBroker::new()),
            #[cfg(feature = "embedded")]
            Self::Embedded(options) => Arc::new(EmbeddedBroker::open(options.clone())?),
            #[cfg(feature = "jetstream")]
            Self::Jetstream(options) => {
                Arc::new(JetStreamBroker::connect(options.as_ref().clone()).await?)
            }
        })
    }

    /// A short description for logs, without secrets.
    pub fn describe(&self) -> String {
        match self {
            Self::Memory => "memory".into(),
            #[cfg(feature = "embedded")]
            Self::Embedded(options) => format!("embedded log at {}", options.path.display()),
            #[cfg(feature = "jetstream")]
            Self::Jetstream(options) => {
                let urls: Vec<String> = options.urls.iter().map(|u| redact_url(u)).collect();
                format!("JetStream at {}", urls.join(","))
            }
        }
    }
}

#[cfg(all(test, feature = "embedded", feature = "jetstream"))]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::jetstream::Auth;

    #[test]
    fn jetstream_backend_reads_from_toml_with_human_durations() {
        let text = r#"
            kind = "jetstream"
            urls = ["nats://a:4222", "nats://b:4222"]
            auth = { user_password = { user = "svc", password = "hunter2" } }
            publish_timeout = "250ms"
        "#;
        let backend: Backend = toml::from_str(text).unwrap();
        let Backend::Jetstream(options) = &backend else {
            panic!("not jetstream: {backend:?}");
        };
        assert_eq!(options.urls.len(), 2);
        assert_eq!(options.publish_timeout, Duration::from_millis(250));
        assert_eq!(
            options.auth,
            Auth::UserPassword {
                user: "svc".into(),
                password: "hunter2".into()
            }
        );
        assert!(!format!("{backend:?}").contains("hunter2"));
    }

    #[test]
    fn unknown_settings_are_rejected_not_ignored() {
        let text = "kind = \"embedded\"\npath = \"x\"\nflush = \"1s\"\n";
        let err = toml::from_str::<Backend>(text).unwrap_err();
        assert!(err.to_string().contains("flush"), "{err}");
    }

    #[test]
    fn describe_hides_url_credentials() {
        let backend = Backend::Jetstream(Box::new(JetStreamOptions {
            urls: vec!["nats://svc:hunter2@host:4222".into()],
            ..Default::default()
        }));
        assert_eq!(
            backend.describe(),
            "JetStream at nats://<redacted>@host:4222"
        );
        assert!(!backend.describe().contains("hunter2"));
    }

    #[tokio::test]
    async fn embedded_backend_opens_a_log() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Backend::Embedded(EmbeddedOptions {
            path: dir.path().join("log"),
            ..Default::default()
        });
        let broker = backend.connect().await.unwrap();
        assert!(broker.features().persistent);
    }
}

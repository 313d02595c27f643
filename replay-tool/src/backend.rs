//! Opening the broker the settings name, and the streams every command
//! relies on.

use std::sync::Arc;

use backbone_broker::{
    Broker, StreamConfig, StreamErrorKind,
    embedded::{EmbeddedBroker, EmbeddedOptions},
    jetstream::{Auth, JetStreamBroker, JetStreamOptions, TlsOptions},
};

use crate::config::{BackendChoice, NatsSettings, Settings};
use crate::error::{CliError, CliResult};

/// The directory of the embedded log inside the data directory.
pub(crate) const LOG_DIR: &str = "log";

/// Opens the embedded log or connects to JetStream.
///
/// An embedded log held by another process fails with the locked exit code;
/// a NATS server that does not answer fails with the unavailable one.
pub(crate) async fn connect(settings: &Settings) -> CliResult<Arc<dyn Broker>> {
    match &settings.backend {
        BackendChoice::Embedded => {
            let options = EmbeddedOptions {
                path: settings.data_dir.join(LOG_DIR),
                ..Default::default()
            };
            let broker = EmbeddedBroker::open(options)?;
            Ok(Arc::new(broker))
        }
        BackendChoice::JetStream(nats) => {
            let options = JetStreamOptions {
                urls: nats.urls.clone(),
                name: Some("replay-tool".into()),
                auth: auth(nats)?,
                tls: tls(nats),
                ..Default::default()
            };
            let broker = JetStreamBroker::connect(options).await?;
            Ok(Arc::new(broker))
        }
    }
}

/// The one authentication method the settings name.
fn auth(nats: &NatsSettings) -> CliResult<Auth> {
    let mut methods = Vec::new();
    if let Some(user) = &nats.user {
        let password = nats
            .password
            .clone()
            .ok_or_else(|| CliError::Usage("--nats-user needs --nats-password".into()))?;
        methods.push(Auth::UserPassword {
            user: user.clone(),
            password,
        });
    } else if nats.password.is_some() {
        return Err(CliError::Usage("--nats-password needs --nats-user".into()));
    }
    if let Some(token) = &nats.token {
        methods.push(Auth::Token(token.clone()));
    }
    if let Some(creds) = &nats.creds {
        methods.push(Auth::CredsFile(creds.clone()));
    }
    if let Some(seed) = &nats.nkey_seed {
        methods.push(Auth::NKeySeed(seed.clone()));
    }
    if methods.len() > 1 {
        return Err(CliError::Usage(
            "give one of --nats-user/--nats-password, --nats-token, --nats-creds, --nats-nkey-seed"
                .into(),
        ));
    }
    Ok(methods.pop().unwrap_or_default())
}

fn tls(nats: &NatsSettings) -> Option<TlsOptions> {
    let any = nats.tls_ca.is_some() || nats.tls_cert.is_some() || nats.tls_key.is_some();
    any.then(|| TlsOptions {
        require: true,
        ca_file: nats.tls_ca.clone(),
        client_cert_file: nats.tls_cert.clone(),
        client_key_file: nats.tls_key.clone(),
    })
}

/// Creates `config`'s stream when it does not exist; an existing stream is
/// left as the operator configured it (`provision` is the tool for changes).
pub(crate) async fn ensure_exists(broker: &dyn Broker, config: &StreamConfig) -> CliResult {
    match broker.stream_info(&config.name).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == &StreamErrorKind::StreamNotFound => {
            broker.ensure_stream(config).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates the event log and the dead-letter stream when missing.
pub(crate) async fn ensure_standard_streams(broker: &dyn Broker) -> CliResult {
    ensure_exists(broker, &StreamConfig::event_log()).await?;
    ensure_exists(broker, &StreamConfig::dead_letters()).await
}

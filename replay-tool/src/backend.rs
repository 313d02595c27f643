//! Opening the broker the settings name, and the streams every command
//! relies on.

use std::sync::Arc;

use backbone_broker::{
    Backend, Broker, StreamConfig, StreamErrorKind,
    embedded::EmbeddedOptions,
    jetstream::{Auth, JetStreamOptions, TlsOptions},
    stream::EVENT_STREAM,
};
use backbone_consumers::layout;

use crate::config::{BackendChoice, NatsSettings, Settings};
use crate::error::{CliError, CliResult};

/// The backend the settings name: the embedded log in `<data-dir>/log`
/// (the layout the consumer service uses too), or JetStream.
pub(crate) fn backend(settings: &Settings) -> CliResult<Backend> {
    Ok(match &settings.backend {
        BackendChoice::Embedded => Backend::Embedded(EmbeddedOptions {
            path: layout::log_path(&settings.data_dir),
            ..Default::default()
        }),
        BackendChoice::JetStream(nats) => Backend::Jetstream(Box::new(JetStreamOptions {
            urls: nats.urls.clone(),
            name: Some("replay-tool".into()),
            auth: auth(nats)?,
            tls: tls(nats),
            ..Default::default()
        })),
    })
}

/// Opens the embedded log or connects to JetStream.
///
/// An embedded log held by another process fails with the locked exit code;
/// a NATS server that does not answer fails with the unavailable one.
pub(crate) async fn connect(settings: &Settings) -> CliResult<Arc<dyn Broker>> {
    let backend = backend(settings)?;
    tracing::debug!(backend = %backend.describe(), "connecting");
    Ok(backend.connect().await?)
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

/// Checks that the event log exists, for the read-only commands, which
/// never create a stream: a missing one is `NotFound` (exit 6).
pub(crate) async fn require_event_log(broker: &dyn Broker) -> CliResult {
    match broker
        .stream_info(backbone_broker::stream::EVENT_STREAM)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == &StreamErrorKind::StreamNotFound => Err(CliError::Stream(e.context(
            format!("there is no event log (stream {EVENT_STREAM}) here yet: publish an event or run `provision` first"),
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Creates the event log and the dead-letter stream when missing.
pub(crate) async fn ensure_standard_streams(broker: &dyn Broker) -> CliResult {
    ensure_exists(broker, &StreamConfig::event_log()).await?;
    ensure_exists(broker, &StreamConfig::dead_letters()).await
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::cli::OutputFormat;

    fn settings(backend: BackendChoice) -> Settings {
        Settings {
            backend,
            data_dir: PathBuf::from("/srv/bb"),
            data_dir_explicit: true,
            output: OutputFormat::Table,
            server: None,
            token: None,
        }
    }

    #[test]
    fn the_embedded_log_is_in_the_data_dir() {
        let Backend::Embedded(options) = backend(&settings(BackendChoice::Embedded)).unwrap()
        else {
            panic!("not embedded");
        };
        assert_eq!(options.path, PathBuf::from("/srv/bb/log"));
    }

    #[test]
    fn nats_settings_become_jetstream_options_with_one_auth_method() {
        let nats = NatsSettings {
            urls: vec!["nats://h:4222".into()],
            token: Some("t".into()),
            tls_ca: Some("/ca.pem".into()),
            ..Default::default()
        };
        let chosen = backend(&settings(BackendChoice::JetStream(Box::new(nats.clone())))).unwrap();
        let Backend::Jetstream(options) = chosen else {
            panic!("not jetstream");
        };
        assert_eq!(options.auth, Auth::Token("t".into()));
        assert_eq!(options.tls.unwrap().ca_file, Some(PathBuf::from("/ca.pem")));
        let two = NatsSettings {
            nkey_seed: Some("SU".into()),
            ..nats
        };
        let err = backend(&settings(BackendChoice::JetStream(Box::new(two)))).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}

//! Connecting: options to async-nats, failures to `ConnectErrorKind`, and the
//! server's version and JetStream checked up front.

use std::{
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use async_nats::{ConnectOptions, Event, ServerAddr, ServerError};
use tokio::sync::watch;

use super::{
    Shared,
    api::{Api, ApiFailure, code},
    options::{Auth, JetStreamOptions},
    permissions::PermissionViolations,
    version::ServerVersion,
};
use crate::error::{ConnectError, ConnectErrorKind};

/// Connects and verifies that JetStream answers.
pub(crate) async fn connect(options: JetStreamOptions) -> Result<Shared, ConnectError> {
    let violations = Arc::new(PermissionViolations::default());
    let client = open_client(&options, violations.clone(), None).await?;

    let info = client.server_info();
    let version = ServerVersion::parse(&info.version).unwrap_or(ServerVersion::FLOOR);
    if version < ServerVersion::FLOOR {
        tracing::warn!(
            server_version = %version,
            floor = %ServerVersion::FLOOR,
            "nats-server is older than the supported floor"
        );
    }

    let api = Api {
        client: client.clone(),
        timeout: options.request_timeout,
        violations: violations.clone(),
    };
    if let Err(failure) = api
        .request::<serde_json::Value>("INFO", &serde_json::Value::Null)
        .await
    {
        let kind = match &failure {
            ApiFailure::TimedOut | ApiFailure::Unavailable => ConnectErrorKind::Unreachable,
            _ => ConnectErrorKind::JetStreamUnavailable,
        };
        let hint = match failure.code() {
            Some(code::NOT_ENABLED_FOR_ACCOUNT | code::NOT_ENABLED) | None => {
                " (start nats-server with -js, or enable JetStream for the account)"
            }
            Some(_) => "",
        };
        return Err(ConnectError::with_detail(
            kind,
            format!("JetStream account info: {}{hint}", failure.describe()),
        ));
    }

    let context = async_nats::jetstream::ContextBuilder::new()
        .timeout(options.publish_timeout)
        // Acks the adapter stopped waiting for hold an in-flight permit
        // until this runs out; the default (30 s) could starve sending.
        .ack_timeout(options.publish_timeout)
        .max_ack_inflight(options.max_in_flight.max(1) * 4)
        .backpressure_on_inflight(true)
        .build(client.clone());

    Ok(Shared {
        client,
        context,
        api,
        options,
        version,
        violations,
        closed: AtomicBool::new(false),
    })
}

/// One connection with the adapter's options. With `disconnects`, every
/// loss of the connection bumps that counter, so a reader of deliveries can
/// tell that some may have been lost with it.
async fn open_client(
    options: &JetStreamOptions,
    violations: Arc<PermissionViolations>,
    disconnects: Option<Arc<watch::Sender<u64>>>,
) -> Result<async_nats::Client, ConnectError> {
    let addrs = validate(options)?;
    let nats_options = nats_options(options, violations, disconnects).await?;
    // connection_timeout bounds each TCP/TLS attempt; the outer bound also
    // covers trying several URLs.
    let overall = options.connect_timeout * u32::try_from(addrs.len()).unwrap_or(1).max(1)
        + Duration::from_millis(500);
    match tokio::time::timeout(overall, nats_options.connect(addrs)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(err)) => Err(map_connect_error(err)),
        Err(_) => Err(ConnectError::with_detail(
            ConnectErrorKind::Unreachable,
            format!("no server answered within {overall:?}"),
        )),
    }
}

/// A connection of its own for one consumer's or one read's deliveries.
///
/// async-nats drops the whole connection when a delivery's header block
/// does not parse (a header value that is not UTF-8, which any NATS client
/// can store). On a connection of its own such a message costs only that
/// reader a reconnect, never the publishers, API requests or other
/// consumers sharing the adapter's main connection; and the reader learns
/// of the loss from [`DeliveryLink::disconnects`].
pub(crate) async fn delivery_link(shared: &Shared) -> Result<DeliveryLink, ConnectError> {
    let (sender, disconnects) = watch::channel(0u64);
    let client = open_client(
        &shared.options,
        shared.violations.clone(),
        Some(Arc::new(sender)),
    )
    .await?;
    Ok(DeliveryLink {
        client,
        disconnects,
    })
}

/// A connection used only to receive deliveries.
#[derive(Debug, Clone)]
pub(crate) struct DeliveryLink {
    pub(crate) client: async_nats::Client,
    /// How often the connection was lost so far.
    pub(crate) disconnects: watch::Receiver<u64>,
}

fn validate(options: &JetStreamOptions) -> Result<Vec<ServerAddr>, ConnectError> {
    let invalid =
        |detail: String| ConnectError::with_detail(ConnectErrorKind::InvalidOptions, detail);
    if options.urls.is_empty() {
        return Err(invalid("no server URL given".into()));
    }
    if options.max_in_flight == 0 {
        return Err(invalid("max_in_flight must be at least 1".into()));
    }
    if let Some(tls) = &options.tls
        && tls.client_cert_file.is_some() != tls.client_key_file.is_some()
    {
        return Err(invalid(
            "a TLS client certificate needs its key, and a key its certificate".into(),
        ));
    }
    options
        .urls
        .iter()
        .map(|url| {
            url.parse::<ServerAddr>()
                .map_err(|e| invalid(format!("bad server URL {url:?}: {e}")))
        })
        .collect()
}

async fn nats_options(
    options: &JetStreamOptions,
    violations: Arc<PermissionViolations>,
    disconnects: Option<Arc<watch::Sender<u64>>>,
) -> Result<ConnectOptions, ConnectError> {
    let mut nats = match &options.auth {
        Auth::None => ConnectOptions::new(),
        Auth::UserPassword { user, password } => {
            ConnectOptions::with_user_and_password(user.clone(), password.clone())
        }
        Auth::Token(token) => ConnectOptions::with_token(token.clone()),
        Auth::NKeySeed(seed) => {
            nkeys_seed_is_valid(seed)?;
            ConnectOptions::with_nkey(seed.clone())
        }
        Auth::CredsFile(path) => ConnectOptions::with_credentials_file(path.clone())
            .await
            .map_err(|e| {
                ConnectError::with_source(ConnectErrorKind::InvalidOptions, e)
                    .detail(format!("reading creds file {}", path.display()))
            })?,
    };
    if let Some(name) = &options.name {
        nats = nats.name(name.clone());
    }
    if let Some(tls) = &options.tls {
        for path in [&tls.ca_file, &tls.client_cert_file, &tls.client_key_file]
            .into_iter()
            .flatten()
        {
            if !path.is_file() {
                return Err(ConnectError::with_detail(
                    ConnectErrorKind::Tls,
                    format!("TLS file {} is not readable", path.display()),
                ));
            }
        }
        nats = nats.require_tls(tls.require);
        if let Some(ca) = &tls.ca_file {
            nats = nats.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&tls.client_cert_file, &tls.client_key_file) {
            nats = nats.add_client_certificate(cert.clone(), key.clone());
        }
    }
    let reconnect = options.reconnect.clone();
    nats = nats
        .connection_timeout(options.connect_timeout)
        .request_timeout(Some(options.request_timeout))
        .max_reconnects(reconnect.max_attempts)
        .reconnect_delay_callback(move |attempt| {
            let exp = u32::try_from(attempt.min(16)).unwrap_or(16);
            reconnect
                .initial_delay
                .saturating_mul(2u32.saturating_pow(exp))
                .min(reconnect.max_delay)
        })
        .event_callback(move |event| {
            let violations = violations.clone();
            let disconnects = disconnects.clone();
            async move {
                match event {
                    Event::ServerError(ServerError::Other(text)) => {
                        violations.observe(&text);
                        tracing::warn!(%text, "nats server error");
                    }
                    Event::Disconnected => {
                        if let Some(counter) = &disconnects {
                            counter.send_modify(|n| *n += 1);
                        }
                        tracing::info!("nats connection lost");
                    }
                    Event::Connected => tracing::info!("nats connected"),
                    other => tracing::debug!(event = %other, "nats event"),
                }
            }
        });
    Ok(nats)
}

fn nkeys_seed_is_valid(seed: &str) -> Result<(), ConnectError> {
    // Checked here because async-nats only discovers a bad seed while
    // signing the server's nonce, reported as an authentication failure.
    let trimmed = seed.trim();
    if trimmed.len() < 20 || !trimmed.starts_with('S') {
        return Err(ConnectError::with_detail(
            ConnectErrorKind::InvalidOptions,
            "the NKey seed is not a seed (it must start with 'S')",
        ));
    }
    Ok(())
}

fn map_connect_error(err: async_nats::ConnectError) -> ConnectError {
    use async_nats::ConnectErrorKind as Nats;
    let kind = match err.kind() {
        Nats::Authentication | Nats::AuthorizationViolation => {
            ConnectErrorKind::AuthenticationFailed
        }
        Nats::Tls => ConnectErrorKind::Tls,
        Nats::ServerParse => ConnectErrorKind::InvalidOptions,
        // A refused handshake (the server demanding a client certificate,
        // or rejecting one) reaches async-nats as an I/O error wrapping
        // rustls' error, not as its `Tls` kind.
        Nats::Io if failed_in_tls(&err) => ConnectErrorKind::Tls,
        Nats::TimedOut | Nats::Io | Nats::Dns | Nats::MaxReconnects => {
            ConnectErrorKind::Unreachable
        }
    };
    ConnectError::with_source(kind, err)
}

/// Whether a rustls error (an alert from the server, or a certificate the
/// client rejected) caused `err`.
fn failed_in_tls(err: &(dyn std::error::Error + 'static)) -> bool {
    use async_nats::rustls;
    let mut cause = Some(err);
    while let Some(current) = cause {
        if current.is::<rustls::Error>() {
            return true;
        }
        // `io::Error::source` skips the error it wraps, so look inside.
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        cause = current.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_failure(inner: std::io::Error) -> async_nats::ConnectError {
        async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::Io, inner)
    }

    #[test]
    fn tls_alerts_inside_io_errors_are_tls_failures() {
        use async_nats::rustls::{AlertDescription, Error as Rustls};
        let alert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            Rustls::AlertReceived(AlertDescription::CertificateRequired),
        );
        assert_eq!(
            map_connect_error(io_failure(alert)).kind(),
            &ConnectErrorKind::Tls
        );
    }

    #[test]
    fn plain_io_failures_stay_unreachable() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            map_connect_error(io_failure(refused)).kind(),
            &ConnectErrorKind::Unreachable
        );
    }
}

//! Access control with the shipped `examples/nats/accounts.conf`: a service
//! publishes only its own domain's events and uses only its own durable
//! consumers; refusals are typed errors, never hangs. Plus NKey auth, TLS
//! with permissions, and secrets kept out of `Debug` and error text.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use backbone_broker::{
    Broker, ConnectErrorKind, ConsumerConfig, ConsumerErrorKind, OutboundMessage, PublishErrorKind,
    StreamConfig, StreamErrorKind,
    jetstream::{Auth, JetStreamBroker, JetStreamOptions, TlsOptions},
};
use backbone_testkit::{NatsServer, NatsServerBuilder, TestCerts, find_nats_server};

/// The environment variables accounts.conf reads its passwords from.
const PASSWORD_VARS: [&str; 5] = [
    "BACKBONE_OPERATOR_PASSWORD",
    "USER_SERVICE_PASSWORD",
    "MESSAGING_SERVICE_PASSWORD",
    "MEDIA_SERVICE_PASSWORD",
    "PAYMENT_SERVICE_PASSWORD",
];

/// A service of the shipped config: its user, the event domains it owns and
/// its durable consumer.
struct Service {
    user: &'static str,
    domains: &'static [&'static str],
    durable: &'static str,
}

const SERVICES: [Service; 4] = [
    Service {
        user: "user-service",
        domains: &["user"],
        durable: "notifications",
    },
    Service {
        user: "messaging-service",
        domains: &["message"],
        durable: "inbox",
    },
    Service {
        user: "media-service",
        domains: &["image", "tune", "pack"],
        durable: "gallery",
    },
    Service {
        user: "payment-service",
        domains: &["payment"],
        durable: "billing",
    },
];

const OPERATOR: &str = "backbone-operator";

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/nats")
}

/// Each user's test password: the user name reversed, so none is guessable
/// from another and each is easy to find in a leak check.
fn password_of(user: &str) -> String {
    format!("pw-{}-s3cret", user.chars().rev().collect::<String>())
}

/// The shipped accounts.conf, preceded by definitions of the password
/// variables (nats-server resolves `$NAME` from the same file first).
fn accounts_config() -> String {
    let accounts = std::fs::read_to_string(examples_dir().join("accounts.conf"))
        .expect("reading examples/nats/accounts.conf");
    let users = [OPERATOR]
        .into_iter()
        .chain(SERVICES.iter().map(|s| s.user));
    let mut text = String::new();
    for (var, user) in PASSWORD_VARS.iter().zip(users) {
        text.push_str(&format!("{var}: \"{}\"\n", password_of(user)));
    }
    text.push_str(&accounts);
    // The testkit's readiness probe connects without credentials; letting
    // such connections in as the operator is test-only and changes no
    // permission of the services under test.
    text.push_str(&format!("\nno_auth_user: \"{OPERATOR}\"\n"));
    text
}

fn server_with_shipped_accounts(builder: NatsServerBuilder) -> NatsServer {
    builder.config_text(accounts_config()).start()
}

fn options_for(server: &NatsServer, user: &str) -> JetStreamOptions {
    JetStreamOptions {
        urls: vec![server.url()],
        name: Some(user.into()),
        auth: Auth::UserPassword {
            user: user.into(),
            password: password_of(user),
        },
        request_timeout: Duration::from_secs(2),
        publish_timeout: Duration::from_secs(10),
        publish_retries: 0,
        ..Default::default()
    }
}

async fn connect_as(server: &NatsServer, user: &str) -> JetStreamBroker {
    JetStreamBroker::connect(options_for(server, user))
        .await
        .unwrap_or_else(|e| panic!("{user} connects: {e}"))
}

/// The operator provisions the streams and every service's durable.
async fn provision(server: &NatsServer) -> JetStreamBroker {
    let operator = connect_as(server, OPERATOR).await;
    operator
        .ensure_stream(&StreamConfig::event_log())
        .await
        .unwrap();
    operator
        .ensure_stream(&StreamConfig::dead_letters())
        .await
        .unwrap();
    for service in &SERVICES {
        operator
            .consumer("EVENTS", ConsumerConfig::durable(service.durable))
            .await
            .unwrap();
    }
    operator
}

/// The request timeout of [`options_for`]; refusals must come well before it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs one API call that the server must refuse and returns its error with
/// how long the refusal took.
///
/// The server drops a JetStream API request on a subject the user may not
/// publish to and reports the violation only on the connection; the adapter
/// watches those reports, so the refusal is a typed `PermissionDenied` at
/// once rather than a `TimedOut` after the request timeout.
async fn refused<T, E>(call: impl std::future::Future<Output = Result<T, E>>) -> (E, Duration) {
    let started = Instant::now();
    let Err(err) = call.await else {
        panic!("the server refuses the request");
    };
    (err, started.elapsed())
}

fn assert_quick(took: Duration, what: &str) {
    assert!(
        took < REQUEST_TIMEOUT / 2,
        "{what} refused in {took:?}, well under the {REQUEST_TIMEOUT:?} request timeout"
    );
}

#[test]
fn shipped_configs_parse_on_this_server() {
    let binary = find_nats_server().unwrap_or_else(|missing| panic!("{missing}"));
    let version = Command::new(&binary).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    let test_config = |file: &str| {
        let mut command = Command::new(&binary);
        command.arg("-t").arg("-c").arg(examples_dir().join(file));
        for var in PASSWORD_VARS {
            command.env(var, "x");
        }
        let out = command.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, text) = test_config("backbone-2.9.conf");
    assert!(ok, "backbone-2.9.conf is valid on {version}: {text}");
    let (ok, text) = test_config("backbone.conf");
    if version.contains("v2.9.") {
        assert!(
            !ok && text.contains("sync_interval"),
            "2.9 refuses backbone.conf because of sync_interval: {text}"
        );
    } else {
        assert!(ok, "backbone.conf is valid on {version}: {text}");
    }
}

#[tokio::test]
async fn each_service_publishes_only_its_own_domain() {
    let server = server_with_shipped_accounts(NatsServer::builder());
    let operator = provision(&server).await;
    let all_domains: Vec<&str> = SERVICES.iter().flat_map(|s| s.domains).copied().collect();
    let mut stored = 0;
    for service in &SERVICES {
        let broker = connect_as(&server, service.user).await;
        for domain in &all_domains {
            let subject = format!("events.{domain}.happened.k-1");
            let started = Instant::now();
            let result = broker
                .publish(
                    OutboundMessage::new(subject.clone(), "x")
                        .with_msg_id(format!("{}-{domain}", service.user)),
                )
                .await;
            if service.domains.contains(domain) {
                result.unwrap_or_else(|e| panic!("{} publishes {subject}: {e}", service.user));
                stored += 1;
            } else {
                let err = result.expect_err("another domain's subject is refused");
                assert_eq!(
                    err.kind(),
                    &PublishErrorKind::PermissionDenied,
                    "{} on {subject}: {err}",
                    service.user
                );
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "refused at once, not after the publish timeout"
                );
            }
        }
        // Dead letters only as its own consumer.
        let own = broker
            .publish(OutboundMessage::new(
                format!("deadletter.{}.events.x.y.z", service.durable),
                "dl",
            ))
            .await;
        assert!(own.is_ok(), "{own:?}");
        let foreign = broker
            .publish(OutboundMessage::new("deadletter.audit.events.x.y.z", "dl"))
            .await
            .unwrap_err();
        assert_eq!(foreign.kind(), &PublishErrorKind::PermissionDenied);
    }
    let events = operator.stream_info("EVENTS").await.unwrap();
    assert_eq!(events.messages, stored, "only permitted events were stored");
}

#[tokio::test]
async fn a_service_uses_only_its_own_durable_consumer() {
    let server = server_with_shipped_accounts(NatsServer::builder());
    let operator = provision(&server).await;
    operator
        .publish(OutboundMessage::new("events.user.registered.u-1", "x"))
        .await
        .unwrap();

    let user_service = connect_as(&server, "user-service").await;
    let own = user_service
        .consumer("EVENTS", ConsumerConfig::durable("notifications"))
        .await
        .expect("binds its own durable");
    let batch = own.fetch(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(batch.len(), 1);
    batch[0].ack().await.expect("acks on its own durable");

    for foreign in ["billing", "gallery", "inbox"] {
        let (err, took) =
            refused(user_service.consumer("EVENTS", ConsumerConfig::durable(foreign))).await;
        assert_eq!(err.kind(), &ConsumerErrorKind::PermissionDenied, "{err}");
        assert_quick(took, &format!("binding {foreign}"));
        let (err, took) = refused(user_service.consumer_info("EVENTS", foreign)).await;
        assert_eq!(err.kind(), &ConsumerErrorKind::PermissionDenied, "{err}");
        assert_quick(took, &format!("inspecting {foreign}"));
    }
    // The connection stays usable after refusals.
    own.info().await.expect("its own durable still answers");
    let progress = operator.consumer_info("EVENTS", "billing").await.unwrap();
    assert_eq!(progress.delivered_stream_seq, 0, "billing untouched");
}

#[tokio::test]
async fn services_cannot_provision_purge_or_delete() {
    let server = server_with_shipped_accounts(NatsServer::builder());
    let operator = provision(&server).await;
    let service = connect_as(&server, "payment-service").await;

    let info = service.stream_info("EVENTS").await.expect("may read info");
    assert_eq!(info.config.name, "EVENTS");
    let rogue = StreamConfig {
        name: "ROGUE".into(),
        subjects: vec!["rogue.>".into()],
        ..Default::default()
    };
    let (err, took) = refused(service.ensure_stream(&rogue)).await;
    assert_eq!(err.kind(), &StreamErrorKind::PermissionDenied, "{err}");
    assert_quick(took, "creating a stream");
    let (err, took) = refused(service.purge("DEADLETTER", None)).await;
    assert_eq!(err.kind(), &StreamErrorKind::PermissionDenied, "{err}");
    assert_quick(took, "purging");
    let (err, took) = refused(service.delete_consumer("EVENTS", "gallery")).await;
    assert_eq!(err.kind(), &ConsumerErrorKind::PermissionDenied, "{err}");
    assert_quick(took, "deleting a consumer");
    assert!(operator.consumer_info("EVENTS", "gallery").await.is_ok());
}

#[tokio::test]
async fn mutual_tls_keeps_the_permissions() {
    let certs = TestCerts::generate();
    let server = server_with_shipped_accounts(NatsServer::builder().tls(certs.server_tls(true)));
    let tls = TlsOptions {
        require: true,
        ca_file: Some(certs.ca_file()),
        client_cert_file: Some(certs.client_cert_file()),
        client_key_file: Some(certs.client_key_file()),
    };
    let connect = |user: &str, tls: TlsOptions| {
        JetStreamBroker::connect(JetStreamOptions {
            tls: Some(tls),
            ..options_for(&server, user)
        })
    };
    let operator = connect(OPERATOR, tls.clone()).await.expect("operator");
    operator
        .ensure_stream(&StreamConfig::event_log())
        .await
        .unwrap();
    let media = connect("media-service", tls.clone()).await.expect("media");
    media
        .publish(OutboundMessage::new("events.image.processed.i-1", "x"))
        .await
        .expect("own domain over TLS");
    let err = media
        .publish(OutboundMessage::new("events.payment.received.p-1", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &PublishErrorKind::PermissionDenied);

    let no_client_cert = TlsOptions {
        client_cert_file: None,
        client_key_file: None,
        ..tls
    };
    let err = connect("media-service", no_client_cert).await.unwrap_err();
    assert_eq!(
        err.kind(),
        &ConnectErrorKind::Tls,
        "a client without a certificate is refused in the TLS handshake: {err:?}"
    );
}

#[tokio::test]
async fn nkey_users_authenticate_with_their_seed_only() {
    let service = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    // The password user only lets the testkit's readiness probe in.
    let config = format!(
        "accounts {{ APP: {{ jetstream: enabled, users: [\n\
         {{ nkey: \"{}\", permissions: {{ publish: [\"events.user.>\", \"$JS.API.>\"], subscribe: [\"_INBOX.>\"] }} }},\n\
         {{ user: probe, password: probe }}\n\
         ] }} }}\nno_auth_user: probe",
        service.public_key()
    );
    let server = NatsServer::builder().config_text(config).start();
    let options = |seed: String| JetStreamOptions {
        urls: vec![server.url()],
        auth: Auth::NKeySeed(seed),
        connect_timeout: Duration::from_secs(3),
        ..Default::default()
    };
    let seed = service.seed().unwrap();
    let broker = JetStreamBroker::connect(options(seed.clone()))
        .await
        .expect("the registered seed authenticates");
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .unwrap();
    broker
        .publish(OutboundMessage::new("events.user.registered.u-1", "x"))
        .await
        .unwrap();
    let err = broker
        .publish(OutboundMessage::new("events.payment.received.p-1", "x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &PublishErrorKind::PermissionDenied);

    let err = JetStreamBroker::connect(options(stranger.seed().unwrap()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ConnectErrorKind::AuthenticationFailed);
    let err = JetStreamBroker::connect(options(service.public_key()))
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        &ConnectErrorKind::InvalidOptions,
        "a public key is not a seed"
    );

    let shown = format!("{:?} {broker:?} {err:?} {err}", options(seed.clone()));
    assert!(!shown.contains(&seed), "the seed never shows: {shown}");
}

#[tokio::test]
async fn secrets_never_appear_in_debug_or_errors() {
    let server = server_with_shipped_accounts(NatsServer::builder());
    let user = "messaging-service";
    let password = password_of(user);
    let good = options_for(&server, user);
    let broker = JetStreamBroker::connect(good.clone()).await.unwrap();

    let wrong = JetStreamOptions {
        auth: Auth::UserPassword {
            user: user.into(),
            password: format!("{password}-wrong"),
        },
        ..good.clone()
    };
    let err = JetStreamBroker::connect(wrong.clone()).await.unwrap_err();
    assert_eq!(err.kind(), &ConnectErrorKind::AuthenticationFailed);

    let in_url = JetStreamOptions {
        urls: vec![format!(
            "nats://{user}:{password}@127.0.0.1:{}",
            server.port()
        )],
        auth: Auth::None,
        ..good.clone()
    };
    let token = JetStreamOptions {
        auth: Auth::Token(password.clone()),
        ..good.clone()
    };
    let shown = format!(
        "{good:?} {good:#?} {wrong:?} {in_url:?} {token:?} {broker:?} {err:?} {err} {:?}",
        std::error::Error::source(&err)
    );
    assert!(!shown.contains(&password), "a secret leaked: {shown}");
    assert!(shown.contains(user), "user names stay visible");
}

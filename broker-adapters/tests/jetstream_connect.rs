//! Connecting to a real nats-server: failures map to typed kinds, TLS works.

use std::time::{Duration, Instant};

use backbone_broker::{
    Broker, ConnectErrorKind,
    jetstream::{Auth, JetStreamBroker, JetStreamOptions, TlsOptions},
};
use backbone_testkit::{NatsServer, TestCerts, free_port};

#[tokio::test]
async fn unreachable_server_fails_within_the_connect_timeout() {
    let started = Instant::now();
    let err = JetStreamBroker::connect(JetStreamOptions {
        urls: vec![format!("nats://127.0.0.1:{}", free_port())],
        connect_timeout: Duration::from_millis(500),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(err.kind(), &ConnectErrorKind::Unreachable);
    assert!(started.elapsed() < Duration::from_secs(10), "never hangs");
}

#[tokio::test]
async fn wrong_password_is_an_authentication_failure() {
    let server = NatsServer::builder().user_password("svc", "right").start();
    let err = JetStreamBroker::connect(JetStreamOptions {
        urls: vec![server.url()],
        auth: Auth::UserPassword {
            user: "svc".into(),
            password: "wrong".into(),
        },
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(err.kind(), &ConnectErrorKind::AuthenticationFailed);

    let ok = JetStreamBroker::connect(JetStreamOptions {
        urls: vec![server.url()],
        auth: Auth::UserPassword {
            user: "svc".into(),
            password: "right".into(),
        },
        ..Default::default()
    })
    .await;
    assert!(ok.is_ok(), "{ok:?}");
}

#[tokio::test]
async fn server_without_jetstream_is_reported() {
    let server = NatsServer::builder().jetstream(false).start();
    let err = JetStreamBroker::connect(JetStreamOptions {
        urls: vec![server.url()],
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(err.kind(), &ConnectErrorKind::JetStreamUnavailable);
}

#[tokio::test]
async fn invalid_options_are_rejected_before_connecting() {
    let err = JetStreamBroker::connect(JetStreamOptions {
        urls: vec![],
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(err.kind(), &ConnectErrorKind::InvalidOptions);
}

#[tokio::test]
async fn tls_with_generated_certificates_connects() {
    let certs = TestCerts::generate();
    let server = NatsServer::builder().tls(certs.server_tls(true)).start();
    let broker = JetStreamBroker::connect(JetStreamOptions {
        urls: vec![server.url()],
        tls: Some(TlsOptions {
            require: true,
            ca_file: Some(certs.ca_file()),
            client_cert_file: Some(certs.client_cert_file()),
            client_key_file: Some(certs.client_key_file()),
        }),
        ..Default::default()
    })
    .await
    .expect("TLS connect");
    assert!(broker.features().persistent);

    let missing_ca = JetStreamBroker::connect(JetStreamOptions {
        urls: vec![server.url()],
        tls: Some(TlsOptions {
            require: true,
            ca_file: Some(certs.dir_file("absent.pem")),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(missing_ca.kind(), &ConnectErrorKind::Tls);
}

#[tokio::test]
async fn debug_output_redacts_secrets() {
    let options = JetStreamOptions {
        urls: vec!["nats://svc:s3cret-pw@127.0.0.1:4222".into()],
        auth: Auth::Token("s3cret-token".into()),
        ..Default::default()
    };
    let text = format!("{options:?}");
    assert!(!text.contains("s3cret"), "{text}");
}

#[tokio::test]
async fn version_2_9_reports_single_filter_consumers() {
    let server = NatsServer::new();
    let broker = JetStreamBroker::connect(JetStreamOptions {
        urls: vec![server.url()],
        ..Default::default()
    })
    .await
    .expect("connect");
    let features = broker.features();
    assert!(features.persistent && features.replicas);
    assert_eq!(
        features.multiple_filter_subjects,
        broker.server_version().supports_multiple_filters()
    );
}

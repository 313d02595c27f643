//! `.creds` file authentication against a real nats-server in operator mode
//! (JWTs minted in the test, no `nsc` needed): a valid user works end to
//! end, users the operator does not vouch for are refused, the user JWT's
//! permissions hold, unreadable files are option errors, and the seed never
//! shows.

mod creds_support;

use std::{path::PathBuf, time::Duration};

use backbone_broker::{
    Broker, ConnectErrorKind, OutboundMessage, PublishErrorKind, ReadRequest, StreamConfig,
    jetstream::{Auth, JetStreamBroker, JetStreamOptions},
};
use creds_support::{OperatorSetup, UserGrant, creds_text, user_jwt, write_creds};
use futures::StreamExt;
use nkeys::KeyPair;

fn options(setup: &OperatorSetup, creds: PathBuf) -> JetStreamOptions {
    JetStreamOptions {
        urls: vec![setup.server.url()],
        name: Some("creds-test".into()),
        auth: Auth::CredsFile(creds),
        connect_timeout: Duration::from_secs(3),
        request_timeout: Duration::from_secs(3),
        publish_timeout: Duration::from_secs(5),
        publish_retries: 0,
        ..Default::default()
    }
}

/// A creds file for a new user of the setup's account.
fn valid_creds(setup: &OperatorSetup, dir: &tempfile::TempDir, grant: &UserGrant) -> PathBuf {
    let user = KeyPair::new_user();
    let jwt = user_jwt(&setup.account, &user, "svc", grant);
    write_creds(dir.path(), "svc.creds", &jwt, &user)
}

#[tokio::test]
async fn a_valid_creds_file_publishes_and_reads_events() {
    let setup = OperatorSetup::start();
    let dir = tempfile::tempdir().unwrap();
    let creds = valid_creds(&setup, &dir, &UserGrant::default());

    let broker = JetStreamBroker::connect(options(&setup, creds))
        .await
        .unwrap_or_else(|e| panic!("connects with creds: {e:?}\n{}", setup.server.log()));
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .expect("the account has JetStream");
    let receipt = broker
        .publish(OutboundMessage::new("events.user.registered.u-1", "hello").with_msg_id("creds-1"))
        .await
        .expect("publishes");
    assert_eq!(receipt.stream, "EVENTS");

    let stored = broker.get("EVENTS", receipt.seq).await.expect("gets");
    assert_eq!(stored.subject, "events.user.registered.u-1");
    assert_eq!(&stored.payload[..], b"hello");
    let read: Vec<_> = broker
        .read("EVENTS", ReadRequest::default())
        .await
        .expect("reads")
        .collect()
        .await;
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].as_ref().expect("intact").seq, receipt.seq);
}

/// Asserts that connecting with `creds` fails authentication.
async fn assert_refused(setup: &OperatorSetup, creds: PathBuf) {
    let err = JetStreamBroker::connect(options(setup, creds.clone()))
        .await
        .expect_err("the server refuses the user");
    assert_eq!(
        err.kind(),
        &ConnectErrorKind::AuthenticationFailed,
        "{}: {err:?}",
        creds.display()
    );
}

#[tokio::test]
async fn users_the_operator_does_not_vouch_for_are_refused() {
    let setup = OperatorSetup::start();
    let dir = tempfile::tempdir().unwrap();
    let user = KeyPair::new_user();

    // Operator mode admits nobody without a JWT.
    let anonymous = JetStreamBroker::connect(JetStreamOptions {
        auth: Auth::None,
        ..options(&setup, PathBuf::new())
    })
    .await
    .expect_err("anonymous users are refused");
    assert_eq!(anonymous.kind(), &ConnectErrorKind::AuthenticationFailed);

    // Signed by an account the server was never told about.
    let stranger_account = KeyPair::new_account();
    let jwt = user_jwt(&stranger_account, &user, "svc", &UserGrant::default());
    let unknown = write_creds(dir.path(), "unknown.creds", &jwt, &user);
    assert_refused(&setup, unknown).await;

    // A genuine JWT presented with another user's seed cannot sign the nonce.
    let jwt = user_jwt(&setup.account, &user, "svc", &UserGrant::default());
    let impostor = KeyPair::new_user();
    let stolen = write_creds(dir.path(), "stolen.creds", &jwt, &impostor);
    assert_refused(&setup, stolen).await;

    // An expired JWT.
    let expired = UserGrant {
        expires_at: Some(1_000_000_000),
        ..Default::default()
    };
    let jwt = user_jwt(&setup.account, &user, "svc", &expired);
    let expired = write_creds(dir.path(), "expired.creds", &jwt, &user);
    assert_refused(&setup, expired).await;

    // A JWT whose claims were altered after signing.
    let jwt = user_jwt(&setup.account, &user, "svc", &UserGrant::default());
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    let other = user_jwt(&setup.account, &user, "svc-renamed", &UserGrant::default());
    parts[1] = other.split('.').nth(1).unwrap().to_owned();
    let tampered = write_creds(dir.path(), "tampered.creds", &parts.join("."), &user);
    assert_refused(&setup, tampered).await;
}

#[tokio::test]
async fn the_user_jwt_limits_what_may_be_published() {
    let setup = OperatorSetup::start();
    let dir = tempfile::tempdir().unwrap();
    let grant = UserGrant {
        publish_allow: vec![
            "events.payment.>".into(),
            "$JS.API.>".into(),
            "_INBOX.>".into(),
        ],
        ..Default::default()
    };
    let creds = valid_creds(&setup, &dir, &grant);
    let broker = JetStreamBroker::connect(options(&setup, creds))
        .await
        .unwrap_or_else(|e| panic!("connects: {e:?}\n{}", setup.server.log()));
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .expect("$JS.API.> is allowed");

    broker
        .publish(OutboundMessage::new("events.payment.received.p-1", "paid"))
        .await
        .expect("its own domain");
    let err = broker
        .publish(OutboundMessage::new("events.user.followed.x", "nope"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &PublishErrorKind::PermissionDenied, "{err:?}");

    let info = broker.stream_info("EVENTS").await.expect("still usable");
    assert_eq!(info.messages, 1, "the refused event was not stored");
}

#[tokio::test]
async fn missing_or_garbled_creds_files_are_invalid_options() {
    let setup = OperatorSetup::start();
    let dir = tempfile::tempdir().unwrap();
    let user = KeyPair::new_user();
    let jwt = user_jwt(&setup.account, &user, "svc", &UserGrant::default());
    let seed = user.seed().unwrap();

    let mut damaged_seed = seed.clone();
    damaged_seed.replace_range(10..14, "AAAA");
    let cases = [
        ("missing", None),
        ("empty", Some(String::new())),
        ("not-creds", Some("user = svc\npassword = x\n".to_owned())),
        (
            "jwt-only",
            Some(format!(
                "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n"
            )),
        ),
        ("damaged-seed", Some(creds_text(&jwt, &damaged_seed))),
        (
            "public-key-as-seed",
            Some(creds_text(&jwt, &user.public_key())),
        ),
    ];
    for (name, content) in cases {
        let path = dir.path().join(format!("{name}.creds"));
        if let Some(content) = content {
            std::fs::write(&path, content).unwrap();
        }
        let err = JetStreamBroker::connect(options(&setup, path))
            .await
            .unwrap_err();
        assert_eq!(
            err.kind(),
            &ConnectErrorKind::InvalidOptions,
            "{name}: {err:?}"
        );
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(&seed), "{name}: the seed leaked: {shown}");
    }
}

#[tokio::test]
async fn the_seed_never_appears_in_debug_or_errors() {
    let setup = OperatorSetup::start();
    let dir = tempfile::tempdir().unwrap();
    let user = KeyPair::new_user();
    let seed = user.seed().unwrap();
    let jwt = user_jwt(&setup.account, &user, "svc", &UserGrant::default());
    let creds = write_creds(dir.path(), "svc.creds", &jwt, &user);

    let good = options(&setup, creds.clone());
    let broker = JetStreamBroker::connect(good.clone()).await.unwrap();
    let impostor = KeyPair::new_user();
    let refused_path = write_creds(dir.path(), "refused.creds", &jwt, &impostor);
    let err = JetStreamBroker::connect(options(&setup, refused_path))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ConnectErrorKind::AuthenticationFailed);

    let shown = format!(
        "{good:?} {good:#?} {broker:?} {err:?} {err} {:?}",
        std::error::Error::source(&err)
    );
    assert!(!shown.contains(&seed), "the seed leaked: {shown}");
    assert!(
        !shown.contains(&impostor.seed().unwrap()),
        "the impostor's seed leaked: {shown}"
    );
    assert!(
        shown.contains(&creds.display().to_string()),
        "the creds path stays visible: {shown}"
    );
}

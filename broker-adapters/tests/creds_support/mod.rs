//! NATS decentralized auth without `nsc`: an operator, accounts and users
//! minted as signed JWTs with `nkeys`, `.creds` files written from them, and
//! a nats-server in operator mode with a memory resolver.
//!
//! A NATS JWT is `b64url(header).b64url(claims).b64url(sig)`, where `sig` is
//! the issuer's ed25519 signature over the first two parts. The server checks
//! the signature chain (user <- account <- operator), `exp`, and the
//! permissions in the user's claims; it never recomputes `jti`, which the
//! `jwt` library fills with a hash of the claims, so a unique id serves here.

#![allow(dead_code, unreachable_pub)]

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use backbone_testkit::NatsServer;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use nkeys::KeyPair;
use serde_json::{Value, json};

/// The header every NATS JWT carries.
const HEADER: &str = r#"{"typ":"JWT","alg":"ed25519-nkey"}"#;

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A process-unique JWT id: upper-case base32-like text, as `nsc` writes.
fn unique_jti() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!(
        "JTI{nanos:X}N{:X}P{:X}",
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::process::id()
    )
}

/// Signs `nats` claims about `subject` as `issuer`, returning the JWT.
/// `extra` fields (such as `exp`) are merged into the top-level claims.
pub fn sign_jwt(issuer: &KeyPair, subject: &str, name: &str, nats: Value, extra: Value) -> String {
    let mut claims = json!({
        "jti": unique_jti(),
        "iat": now_secs(),
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        claims.extend(extra);
    }
    let signed_part = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = issuer
        .sign(signed_part.as_bytes())
        .expect("signing with a seeded key");
    format!("{signed_part}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// An operator's self-signed JWT.
pub fn operator_jwt(operator: &KeyPair) -> String {
    sign_jwt(
        operator,
        &operator.public_key(),
        "backbone-test-operator",
        json!({ "type": "operator", "version": 2 }),
        json!({}),
    )
}

/// An account JWT signed by `operator`; `jetstream` grants unlimited
/// JetStream storage, streams and consumers.
pub fn account_jwt(operator: &KeyPair, account: &KeyPair, name: &str, jetstream: bool) -> String {
    let mut limits = json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "conn": -1, "leaf": -1, "wildcards": true,
    });
    if jetstream {
        let js = json!({ "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1 });
        if let (Some(limits), Value::Object(js)) = (limits.as_object_mut(), js) {
            limits.extend(js);
        }
    }
    sign_jwt(
        operator,
        &account.public_key(),
        name,
        json!({
            "limits": limits,
            "default_permissions": { "pub": {}, "sub": {} },
            "type": "account",
            "version": 2,
        }),
        json!({}),
    )
}

/// What a user JWT grants.
#[derive(Debug, Clone, Default)]
pub struct UserGrant {
    /// Subjects the user may publish to; empty allows all.
    pub publish_allow: Vec<String>,
    /// Expiry (unix seconds); `None` never expires.
    pub expires_at: Option<u64>,
}

/// A user JWT for `user`, signed by `account`.
pub fn user_jwt(account: &KeyPair, user: &KeyPair, name: &str, grant: &UserGrant) -> String {
    let publish = if grant.publish_allow.is_empty() {
        json!({})
    } else {
        json!({ "allow": grant.publish_allow })
    };
    let extra = match grant.expires_at {
        Some(exp) => json!({ "exp": exp }),
        None => json!({}),
    };
    sign_jwt(
        account,
        &user.public_key(),
        name,
        json!({
            "pub": publish,
            "sub": {},
            "subs": -1, "data": -1, "payload": -1,
            "type": "user",
            "version": 2,
        }),
        extra,
    )
}

/// The text of a `.creds` file, laid out as `nsc` writes it.
pub fn creds_text(user_jwt: &str, user_seed: &str) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{user_seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}

/// Writes a `.creds` file for `user` (JWT from `account`) into `dir`.
pub fn write_creds(dir: &Path, file: &str, user_jwt: &str, user: &KeyPair) -> PathBuf {
    let path = dir.join(file);
    let seed = user.seed().expect("a generated user key has a seed");
    std::fs::write(&path, creds_text(user_jwt, &seed)).expect("writing the creds file");
    path
}

/// An operator with one JetStream-enabled application account and a system
/// account, and a nats-server trusting them.
pub struct OperatorSetup {
    /// The operator key.
    pub operator: KeyPair,
    /// The account the service users belong to.
    pub account: KeyPair,
    /// The server (declared before the store so it stops first on drop).
    pub server: NatsServer,
    /// The JetStream store directory, removed on drop.
    _store: tempfile::TempDir,
}

impl OperatorSetup {
    /// Starts a server in operator mode with a memory resolver preloaded
    /// with the application and system accounts.
    pub fn start() -> Self {
        let operator = KeyPair::new_operator();
        let account = KeyPair::new_account();
        let system = KeyPair::new_account();
        let store = tempfile::Builder::new()
            .prefix("backbone-creds-js-")
            .tempdir()
            .expect("creating the JetStream store dir");

        let mut config = String::new();
        let _ = writeln!(config, "operator: \"{}\"", operator_jwt(&operator));
        let _ = writeln!(config, "system_account: \"{}\"", system.public_key());
        let _ = writeln!(config, "resolver: MEMORY");
        let _ = writeln!(config, "resolver_preload: {{");
        let _ = writeln!(
            config,
            "  {}: \"{}\"",
            account.public_key(),
            account_jwt(&operator, &account, "APP", true)
        );
        let _ = writeln!(
            config,
            "  {}: \"{}\"",
            system.public_key(),
            account_jwt(&operator, &system, "SYS", false)
        );
        let _ = writeln!(config, "}}");
        let _ = writeln!(
            config,
            "jetstream {{ store_dir: \"{}\" }}",
            store.path().display()
        );

        // The testkit's JetStream readiness probe connects without
        // credentials, which operator mode refuses; JetStream is configured
        // here instead and the probe only waits for the INFO line.
        let server = NatsServer::builder()
            .jetstream(false)
            .config_text(config)
            .start();
        Self {
            operator,
            account,
            server,
            _store: store,
        }
    }
}

//! Python interop over a real nats-server: events published with the
//! Python package `clients/python` (nats-py and protobuf classes generated
//! from `schemas/proto`, written from `docs/wire-contract.md` alone) decode
//! in Rust, and events Rust publishes decode in Python to the same fields
//! and bytes. The scripts are `clients/python/interop/{publish,read}.py`;
//! the package's own tests are pytest's (`scripts/test` runs them).
//!
//! The venv python comes from `BACKBONE_PYTHON` (set by `scripts/test`);
//! without it the test runs `clients/python/scripts/python-env` itself. No
//! python is a failure with an install hint, never a skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use backbone_broker::jetstream::{JetStreamBroker, JetStreamOptions};
use backbone_broker::{Broker, OutboundMessage, StreamConfig};
use backbone_schemas::media::v1::{ImageProcessed, PackImagesUpdated, TuneCreated};
use backbone_schemas::messaging::v1::{DirectMessageDelivered, DirectMessageSent, MessageReceived};
use backbone_schemas::payment::v1::{PaymentReceived, PaymentRefunded};
use backbone_schemas::user::v1::{
    UserFollowed, UserPresenceChanged, UserRegistered, UserUnfollowed,
};
use backbone_schemas::{DecodeErrorKind, Envelope, Event, EventContext, Headers, sample, wire};
use backbone_testkit::NatsServer;
use bytes::Bytes;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const STREAM: &str = "EVENTS";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("broker-adapters sits in the workspace root")
        .to_path_buf()
}

fn package_dir() -> PathBuf {
    repo_root().join("clients").join("python")
}

fn interop_dir() -> PathBuf {
    package_dir().join("interop")
}

/// The venv python: `BACKBONE_PYTHON`, else what `python-env` prints.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        if let Some(path) = std::env::var_os("BACKBONE_PYTHON").filter(|p| !p.is_empty()) {
            return PathBuf::from(path);
        }
        let script = package_dir().join("scripts").join("python-env");
        let output = Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "{} failed, so the Python interop test cannot run (it needs python3 and \
             python3-venv, and PyPI for the first install):\n{}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
}

/// Runs an interop script; its exit status and stdout's JSON lines.
fn run_python(script: &str, args: &[&str]) -> (bool, Vec<Value>) {
    let output = Command::new(python())
        .arg(script)
        .args(args)
        .current_dir(interop_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|e| panic!("running {} {script}: {e}", python().display()));
    let stdout = String::from_utf8(output.stdout).expect("scripts print UTF-8");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    if lines.is_empty() && !output.status.success() {
        panic!(
            "{script} {args:?} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    (output.status.success(), lines)
}

/// A nats-server with the EVENTS stream, provisioned through the adapter.
async fn server_with_event_stream() -> (NatsServer, Arc<dyn Broker>) {
    let server = NatsServer::new();
    let options = JetStreamOptions {
        urls: vec![server.url()],
        ..Default::default()
    };
    let broker: Arc<dyn Broker> = Arc::new(
        JetStreamBroker::connect(options)
            .await
            .expect("connecting to the test server"),
    );
    broker
        .ensure_stream(&StreamConfig::event_log())
        .await
        .expect("provisioning EVENTS");
    (server, broker)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text<'a>(line: &'a Value, field: &str) -> &'a str {
    line[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field:?} in {line}"))
}

fn same_instant(a: &str, b: &str) -> bool {
    let parse = |s: &str| OffsetDateTime::parse(s, &Rfc3339).expect("RFC 3339");
    parse(a) == parse(b)
}

/// The typed event equals the Rust sample of its type.
fn assert_is_sample(envelope: &Envelope) {
    fn check<E: Event + PartialEq + std::fmt::Debug>(envelope: &Envelope, expected: E) {
        assert_eq!(envelope.event::<E>().expect("typed decode"), expected);
    }
    match envelope.event_type.as_str() {
        "user.registered" => check::<UserRegistered>(envelope, sample::user_registered()),
        "user.followed" => check::<UserFollowed>(envelope, sample::user_followed()),
        "user.unfollowed" => check::<UserUnfollowed>(envelope, sample::user_unfollowed()),
        "user.presence_changed" => {
            check::<UserPresenceChanged>(envelope, sample::user_presence_changed())
        }
        "message.received" => check::<MessageReceived>(envelope, sample::message_received()),
        "message.sent" => check::<DirectMessageSent>(envelope, sample::message_sent()),
        "message.delivered" => {
            check::<DirectMessageDelivered>(envelope, sample::message_delivered())
        }
        "image.processed" => check::<ImageProcessed>(envelope, sample::image_processed()),
        "tune.created" => check::<TuneCreated>(envelope, sample::tune_created()),
        "pack.images_updated" => {
            check::<PackImagesUpdated>(envelope, sample::pack_images_updated())
        }
        "payment.received" => check::<PaymentReceived>(envelope, sample::payment_received()),
        "payment.refunded" => check::<PaymentRefunded>(envelope, sample::payment_refunded()),
        other => panic!("no sample for {other}"),
    }
}

#[tokio::test]
async fn python_published_events_decode_strictly_in_rust() {
    let (server, broker) = server_with_event_stream().await;
    let source = "python publisher \u{2713}";
    let correlation = "checkout 81f2 100%";
    let (ok, sent) = run_python(
        "publish.py",
        &[
            "--url",
            &server.url(),
            "--count",
            "2",
            "--source",
            source,
            "--correlation-id",
            correlation,
        ],
    );
    assert!(ok, "publish.py failed: {sent:?}");
    assert_eq!(sent.len(), 2 * sample::sample_events().len());

    let mut types_seen = std::collections::BTreeSet::new();
    for line in &sent {
        let seq = line["seq"].as_u64().expect("seq");
        assert_eq!(line["duplicate"], Value::Bool(false));
        let stored = broker.get(STREAM, seq).await.expect("stored message");
        assert_eq!(stored.subject, text(line, "subject"));

        let sent_headers: Vec<(String, String)> =
            serde_json::from_value(line["headers"].clone()).expect("headers pairs");
        // async-nats keeps headers in a map, so only the set is compared.
        let mut stored_headers: Vec<(String, String)> = stored
            .headers
            .iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        stored_headers.sort();
        let mut sorted_sent = sent_headers.clone();
        sorted_sent.sort();
        assert_eq!(stored_headers, sorted_sent, "headers as Python sent them");

        let envelope = Envelope::decode(&stored.subject, &stored.headers, &stored.payload)
            .unwrap_or_else(|e| panic!("strict decode of {line}: {e}"));
        assert_eq!(envelope.id.to_string(), text(line, "ce_id"));
        assert_eq!(envelope.event_type, text(line, "type"));
        assert_eq!(envelope.source, source);
        assert_eq!(envelope.correlation_id.as_deref(), Some(correlation));
        assert_eq!(
            envelope.traceparent.as_deref(),
            Some(sample::SAMPLE_TRACEPARENT)
        );
        assert_eq!(envelope.id.get_version_num(), 7, "Python ids are UUIDv7");
        assert_eq!(hex(&envelope.payload), text(line, "payload_hex"));
        assert_eq!(
            envelope.payload_json().expect("payload JSON"),
            line["fields"]
        );
        assert_is_sample(&envelope);

        // Rust re-encodes the decoded envelope to the very headers Python
        // wrote; ce-time only needs to name the same instant.
        let (rust_time, rust_rest): (Vec<_>, Vec<_>) = envelope
            .headers()
            .iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .partition(|(n, _)| n == wire::CE_TIME);
        let (py_time, py_rest): (Vec<_>, Vec<_>) = sent_headers
            .into_iter()
            .partition(|(n, _)| n == wire::CE_TIME);
        assert_eq!(rust_rest, py_rest);
        assert!(same_instant(&rust_time[0].1, &py_time[0].1));
        types_seen.insert(envelope.event_type.clone());
    }
    assert_eq!(types_seen.len(), sample::sample_events().len());

    // Python's Nats-Msg-Id makes a re-publish of the same event a duplicate.
    let first = broker.get(STREAM, 1).await.expect("first message");
    let again = OutboundMessage::new(first.subject, first.payload).with_headers(first.headers);
    let receipt = broker.publish(again).await.expect("re-publish");
    assert!(receipt.duplicate, "same Nats-Msg-Id is deduplicated");
    let info = broker.stream_info(STREAM).await.expect("stream info");
    assert_eq!(info.messages, sent.len() as u64);
    broker.close().await.expect("close");
}

/// Publishes `envelope` the way Backbone services do.
async fn publish_envelope(broker: &Arc<dyn Broker>, envelope: &Envelope) -> u64 {
    let message = OutboundMessage::new(envelope.subject(), envelope.payload.clone())
        .with_headers(envelope.headers())
        .with_msg_id(envelope.id.to_string());
    broker.publish(message).await.expect("publish").seq
}

#[tokio::test]
async fn rust_published_events_decode_in_python_to_identical_fields_and_bytes() {
    let (server, broker) = server_with_event_stream().await;
    let mut envelopes: Vec<Envelope> = sample::sample_events()
        .into_iter()
        .map(|(_, envelope)| envelope)
        .collect();
    // Header values that need percent-encoding, and a time with nanoseconds.
    let ctx = EventContext::new("serviço de usuários \"beta\"")
        .with_time(
            sample::sample_time(5)
                .replace_nanosecond(123_456_789)
                .expect("valid"),
        )
        .with_correlation_id("checkout 81f2 100%")
        .with_causation_id("caused-by-\u{1F680}");
    envelopes.push(Envelope::from_event(&sample::user_followed(), ctx).expect("valid"));

    let mut seqs = Vec::new();
    for envelope in &envelopes {
        seqs.push(publish_envelope(&broker, envelope).await);
    }

    let (ok, read) = run_python("read.py", &["--url", &server.url()]);
    assert!(ok, "read.py found contract violations: {read:#?}");
    assert_eq!(read.len(), envelopes.len());
    for ((line, envelope), seq) in read.iter().zip(&envelopes).zip(&seqs) {
        assert_eq!(line["seq"].as_u64(), Some(*seq));
        assert_eq!(text(line, "subject"), envelope.subject());
        assert_eq!(text(line, "ce_id"), envelope.id.to_string());
        assert_eq!(text(line, "source"), envelope.source);
        assert_eq!(text(line, "type"), envelope.event_type);
        assert_eq!(text(line, "time"), envelope.time_rfc3339());
        assert_eq!(text(line, "key"), envelope.key);
        assert_eq!(text(line, "data_schema"), envelope.data_schema);
        assert_eq!(text(line, "message_class"), envelope.data_schema);
        assert_eq!(
            line["correlation_id"].as_str(),
            envelope.correlation_id.as_deref()
        );
        assert_eq!(
            line["causation_id"].as_str(),
            envelope.causation_id.as_deref()
        );
        assert_eq!(
            line["traceparent"].as_str(),
            envelope.traceparent.as_deref()
        );
        assert_eq!(text(line, "payload_hex"), hex(&envelope.payload));
        assert_eq!(
            text(line, "reencoded_hex"),
            hex(&envelope.payload),
            "Python re-encodes {} to the same bytes",
            envelope.event_type
        );
        assert_eq!(
            line["fields"],
            envelope.payload_json().expect("payload JSON")
        );
    }
    broker.close().await.expect("close");
}

/// A message that breaks the contract, and the kind both sides must report.
struct Violation {
    kind: &'static str,
    message: OutboundMessage,
    is_rust_kind: fn(&DecodeErrorKind) -> bool,
}

/// A copy of `envelope` on `subject`, with its own id (or JetStream would
/// drop it as a duplicate) and `edit` applied to its headers.
fn broken_copy(
    envelope: &Envelope,
    subject: &str,
    id: u8,
    payload: Bytes,
    edit: impl FnOnce(&mut Headers),
) -> OutboundMessage {
    let id = sample::sample_id(id).to_string();
    let mut headers = envelope.headers();
    headers.insert(wire::CE_ID, id.clone());
    headers.insert(wire::NATS_MSG_ID, id);
    edit(&mut headers);
    OutboundMessage::new(subject, payload).with_headers(headers)
}

#[tokio::test]
async fn python_reader_rejects_contract_violations_with_the_rust_kind() {
    let (server, broker) = server_with_event_stream().await;
    let followed = sample::sample_envelope(&sample::user_followed(), 1);
    let subject = followed.subject();
    let payload = followed.payload.clone();
    let cases = vec![
        Violation {
            kind: "InvalidSubject",
            message: broken_copy(
                &followed,
                "events.user.followed",
                90,
                payload.clone(),
                |_| {},
            ),
            is_rust_kind: |k| matches!(k, DecodeErrorKind::InvalidSubject),
        },
        Violation {
            kind: "MissingHeader",
            message: broken_copy(&followed, &subject, 91, payload.clone(), |h| {
                h.remove(wire::CE_TYPE);
            }),
            is_rust_kind: |k| matches!(k, DecodeErrorKind::MissingHeader(_)),
        },
        Violation {
            kind: "InvalidHeader",
            message: broken_copy(&followed, &subject, 92, payload.clone(), |h| {
                h.insert(wire::NATS_MSG_ID, sample::sample_id(93).to_string());
            }),
            is_rust_kind: |k| matches!(k, DecodeErrorKind::InvalidHeader { .. }),
        },
        Violation {
            kind: "TypeMismatch",
            message: broken_copy(
                &followed,
                "events.user.unfollowed.u-42",
                94,
                payload.clone(),
                |_| {},
            ),
            is_rust_kind: |k| matches!(k, DecodeErrorKind::TypeMismatch { .. }),
        },
        Violation {
            kind: "UnknownType",
            message: broken_copy(
                &followed,
                "events.user.vanished.u-42",
                95,
                payload.clone(),
                |h| {
                    h.insert(wire::CE_TYPE, "user.vanished");
                },
            ),
            is_rust_kind: |k| matches!(k, DecodeErrorKind::UnknownType(_)),
        },
        Violation {
            kind: "KeyMismatch",
            message: broken_copy(
                &followed,
                "events.user.followed.u-1",
                96,
                payload.clone(),
                |h| {
                    h.insert(wire::CE_SUBJECT, "u-1");
                },
            ),
            is_rust_kind: |k| matches!(k, DecodeErrorKind::KeyMismatch { .. }),
        },
        Violation {
            kind: "PayloadNotDecodable",
            message: broken_copy(
                &followed,
                &subject,
                97,
                Bytes::from_static(&[0x0a, 0xff]),
                |_| {},
            ),
            is_rust_kind: |k| matches!(k, DecodeErrorKind::PayloadNotDecodable),
        },
    ];

    for case in &cases {
        let receipt = broker.publish(case.message.clone()).await.expect("publish");
        assert!(!receipt.duplicate, "{} case stored", case.kind);
        let stored = broker.get(STREAM, receipt.seq).await.expect("stored");
        let rust_error = Envelope::decode(&stored.subject, &stored.headers, &stored.payload)
            .expect_err("Rust rejects it too");
        assert!(
            (case.is_rust_kind)(rust_error.kind()),
            "{}: Rust says {:?}",
            case.kind,
            rust_error.kind()
        );
    }

    let (ok, read) = run_python("read.py", &["--url", &server.url()]);
    assert!(!ok, "read.py exits 1 on violations");
    let kinds: Vec<&str> = read
        .iter()
        .map(|line| line["error"]["kind"].as_str().unwrap_or("<decoded>"))
        .collect();
    let expected: Vec<&str> = cases.iter().map(|case| case.kind).collect();
    assert_eq!(kinds, expected, "{read:#?}");
    broker.close().await.expect("close");
}

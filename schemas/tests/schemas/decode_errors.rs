//! Each class of malformed input fails with its own `DecodeErrorKind`.

use backbone_schemas::{DecodeErrorKind, Envelope, Headers, sample, user::v1::UserFollowed};
use prost::Message as _;

struct Msg {
    subject: String,
    headers: Headers,
    payload: Vec<u8>,
}

impl Msg {
    /// A valid `payment.received` message with every optional header.
    fn valid() -> Msg {
        let envelope = sample::sample_envelope(&sample::payment_received(), 6);
        Msg {
            subject: envelope.subject(),
            headers: envelope.headers(),
            payload: envelope.payload.to_vec(),
        }
    }

    fn set(mut self, name: &str, value: &str) -> Msg {
        self.headers.insert(name, value);
        self
    }

    fn without(mut self, name: &str) -> Msg {
        self.headers.remove(name);
        self
    }

    fn kind(&self) -> DecodeErrorKind {
        Envelope::decode(&self.subject, &self.headers, &self.payload)
            .expect_err("decode should fail")
            .kind()
            .clone()
    }
}

fn invalid(name: &'static str, value: &str) -> DecodeErrorKind {
    DecodeErrorKind::InvalidHeader {
        name,
        value: value.to_owned(),
    }
}

#[test]
fn the_valid_message_decodes() {
    let msg = Msg::valid();
    assert!(Envelope::decode(&msg.subject, &msg.headers, &msg.payload).is_ok());
}

#[test]
fn bad_subjects() {
    for subject in [
        "events.payment.received",
        "evts.payment.received.u-42",
        "events.payment.received.u 42",
        "",
    ] {
        let msg = Msg {
            subject: subject.into(),
            ..Msg::valid()
        };
        assert_eq!(msg.kind(), DecodeErrorKind::InvalidSubject, "{subject:?}");
    }
}

#[test]
fn every_required_header_is_required() {
    for name in [
        "ce-specversion",
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-time",
        "ce-subject",
        "ce-dataschema",
        "content-type",
        "Nats-Msg-Id",
    ] {
        assert_eq!(
            Msg::valid().without(name).kind(),
            DecodeErrorKind::MissingHeader(name)
        );
    }
    // Optional ones are optional.
    let msg = Msg::valid()
        .without("ce-correlationid")
        .without("ce-causationid")
        .without("traceparent");
    assert!(Envelope::decode(&msg.subject, &msg.headers, &msg.payload).is_ok());
}

#[test]
fn ids_are_hyphenated_uuids_of_either_case() {
    let id = Msg::valid().headers.get("ce-id").unwrap().to_owned();
    let upper = id.to_uppercase();
    for msg in [
        Msg::valid().set("ce-id", &upper).set("Nats-Msg-Id", &upper),
        Msg::valid().set("Nats-Msg-Id", &upper),
    ] {
        assert!(Envelope::decode(&msg.subject, &msg.headers, &msg.payload).is_ok());
    }
    for other_form in [
        id.replace('-', ""),
        format!("{{{id}}}"),
        format!("urn:uuid:{id}"),
    ] {
        let msg = Msg::valid().set("Nats-Msg-Id", &other_form);
        assert!(
            matches!(
                msg.kind(),
                DecodeErrorKind::InvalidHeader {
                    name: "Nats-Msg-Id",
                    ..
                }
            ),
            "{other_form}"
        );
    }
}

#[test]
fn control_characters_are_rejected_after_percent_decoding() {
    for (name, value) in [
        ("ce-source", "pay%07ment"),
        ("ce-source", "pay%C2%85ment"),
        ("ce-correlationid", "a%09b"),
        ("ce-causationid", "%7F"),
    ] {
        let msg = Msg::valid().set(name, value);
        assert!(
            matches!(msg.kind(), DecodeErrorKind::InvalidHeader { name: n, .. } if n == name),
            "{name}: {value:?}"
        );
    }
}

#[test]
fn the_first_failed_check_decides_the_kind() {
    // Bad spec version and bad type: headers' values come before types.
    let msg = Msg::valid()
        .set("ce-specversion", "0.3")
        .set("ce-type", "payment.refunded");
    assert!(matches!(
        msg.kind(),
        DecodeErrorKind::InvalidHeader {
            name: "ce-specversion",
            ..
        }
    ));
    // Missing ce-source and bad ce-id: presence of every required header first.
    let msg = Msg::valid().set("ce-id", "x").without("ce-source");
    assert_eq!(msg.kind(), DecodeErrorKind::MissingHeader("ce-source"));
    // Unknown type and bad traceparent: the type check comes first.
    let msg = Msg {
        subject: "events.payment.lost.u-42".into(),
        ..Msg::valid()
    }
    .set("ce-type", "payment.lost")
    .set("traceparent", "nope");
    assert_eq!(
        msg.kind(),
        DecodeErrorKind::UnknownType("payment.lost".into())
    );
}

#[test]
fn malformed_header_values() {
    let cases = [
        ("ce-specversion", "0.3"),
        ("content-type", "application/json"),
        ("ce-id", "pay-1"),
        ("ce-id", "01972b5aa0007a5a9a5a5a5a5a5a5a06"),
        ("Nats-Msg-Id", "01972b5a-a000-7a5a-9a5a-5a5a5a5a5a07"),
        ("ce-source", ""),
        ("ce-source", "payment%zzservice"),
        ("ce-time", "2025-06-01 12:00:00"),
        ("ce-time", "yesterday"),
        ("ce-dataschema", "backbone.payment.v1.PaymentReceived"),
        ("ce-correlationid", ""),
        ("ce-causationid", "%0A"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ),
    ];
    for (name, value) in cases {
        let msg = Msg::valid().set(name, value);
        assert!(
            matches!(msg.kind(), DecodeErrorKind::InvalidHeader { name: n, .. } if n == name),
            "{name}: {value:?} gave {:?}",
            msg.kind()
        );
    }
    assert_eq!(
        Msg::valid().set("ce-id", "pay-1").kind(),
        invalid("ce-id", "pay-1")
    );
}

#[test]
fn repeated_headers_are_invalid() {
    let mut msg = Msg::valid();
    msg.headers.append("ce-type", "payment.received");
    assert_eq!(msg.kind(), invalid("ce-type", "payment.received"));
    let mut msg = Msg::valid();
    msg.headers.append("CE-TYPE", "payment.received");
    assert!(matches!(
        msg.kind(),
        DecodeErrorKind::InvalidHeader {
            name: "ce-type",
            ..
        }
    ));
}

#[test]
fn header_names_are_case_insensitive_on_read() {
    let msg = Msg::valid();
    let shouted: Headers = msg
        .headers
        .iter()
        .map(|(n, v)| (n.to_uppercase(), v))
        .collect();
    let envelope = Envelope::decode(&msg.subject, &shouted, &msg.payload).unwrap();
    assert_eq!(envelope.key, "u-42");
}

#[test]
fn unknown_types() {
    let msg = Msg {
        subject: "events.payment.exploded.u-42".into(),
        ..Msg::valid().set("ce-type", "payment.exploded")
    };
    assert_eq!(
        msg.kind(),
        DecodeErrorKind::UnknownType("payment.exploded".into())
    );
}

#[test]
fn type_mismatches() {
    assert_eq!(
        Msg::valid().set("ce-type", "payment.refunded").kind(),
        DecodeErrorKind::TypeMismatch {
            expected: "payment.received".into(),
            found: "payment.refunded".into(),
        }
    );
    assert_eq!(
        Msg::valid()
            .set("ce-dataschema", "proto:backbone.payment.v1.PaymentRefunded")
            .kind(),
        DecodeErrorKind::TypeMismatch {
            expected: "backbone.payment.v1.PaymentReceived".into(),
            found: "backbone.payment.v1.PaymentRefunded".into(),
        }
    );
    let envelope = sample::sample_envelope(&sample::payment_received(), 6);
    assert_eq!(
        envelope.event::<UserFollowed>().unwrap_err().kind(),
        &DecodeErrorKind::TypeMismatch {
            expected: "user.followed".into(),
            found: "payment.received".into(),
        }
    );
}

#[test]
fn key_mismatches() {
    assert_eq!(
        Msg::valid().set("ce-subject", "u-43").kind(),
        DecodeErrorKind::KeyMismatch {
            expected: "u-42".into(),
            found: "u-43".into()
        }
    );
    // Subject and ce-subject agree, but the payload's user_id does not.
    let msg = Msg {
        subject: "events.payment.received.u-43".into(),
        ..Msg::valid().set("ce-subject", "u-43")
    };
    assert_eq!(
        msg.kind(),
        DecodeErrorKind::KeyMismatch {
            expected: "u-43".into(),
            found: "u-42".into()
        }
    );
}

#[test]
fn undecodable_payloads() {
    for payload in [
        vec![0xff, 0xff, 0xff],
        vec![0x0a, 0x10, b'x'],
        vec![0x1a, 0x01],
    ] {
        let msg = Msg {
            payload,
            ..Msg::valid()
        };
        assert_eq!(msg.kind(), DecodeErrorKind::PayloadNotDecodable);
    }
    // Another message's payload that happens to parse still fails on its key:
    // UserFollowed's follower_id/followee_id land in payment_id/user_id.
    let other = UserFollowed {
        followed_at: None,
        ..sample::user_followed()
    }
    .encode_to_vec();
    let msg = Msg {
        payload: other,
        ..Msg::valid()
    };
    assert_eq!(
        msg.kind(),
        DecodeErrorKind::KeyMismatch {
            expected: "u-42".into(),
            found: "u-7".into()
        }
    );
}

#[test]
fn an_undecodable_payload_is_named_once() {
    let msg = Msg {
        payload: b"\xff\xff\xff".to_vec(),
        ..Msg::valid()
    };
    let err = Envelope::decode(&msg.subject, &msg.headers, &msg.payload).unwrap_err();
    assert_eq!(err.kind(), &DecodeErrorKind::PayloadNotDecodable);
    let text = err.to_string();
    assert_eq!(
        text.matches("does not decode").count(),
        1,
        "each layer adds its context once: {text}"
    );
}

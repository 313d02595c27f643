//! Every event type round-trips through the envelope and through JSON.

use std::collections::BTreeSet;

use backbone_schemas::{
    EncodeErrorKind, Envelope, Event, EventContext, Registry, SubjectErrorKind, sample,
    user::v1::UserFollowed,
};
use serde_json::json;

fn typed_roundtrip<E: Event + PartialEq + std::fmt::Debug>(event: E) {
    let envelope = Envelope::from_event(&event, EventContext::new("test-service")).unwrap();
    assert_eq!(
        envelope.subject(),
        format!("events.{}.{}", E::TYPE, event.key())
    );
    assert_eq!(envelope.data_schema, E::FULL_NAME);
    assert_eq!(envelope.id.get_version_num(), 7);
    let decoded = Envelope::decode(&envelope.subject(), &envelope.headers(), &envelope.payload)
        .unwrap_or_else(|e| panic!("{}: {e}", E::TYPE));
    assert_eq!(decoded, envelope);
    assert_eq!(decoded.event::<E>().unwrap(), event);
}

#[test]
fn every_typed_event_round_trips_through_the_envelope() {
    typed_roundtrip(sample::user_registered());
    typed_roundtrip(sample::user_followed());
    typed_roundtrip(sample::user_unfollowed());
    typed_roundtrip(sample::user_presence_changed());
    typed_roundtrip(sample::message_received());
    typed_roundtrip(sample::message_sent());
    typed_roundtrip(sample::message_delivered());
    typed_roundtrip(sample::image_processed());
    typed_roundtrip(sample::tune_created());
    typed_roundtrip(sample::pack_images_updated());
    typed_roundtrip(sample::payment_received());
    typed_roundtrip(sample::payment_refunded());
}

#[test]
fn samples_cover_every_registered_event_type() {
    let registry: BTreeSet<_> = Registry::global()
        .event_types()
        .iter()
        .map(|t| t.type_name.as_str())
        .collect();
    let samples: BTreeSet<_> = sample::sample_events().iter().map(|(t, _)| *t).collect();
    assert_eq!(samples, registry, "add a sample for every new event type");
}

#[test]
fn every_sample_round_trips_through_headers_and_json() {
    for (type_name, envelope) in sample::sample_events() {
        assert_eq!(envelope.event_type, type_name);
        let decoded =
            Envelope::decode(&envelope.subject(), &envelope.headers(), &envelope.payload).unwrap();
        assert_eq!(decoded, envelope, "{type_name}");

        // protobuf -> JSON -> protobuf -> JSON
        let json = envelope.payload_json().unwrap();
        let ctx = EventContext::new(envelope.source.clone())
            .with_id(envelope.id)
            .with_time(envelope.time);
        let rebuilt = Envelope::from_json(type_name, &json, ctx).unwrap();
        assert_eq!(
            rebuilt.payload, envelope.payload,
            "{type_name}: bytes differ after JSON"
        );
        assert_eq!(rebuilt.key, envelope.key);
        assert_eq!(rebuilt.payload_json().unwrap(), json);
    }
}

#[test]
fn json_uses_the_proto3_mapping() {
    let envelope =
        Envelope::from_event(&sample::payment_received(), EventContext::new("t")).unwrap();
    assert_eq!(
        envelope.payload_json().unwrap(),
        json!({
            "paymentId": "pay-01JWM3Q8Z4",
            "userId": "u-42",
            "amountMinor": "1299",
            "currency": "USD",
            "provider": "stripe",
            "providerPaymentId": "pi_3PxY7a2eZvKYlo2C1a2b3c4d",
            "productSku": "tune-pack-20",
            "receivedAt": "2025-06-01T12:03:50Z",
        })
    );
    // Proto field names and numeric int64 are accepted on input.
    let input =
        json!({"follower_id": "u-1", "followee_id": "u-2", "followed_at": "2025-06-01T12:00:00Z"});
    let envelope = Envelope::from_json("user.followed", &input, EventContext::new("t")).unwrap();
    assert_eq!(envelope.subject(), "events.user.followed.u-1");
}

#[test]
fn headers_are_written_in_contract_order_and_percent_encoded() {
    let ctx = EventContext::new("payment service \"eu\"").with_correlation_id("ação-1");
    let envelope = Envelope::from_event(&sample::payment_received(), ctx).unwrap();
    let headers = envelope.headers();
    let names: Vec<_> = headers.iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "ce-specversion",
            "ce-id",
            "ce-source",
            "ce-type",
            "ce-time",
            "ce-subject",
            "ce-dataschema",
            "content-type",
            "ce-correlationid",
            "Nats-Msg-Id",
        ]
    );
    assert_eq!(
        headers.get("ce-source"),
        Some("payment%20service%20%22eu%22")
    );
    assert_eq!(headers.get("ce-correlationid"), Some("a%C3%A7%C3%A3o-1"));
    let decoded = Envelope::decode(&envelope.subject(), &headers, &envelope.payload).unwrap();
    assert_eq!(decoded.source, "payment service \"eu\"");
    assert_eq!(decoded.correlation_id.as_deref(), Some("ação-1"));
}

#[test]
fn generated_time_is_utc_millis_and_context_is_kept() {
    let envelope = Envelope::from_event(&sample::user_followed(), EventContext::new("t")).unwrap();
    assert_eq!(envelope.time.offset(), time::UtcOffset::UTC);
    assert_eq!(envelope.time.nanosecond() % 1_000_000, 0);
    let cause = &sample::sample_event("payment.received");
    let ctx = EventContext::new("t").caused_by(cause);
    assert_eq!(ctx.causation_id, Some(cause.id.to_string()));
    assert_eq!(ctx.correlation_id, cause.correlation_id);
    assert_eq!(ctx.traceparent, cause.traceparent);
}

#[test]
fn encode_errors_have_one_kind_each() {
    let follow = |key: &str| UserFollowed {
        follower_id: key.into(),
        ..sample::user_followed()
    };
    let kind = |event: UserFollowed, ctx: EventContext| {
        Envelope::from_event(&event, ctx)
            .unwrap_err()
            .kind()
            .clone()
    };
    let ok = || EventContext::new("user-service");
    assert_eq!(
        kind(follow(""), ok()),
        EncodeErrorKind::InvalidKey(SubjectErrorKind::EmptyKey)
    );
    assert_eq!(
        kind(follow("u.42"), ok()),
        EncodeErrorKind::InvalidKey(SubjectErrorKind::InvalidKeyChar { ch: '.', index: 1 })
    );
    assert_eq!(
        kind(follow(&"k".repeat(129)), ok()),
        EncodeErrorKind::InvalidKey(SubjectErrorKind::KeyTooLong { len: 129 })
    );
    assert_eq!(
        kind(follow("u-1"), EventContext::default()),
        EncodeErrorKind::InvalidSource
    );
    assert_eq!(
        kind(follow("u-1"), EventContext::new("a\nb")),
        EncodeErrorKind::InvalidSource
    );
    assert_eq!(
        kind(follow("u-1"), ok().with_correlation_id("")),
        EncodeErrorKind::InvalidCorrelationId
    );
    assert_eq!(
        kind(follow("u-1"), ok().with_causation_id("\t")),
        EncodeErrorKind::InvalidCausationId
    );
    assert_eq!(
        kind(follow("u-1"), ok().with_traceparent("00-abc")),
        EncodeErrorKind::InvalidTraceparent
    );
    let err = Envelope::from_json("user.exploded", &json!({}), ok()).unwrap_err();
    assert_eq!(
        err.kind(),
        &EncodeErrorKind::UnknownType("user.exploded".into())
    );
    let err = Envelope::from_json("user.followed", &json!({"followerId": 7}), ok()).unwrap_err();
    assert_eq!(err.kind(), &EncodeErrorKind::InvalidJson);
    let err =
        Envelope::from_json("user.followed", &json!({"followeeId": "u-7"}), ok()).unwrap_err();
    assert_eq!(
        err.kind(),
        &EncodeErrorKind::InvalidKey(SubjectErrorKind::EmptyKey)
    );
}

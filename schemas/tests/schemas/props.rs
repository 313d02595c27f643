//! Property tests: key validation, subjects and header percent-encoding.

use backbone_schemas::{
    Envelope, EventContext, SubjectErrorKind, event_subject, header_value, parse_event_subject,
    subject::{MAX_KEY_LEN, is_key_char},
    user::v1::UserFollowed,
    validate_key,
};
use proptest::prelude::*;

/// Valid keys: 1..=128 printable ASCII characters except `.`, `*`, `>`.
fn valid_key() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        (0x21u8..=0x7e).prop_filter("not . * >", |b| !matches!(b, b'.' | b'*' | b'>')),
        1..=MAX_KEY_LEN,
    )
    .prop_map(|bytes| String::from_utf8(bytes).unwrap())
}

proptest! {
    #[test]
    fn valid_keys_round_trip_through_subjects(key in valid_key()) {
        prop_assert!(validate_key(&key).is_ok());
        let subject = event_subject("user.followed", &key).unwrap();
        prop_assert_eq!(parse_event_subject(&subject).unwrap(), ("user.followed", key.as_str()));
    }

    #[test]
    fn a_forbidden_char_is_reported_where_it_is(
        prefix in "[a-z0-9-]{0,20}",
        bad in prop_oneof![Just('.'), Just('*'), Just('>'), Just(' '), Just('\t'), Just('é'), Just('\u{7f}')],
        suffix in "[a-z0-9-]{0,20}",
    ) {
        let key = format!("{prefix}{bad}{suffix}");
        let err = validate_key(&key).unwrap_err();
        prop_assert_eq!(
            err.kind(),
            &SubjectErrorKind::InvalidKeyChar { ch: bad, index: prefix.len() }
        );
    }

    #[test]
    fn validation_agrees_with_the_rules(key in any::<String>()) {
        let expected_ok = !key.is_empty() && key.len() <= MAX_KEY_LEN && key.chars().all(is_key_char);
        prop_assert_eq!(validate_key(&key).is_ok(), expected_ok);
    }

    #[test]
    fn header_values_round_trip(value in any::<String>()) {
        let encoded = header_value::encode(&value);
        prop_assert!(encoded.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'"'));
        prop_assert_eq!(header_value::decode(&encoded).unwrap(), value.as_str());
    }

    #[test]
    fn envelopes_round_trip_for_any_key_and_context(
        key in valid_key(),
        source in "[^\\p{Cc}]{1,40}",
        correlation in proptest::option::of("[^\\p{Cc}]{1,40}"),
    ) {
        let event = UserFollowed { follower_id: key, followee_id: "u-7".into(), followed_at: None };
        let mut ctx = EventContext::new(source);
        ctx.correlation_id = correlation;
        let envelope = Envelope::from_event(&event, ctx).unwrap();
        let decoded = Envelope::decode(&envelope.subject(), &envelope.headers(), &envelope.payload);
        prop_assert_eq!(decoded.unwrap(), envelope);
    }
}

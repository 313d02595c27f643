//! One realistic, deterministic instance of every event type.
//!
//! For tests, demos and documentation: the payloads, ids and times are fixed,
//! so encoded bytes are stable (the example in `docs/wire-contract.md` is
//! [`payment_received`] wrapped by [`sample_envelope`]). Every type in the
//! registry has a sample; a test enforces it.
//!
//! ```
//! use backbone_schemas::{Envelope, sample};
//!
//! for (type_name, envelope) in sample::sample_events() {
//!     let decoded = Envelope::decode(&envelope.subject(), &envelope.headers(), &envelope.payload)
//!         .unwrap();
//!     assert_eq!(decoded.event_type, type_name);
//! }
//! ```

use prost_types::Timestamp;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::common::v1::{MediaRef, media_ref::Location};
use crate::context::EventContext;
use crate::envelope::Envelope;
use crate::event::Event;
use crate::media::v1::{ImageProcessed, PackImagesUpdated, TuneCreated};
use crate::messaging::v1::{Channel, DirectMessageDelivered, DirectMessageSent, MessageReceived};
use crate::payment::v1::{PaymentReceived, PaymentRefunded};
use crate::user::v1::{
    PresenceStatus, SignupChannel, UserFollowed, UserPresenceChanged, UserRegistered,
    UserUnfollowed,
};

/// The base instant of every sample: 2025-06-01T12:00:00Z, in unix millis.
pub const SAMPLE_EPOCH_MS: u64 = 1_748_779_200_000;

/// The `traceparent` sample envelopes carry.
pub const SAMPLE_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn ts(offset_ms: u64) -> Option<Timestamp> {
    let ms = SAMPLE_EPOCH_MS + offset_ms;
    Some(Timestamp {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    })
}

/// `user.registered`: u-42 signs up through the WhatsApp bot.
pub fn user_registered() -> UserRegistered {
    UserRegistered {
        user_id: "u-42".into(),
        handle: "ana_souza".into(),
        display_name: "Ana Souza 🌻".into(),
        email: "ana@example.com".into(),
        locale: "pt-BR".into(),
        channel: SignupChannel::Whatsapp.into(),
        referred_by_user_id: "u-7".into(),
        registered_at: ts(0),
    }
}

/// `user.followed`: u-42 follows u-7.
pub fn user_followed() -> UserFollowed {
    UserFollowed {
        follower_id: "u-42".into(),
        followee_id: "u-7".into(),
        followed_at: ts(60_000),
    }
}

/// `user.unfollowed`: u-42 unfollows u-7.
pub fn user_unfollowed() -> UserUnfollowed {
    UserUnfollowed {
        follower_id: "u-42".into(),
        followee_id: "u-7".into(),
        unfollowed_at: ts(120_000),
    }
}

/// `user.presence_changed`: u-42 comes online.
pub fn user_presence_changed() -> UserPresenceChanged {
    UserPresenceChanged {
        user_id: "u-42".into(),
        status: PresenceStatus::Online.into(),
        changed_at: ts(150_000),
    }
}

/// `message.sent`: u-7 sends u-42 a direct message.
pub fn message_sent() -> DirectMessageSent {
    DirectMessageSent {
        recipient_id: "u-42".into(),
        message_id: "dm-01JX9A".into(),
        sender_id: "u-7".into(),
        text: "are you coming tonight?".into(),
        sent_at: ts(181_000),
    }
}

/// `message.delivered`: u-42's phone received it.
pub fn message_delivered() -> DirectMessageDelivered {
    DirectMessageDelivered {
        recipient_id: "u-42".into(),
        message_id: "dm-01JX9A".into(),
        delivered_at: ts(182_000),
    }
}

/// `message.received`: a WhatsApp message with text and one photo.
pub fn message_received() -> MessageReceived {
    MessageReceived {
        conversation_id: "c-7f3a9".into(),
        provider_message_id: "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFjNFQjBDMEE4".into(),
        channel: Channel::Whatsapp.into(),
        sender_user_id: "u-42".into(),
        sender_address: "+5511987654321".into(),
        text: "Olá! Can you make me look like a \"pirate\"? 🏴‍☠️".into(),
        media: vec![MediaRef {
            location: Some(Location::Url(
                "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=991".into(),
            )),
            content_type: "image/jpeg".into(),
            size_bytes: 482_113,
            sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        }],
        reply_to_provider_message_id: String::new(),
        received_at: ts(180_000),
    }
}

/// `image.processed`: the photo above, face-cropped into the blob store.
pub fn image_processed() -> ImageProcessed {
    ImageProcessed {
        image_id: "img-01JWM3R2".into(),
        user_id: "u-42".into(),
        original: Some(MediaRef {
            location: Some(Location::BlobKey("uploads/u-42/img-01JWM3R2.jpg".into())),
            content_type: "image/jpeg".into(),
            size_bytes: 482_113,
            sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        }),
        processed: Some(MediaRef {
            location: Some(Location::BlobKey("images/u-42/img-01JWM3R2.webp".into())),
            content_type: "image/webp".into(),
            size_bytes: 88_406,
            sha256: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae".into(),
        }),
        width_px: 1024,
        height_px: 1024,
        pipeline: "face-crop@3".into(),
        duration_ms: 1_840,
        processed_at: ts(184_000),
    }
}

/// `pack.images_updated`: pack-3c1 gains the processed image (revision 2).
pub fn pack_images_updated() -> PackImagesUpdated {
    PackImagesUpdated {
        pack_id: "pack-3c1".into(),
        user_id: "u-42".into(),
        revision: 2,
        image_ids: vec!["img-01JWM1A0".into(), "img-01JWM3R2".into()],
        added_image_ids: vec!["img-01JWM3R2".into()],
        removed_image_ids: vec![],
        updated_at: ts(185_000),
    }
}

/// `tune.created`: a tune trained on pack-3c1.
pub fn tune_created() -> TuneCreated {
    TuneCreated {
        tune_id: "tune-9k2".into(),
        user_id: "u-42".into(),
        pack_id: "pack-3c1".into(),
        title: "Ana as a pirate".into(),
        base_model: "sdxl-1.0".into(),
        class_name: "woman".into(),
        image_ids: vec!["img-01JWM1A0".into(), "img-01JWM3R2".into()],
        created_at: ts(240_000),
    }
}

/// `payment.received`: u-42 pays 12.99 USD for a tune pack.
pub fn payment_received() -> PaymentReceived {
    PaymentReceived {
        payment_id: "pay-01JWM3Q8Z4".into(),
        user_id: "u-42".into(),
        amount_minor: 1299,
        currency: "USD".into(),
        provider: "stripe".into(),
        provider_payment_id: "pi_3PxY7a2eZvKYlo2C1a2b3c4d".into(),
        product_sku: "tune-pack-20".into(),
        received_at: ts(230_000),
    }
}

/// `payment.refunded`: 5.00 USD of that payment refunded.
pub fn payment_refunded() -> PaymentRefunded {
    PaymentRefunded {
        refund_id: "ref-01JWM9K1".into(),
        payment_id: "pay-01JWM3Q8Z4".into(),
        user_id: "u-42".into(),
        amount_minor: 500,
        currency: "USD".into(),
        reason: "requested_by_customer".into(),
        refunded_at: ts(3_600_000),
    }
}

/// The publishing service of a sample event type, e.g. `payment-service`.
pub fn sample_source(type_name: &str) -> &'static str {
    match type_name.split('.').next() {
        Some("user") => "user-service",
        Some("message") => "messaging-service",
        Some("payment") => "payment-service",
        _ => "media-service",
    }
}

/// A fixed UUIDv7 for sample number `n`, timestamped at [`SAMPLE_EPOCH_MS`].
pub fn sample_id(n: u8) -> Uuid {
    let mut random = [0x5a; 10];
    random[9] = n;
    uuid::Builder::from_unix_timestamp_millis(SAMPLE_EPOCH_MS, &random).into_uuid()
}

/// [`SAMPLE_EPOCH_MS`] plus `offset_ms`, as an `OffsetDateTime`.
pub fn sample_time(offset_ms: u64) -> OffsetDateTime {
    let nanos = i128::from(SAMPLE_EPOCH_MS + offset_ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Wraps `event` with a fixed id (`sample_id(n)`), time, source, the
/// correlation id `checkout-81f2` and [`SAMPLE_TRACEPARENT`].
pub fn sample_envelope<E: Event>(event: &E, n: u8) -> Envelope {
    let ctx = EventContext::new(sample_source(E::TYPE))
        .with_id(sample_id(n))
        .with_time(sample_time(u64::from(n) * 1_000 + 123))
        .with_correlation_id("checkout-81f2")
        .with_traceparent(SAMPLE_TRACEPARENT);
    Envelope::from_event(event, ctx).expect("sample events are valid")
}

/// The sample envelope of `type_name` (one of [`sample_events`]).
///
/// # Panics
/// When no sample has that type.
pub fn sample_event(type_name: &str) -> Envelope {
    sample_events()
        .into_iter()
        .find(|(t, _)| *t == type_name)
        .map(|(_, envelope)| envelope)
        .unwrap_or_else(|| panic!("no sample of {type_name}"))
}

/// One envelope per event type, sorted by type name, with fixed ids and
/// times. `payment.refunded` is caused by `payment.received`.
pub fn sample_events() -> Vec<(&'static str, Envelope)> {
    let payment = sample_envelope(&payment_received(), 6);
    let refund_ctx = EventContext::new(sample_source(PaymentRefunded::TYPE))
        .with_id(sample_id(7))
        .with_time(sample_time(3_600_500))
        .caused_by(&payment);
    let refund = Envelope::from_event(&payment_refunded(), refund_ctx).expect("valid sample");
    vec![
        (ImageProcessed::TYPE, sample_envelope(&image_processed(), 4)),
        (
            DirectMessageDelivered::TYPE,
            sample_envelope(&message_delivered(), 11),
        ),
        (
            MessageReceived::TYPE,
            sample_envelope(&message_received(), 3),
        ),
        (
            DirectMessageSent::TYPE,
            sample_envelope(&message_sent(), 10),
        ),
        (
            PackImagesUpdated::TYPE,
            sample_envelope(&pack_images_updated(), 5),
        ),
        (PaymentReceived::TYPE, payment),
        (PaymentRefunded::TYPE, refund),
        (TuneCreated::TYPE, sample_envelope(&tune_created(), 8)),
        (UserFollowed::TYPE, sample_envelope(&user_followed(), 1)),
        (
            UserPresenceChanged::TYPE,
            sample_envelope(&user_presence_changed(), 9),
        ),
        (UserRegistered::TYPE, sample_envelope(&user_registered(), 0)),
        (UserUnfollowed::TYPE, sample_envelope(&user_unfollowed(), 2)),
    ]
}

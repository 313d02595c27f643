//! Event builders for the read models' unit tests.

use backbone_broker::StoredMessage;
use backbone_schemas::{
    Envelope, Event, EventContext,
    common::v1::{MediaRef, media_ref::Location},
    media::v1::{ImageProcessed, PackImagesUpdated, TuneCreated},
    messaging::v1::{Channel, MessageReceived},
    payment::v1::{PaymentReceived, PaymentRefunded},
    user::v1::{UserFollowed, UserUnfollowed},
};

use crate::{
    model::{Outcome, ReadModel, apply_message},
    store::ProjectionStore,
};

fn wrap<E: Event>(event: &E) -> Envelope {
    let ctx = EventContext::new("test").with_correlation_id(format!("corr-{}", event.key()));
    Envelope::from_event(event, ctx).unwrap()
}

pub(crate) fn stored(seq: u64, e: &Envelope) -> StoredMessage {
    StoredMessage {
        stream: "EVENTS".into(),
        seq,
        subject: e.subject(),
        headers: e.headers(),
        payload: e.payload.clone(),
        time: std::time::SystemTime::now(),
        malformed_headers: None,
    }
}

/// Applies `events` as seqs after the checkpoint, one commit each; panics
/// unless each is applied or rejected.
pub(crate) fn apply_all(model: &dyn ReadModel, store: &ProjectionStore, events: Vec<Envelope>) {
    for e in events {
        let seq = store.checkpoint().unwrap() + 1;
        let mut tx = store.transaction();
        match apply_message(model, &stored(seq, &e), &mut tx) {
            Outcome::Applied => {}
            other => panic!("event {seq} not applied: {other:?}"),
        }
        store.commit(tx, seq).unwrap();
    }
}

pub(crate) fn follow(a: &str, b: &str) -> Envelope {
    wrap(&UserFollowed {
        follower_id: a.into(),
        followee_id: b.into(),
        followed_at: None,
    })
}

pub(crate) fn unfollow(a: &str, b: &str) -> Envelope {
    wrap(&UserUnfollowed {
        follower_id: a.into(),
        followee_id: b.into(),
        unfollowed_at: None,
    })
}

pub(crate) fn payment(user: &str, id: &str, amount: i64, currency: &str) -> Envelope {
    wrap(&PaymentReceived {
        payment_id: id.into(),
        user_id: user.into(),
        amount_minor: amount,
        currency: currency.into(),
        ..Default::default()
    })
}

pub(crate) fn refund(user: &str, id: &str, payment: &str, amount: i64, currency: &str) -> Envelope {
    wrap(&PaymentRefunded {
        refund_id: id.into(),
        payment_id: payment.into(),
        user_id: user.into(),
        amount_minor: amount,
        currency: currency.into(),
        ..Default::default()
    })
}

pub(crate) fn image(user: &str, id: &str) -> Envelope {
    wrap(&ImageProcessed {
        image_id: id.into(),
        user_id: user.into(),
        processed: Some(MediaRef {
            location: Some(Location::BlobKey(format!("images/{id}.jpg"))),
            ..Default::default()
        }),
        width_px: 512,
        height_px: 512,
        ..Default::default()
    })
}

pub(crate) fn tune(user: &str, id: &str, pack: &str) -> Envelope {
    wrap(&TuneCreated {
        tune_id: id.into(),
        user_id: user.into(),
        pack_id: pack.into(),
        title: id.into(),
        ..Default::default()
    })
}

pub(crate) fn pack(id: &str, user: &str, revision: u64, images: &[&str]) -> Envelope {
    wrap(&PackImagesUpdated {
        pack_id: id.into(),
        user_id: user.into(),
        revision,
        image_ids: images.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

pub(crate) fn message(conversation: &str, user: &str, provider_id: &str, text: &str) -> Envelope {
    wrap(&MessageReceived {
        conversation_id: conversation.into(),
        provider_message_id: provider_id.into(),
        channel: Channel::Whatsapp.into(),
        sender_user_id: user.into(),
        text: text.into(),
        ..Default::default()
    })
}

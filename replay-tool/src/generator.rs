//! The demo's deterministic event stream: the seed services (user,
//! messaging, media, payment) as a seeded simulation.
//!
//! The same `(seed, count)` always yields the same envelopes, byte for byte
//! (ids, times and payloads derive from the seed), so digests printed by two
//! demo runs can be compared. Users register before they act; follows and
//! unfollows keep a consistent graph; messages belong to conversations;
//! images go into packs, packs into tunes; refunds refer to earlier
//! payments and never exceed them, except for a few deliberate poison
//! refunds (larger than anything the user paid) that billing must reject
//! into the dead-letter stream.

use std::collections::BTreeSet;

use backbone_schemas::{
    Envelope, Event, EventContext,
    common::v1::{MediaRef, media_ref::Location},
    media::v1::{ImageProcessed, PackImagesUpdated, TuneCreated},
    messaging::v1::{Channel, MessageReceived},
    payment::v1::{PaymentReceived, PaymentRefunded},
    sample::SAMPLE_EPOCH_MS,
    user::v1::{SignupChannel, UserFollowed, UserRegistered, UserUnfollowed},
};
use prost_types::Timestamp;

/// SplitMix64: tiny, seedable, and identical on every platform.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Debug, Clone, Default)]
struct User {
    registered: bool,
    following: BTreeSet<usize>,
    payments: Vec<(String, i64)>,
    packs: Vec<(String, u64, Vec<String>)>,
    images: Vec<String>,
}

/// Generates the demo's events.
#[derive(Debug, Clone)]
pub(crate) struct Generator {
    rng: Rng,
    users: Vec<User>,
    produced: u64,
    total: u64,
    poison_every: u64,
    serial: u64,
}

/// How many poison refunds `total` events contain.
pub(crate) fn poison_count(total: u64) -> u64 {
    total / poison_interval(total)
}

fn poison_interval(total: u64) -> u64 {
    // "A few": about five per run whatever its size, at least one per 20k.
    (total / 5).clamp(200, 20_000)
}

impl Generator {
    /// A generator of `total` events from `seed`.
    pub(crate) fn new(seed: u64, total: u64) -> Self {
        let user_count = (total / 40).clamp(10, 5_000) as usize;
        Self {
            rng: Rng(seed),
            users: vec![User::default(); user_count],
            produced: 0,
            total,
            poison_every: poison_interval(total),
            serial: 0,
        }
    }

    fn context(&mut self, source: &str) -> EventContext {
        let ms = SAMPLE_EPOCH_MS + self.produced * 250;
        let mut random = [0u8; 10];
        random[..8].copy_from_slice(&self.rng.next().to_be_bytes());
        random[8..].copy_from_slice(&self.produced.to_be_bytes()[6..]);
        let id = uuid::Builder::from_unix_timestamp_millis(ms, &random).into_uuid();
        let nanos = i128::from(ms) * 1_000_000;
        let time = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        EventContext::new(source).with_id(id).with_time(time)
    }

    fn timestamp(&self) -> Option<Timestamp> {
        let ms = SAMPLE_EPOCH_MS + self.produced * 250;
        Some(Timestamp {
            seconds: (ms / 1000) as i64,
            nanos: ((ms % 1000) * 1_000_000) as i32,
        })
    }

    fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    fn wrap<E: Event>(&mut self, event: &E, source: &str, correlation: Option<String>) -> Envelope {
        let mut ctx = self.context(source);
        ctx.correlation_id = correlation;
        Envelope::from_event(event, ctx).expect("generated events have valid keys and context")
    }

    fn register(&mut self, user: usize) -> Envelope {
        self.users[user].registered = true;
        let channels = [
            SignupChannel::Web,
            SignupChannel::Ios,
            SignupChannel::Android,
            SignupChannel::Whatsapp,
        ];
        let channel = channels[self.rng.below(4) as usize];
        let referrer = self.rng.below(self.users.len() as u64) as usize;
        let event = UserRegistered {
            user_id: format!("u-{user}"),
            handle: format!("user_{user}"),
            display_name: format!("User {user}"),
            email: format!("user{user}@example.com"),
            locale: ["en-US", "pt-BR", "de-DE"][user % 3].into(),
            channel: channel.into(),
            referred_by_user_id: if self.users[referrer].registered && referrer != user {
                format!("u-{referrer}")
            } else {
                String::new()
            },
            registered_at: self.timestamp(),
        };
        self.wrap(&event, "user-service", None)
    }

    fn media(&mut self, path: String, content_type: &str) -> Option<MediaRef> {
        Some(MediaRef {
            location: Some(Location::BlobKey(path)),
            content_type: content_type.into(),
            size_bytes: 10_000 + self.rng.below(900_000),
            sha256: format!("{:016x}{:016x}", self.rng.next(), self.rng.next()),
        })
    }

    fn event_for(&mut self, u: usize) -> Envelope {
        let user_id = format!("u-{u}");
        let roll = self.rng.below(100);
        match roll {
            0..=34 => {
                let conversation = format!("c-{}", u * 3 + self.rng.below(3) as usize);
                let serial = self.next_serial();
                let with_photo = self.rng.below(5) == 0;
                let media = if with_photo {
                    self.media(format!("uploads/{user_id}/m-{serial}.jpg"), "image/jpeg")
                        .into_iter()
                        .collect()
                } else {
                    Vec::new()
                };
                let event = MessageReceived {
                    conversation_id: conversation,
                    provider_message_id: format!("wamid.{serial:012}"),
                    channel: Channel::Whatsapp.into(),
                    sender_user_id: user_id,
                    sender_address: format!("+5511{:09}", u),
                    text: format!("message {serial}: make me look like a pirate"),
                    media,
                    reply_to_provider_message_id: String::new(),
                    received_at: self.timestamp(),
                };
                self.wrap(&event, "messaging-service", None)
            }
            35..=49 => {
                let n = self.users.len();
                let other = (u + 1 + self.rng.below(n as u64 - 1) as usize) % n;
                let unfollow = self.users[u].following.contains(&other);
                if unfollow {
                    self.users[u].following.remove(&other);
                    let event = UserUnfollowed {
                        follower_id: user_id,
                        followee_id: format!("u-{other}"),
                        unfollowed_at: self.timestamp(),
                    };
                    self.wrap(&event, "user-service", None)
                } else {
                    self.users[u].following.insert(other);
                    let event = UserFollowed {
                        follower_id: user_id,
                        followee_id: format!("u-{other}"),
                        followed_at: self.timestamp(),
                    };
                    self.wrap(&event, "user-service", None)
                }
            }
            50..=64 => {
                let serial = self.next_serial();
                let image_id = format!("img-{serial}");
                self.users[u].images.push(image_id.clone());
                let event = ImageProcessed {
                    image_id: image_id.clone(),
                    user_id: user_id.clone(),
                    original: self.media(format!("uploads/{user_id}/{image_id}.jpg"), "image/jpeg"),
                    processed: self
                        .media(format!("images/{user_id}/{image_id}.webp"), "image/webp"),
                    width_px: 1024,
                    height_px: 1024,
                    pipeline: "face-crop@3".into(),
                    duration_ms: 500 + self.rng.below(3_000) as u32,
                    processed_at: self.timestamp(),
                };
                self.wrap(&event, "media-service", None)
            }
            65..=74 => self.pack_or_tune(u),
            75..=91 => {
                let serial = self.next_serial();
                let amount = [499, 999, 1299, 2999, 14_999][self.rng.below(5) as usize];
                let payment_id = format!("pay-{serial}");
                self.users[u].payments.push((payment_id.clone(), amount));
                let event = PaymentReceived {
                    payment_id,
                    user_id,
                    amount_minor: amount,
                    currency: "USD".into(),
                    provider: "stripe".into(),
                    provider_payment_id: format!("pi_{:016x}", self.rng.next()),
                    product_sku: "tune-pack-20".into(),
                    received_at: self.timestamp(),
                };
                self.wrap(
                    &event,
                    "payment-service",
                    Some(format!("checkout-{serial}")),
                )
            }
            _ => self.refund(u),
        }
    }

    fn poison(&mut self, u: usize) -> Envelope {
        let paid: i64 = self.users[u].payments.iter().map(|(_, a)| a).sum();
        let serial = self.next_serial();
        let event = PaymentRefunded {
            refund_id: format!("ref-{serial}"),
            payment_id: format!("pay-unknown-{serial}"),
            user_id: format!("u-{u}"),
            amount_minor: paid + 100_000,
            currency: "USD".into(),
            reason: "fraudulent_chargeback".into(),
            refunded_at: self.timestamp(),
        };
        self.wrap(&event, "payment-service", Some(format!("dispute-{serial}")))
    }

    fn pack_or_tune(&mut self, u: usize) -> Envelope {
        let user_id = format!("u-{u}");
        let images = self.users[u].images.clone();
        let has_pack = !self.users[u].packs.is_empty();
        if has_pack && self.rng.below(3) == 0 {
            let (pack_id, _, image_ids) = self.users[u].packs[0].clone();
            let serial = self.next_serial();
            let event = TuneCreated {
                tune_id: format!("tune-{serial}"),
                user_id,
                pack_id,
                title: format!("Tune {serial}"),
                base_model: "sdxl-1.0".into(),
                class_name: "person".into(),
                image_ids,
                created_at: self.timestamp(),
            };
            return self.wrap(&event, "media-service", None);
        }
        if !has_pack {
            let serial = self.next_serial();
            self.users[u]
                .packs
                .push((format!("pack-{serial}"), 0, Vec::new()));
        }
        let (pack_id, revision, mut image_ids) = self.users[u].packs[0].clone();
        let added: Vec<String> = images
            .iter()
            .filter(|i| !image_ids.contains(i))
            .take(2)
            .cloned()
            .collect();
        let removed: Vec<String> = if image_ids.len() > 6 {
            vec![image_ids.remove(0)]
        } else {
            Vec::new()
        };
        image_ids.extend(added.iter().cloned());
        self.users[u].packs[0] = (pack_id.clone(), revision + 1, image_ids.clone());
        let event = PackImagesUpdated {
            pack_id,
            user_id,
            revision: revision + 1,
            image_ids,
            added_image_ids: added,
            removed_image_ids: removed,
            updated_at: self.timestamp(),
        };
        self.wrap(&event, "media-service", None)
    }

    fn refund(&mut self, u: usize) -> Envelope {
        let Some((payment_id, amount)) = self.users[u].payments.pop() else {
            return self.pack_or_tune(u);
        };
        let serial = self.next_serial();
        let event = PaymentRefunded {
            refund_id: format!("ref-{serial}"),
            payment_id,
            user_id: format!("u-{u}"),
            amount_minor: amount / 2,
            currency: "USD".into(),
            reason: "requested_by_customer".into(),
            refunded_at: self.timestamp(),
        };
        self.wrap(&event, "payment-service", Some(format!("refund-{serial}")))
    }
}

impl Iterator for Generator {
    type Item = Envelope;

    fn next(&mut self) -> Option<Envelope> {
        if self.produced >= self.total {
            return None;
        }
        let u = self.rng.below(self.users.len() as u64) as usize;
        let poison = (self.produced + 1).is_multiple_of(self.poison_every);
        let envelope = if poison {
            self.poison(u)
        } else if self.users[u].registered {
            self.event_for(u)
        } else {
            self.register(u)
        };
        self.produced += 1;
        Some(envelope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_events() {
        let a: Vec<_> = Generator::new(7, 500).collect();
        let b: Vec<_> = Generator::new(7, 500).collect();
        assert_eq!(a, b);
        let c: Vec<_> = Generator::new(8, 500).collect();
        assert_ne!(a, c);
        assert_eq!(a.len(), 500);
    }

    #[test]
    fn every_event_round_trips_and_ids_are_unique() {
        let events: Vec<_> = Generator::new(1, 3_000).collect();
        let ids: BTreeSet<_> = events.iter().map(|e| e.id).collect();
        assert_eq!(ids.len(), events.len());
        let mut types = BTreeSet::new();
        for e in &events {
            let decoded = Envelope::decode(&e.subject(), &e.headers(), &e.payload).unwrap();
            types.insert(decoded.event_type);
        }
        // Every type of the seed flows the generator models (not presence).
        assert_eq!(types.len(), 9, "every generated type appears: {types:?}");
    }

    #[test]
    fn poison_refunds_exceed_what_was_paid() {
        let events: Vec<_> = Generator::new(3, 2_000).collect();
        let poison = events
            .iter()
            .filter(|e| {
                e.correlation_id
                    .as_deref()
                    .is_some_and(|c| c.starts_with("dispute-"))
            })
            .count() as u64;
        assert_eq!(poison, poison_count(2_000));
        assert!(poison >= 3);
    }
}

//! Backbone's event schemas and wire contract.
//!
//! This crate is the single source of truth for what travels on the bus.
//! Everything is derived from the `.proto` files in `schemas/proto/`, which
//! `build.rs` compiles with protox (no `protoc` needed).
//!
//! # Events
//!
//! An event is a protobuf message that declares its type name and key field
//! with custom options (`proto/backbone/options.proto`):
//!
//! ```proto
//! message UserFollowed {
//!   option (backbone.event).type = "user.followed";
//!   string follower_id = 1 [(backbone.key) = true];
//!   string followee_id = 2;
//!   google.protobuf.Timestamp followed_at = 3;
//! }
//! ```
//!
//! The generated Rust types live in one module per package
//! (`backbone.user.v1` → [`user::v1`]), and every event message implements
//! [`Event`], generated from those options:
//!
//! | type                  | message                                   | key field         |
//! |-----------------------|-------------------------------------------|-------------------|
//! | `user.registered`     | [`user::v1::UserRegistered`]              | `user_id`         |
//! | `user.followed`       | [`user::v1::UserFollowed`]                | `follower_id`     |
//! | `user.unfollowed`     | [`user::v1::UserUnfollowed`]              | `follower_id`     |
//! | `message.received`    | [`messaging::v1::MessageReceived`]        | `conversation_id` |
//! | `image.processed`     | [`media::v1::ImageProcessed`]             | `user_id`         |
//! | `tune.created`        | [`media::v1::TuneCreated`]                | `user_id`         |
//! | `pack.images_updated` | [`media::v1::PackImagesUpdated`]          | `pack_id`         |
//! | `payment.received`    | [`payment::v1::PaymentReceived`]          | `user_id`         |
//! | `payment.refunded`    | [`payment::v1::PaymentRefunded`]          | `user_id`         |
//!
//! Keys are chosen so that what a read model must see in order shares a
//! subject: a follower's follows and unfollows, a user's ledger, a
//! conversation's messages, a pack's revisions. Times are
//! `google.protobuf.Timestamp`; money is `int64 amount_minor` plus an
//! ISO 4217 `currency`.
//!
//! # Publishing
//!
//! Wrap an event in an [`Envelope`] with an [`EventContext`], then publish
//! [`Envelope::payload`] on [`Envelope::subject`] with [`Envelope::headers`]:
//!
//! ```
//! use backbone_schemas::{Envelope, EventContext, user::v1::UserFollowed};
//!
//! let event = UserFollowed { follower_id: "u-42".into(), followee_id: "u-7".into(), followed_at: None };
//! let envelope = Envelope::from_event(&event, EventContext::new("user-service")).unwrap();
//! assert_eq!(envelope.subject(), "events.user.followed.u-42");
//! let headers = envelope.headers();
//! assert_eq!(headers.get("ce-type"), Some("user.followed"));
//! assert_eq!(headers.get("Nats-Msg-Id"), headers.get("ce-id"));
//! ```
//!
//! The subject is `events.<type>.<key>` ([`subject`]); the headers are the
//! CloudEvents 1.0 NATS binding in binary mode ([`wire`]); the payload is the
//! protobuf encoding. `docs/wire-contract.md` specifies the same for Python
//! and Go publishers, with a byte-exact example checked by this crate's tests.
//!
//! # Consuming
//!
//! [`Envelope::decode`] validates everything a message claims (subject,
//! headers, schema, payload, key) and fails with exactly one
//! [`DecodeErrorKind`] per problem. [`Envelope::event`] then gives the typed
//! message. Tools that do not know the type statically use the [`Registry`]:
//! every event type with its descriptor, dynamic decoding and proto3 JSON
//! transcoding ([`Envelope::payload_json`], [`Envelope::from_json`]).
//!
//! # Evolving schemas
//!
//! `schemas/schema.lock.json` snapshots every message and event. The test
//! suite compares the current schemas with it using [`evolution::check`] and
//! fails on breaking changes (removed or renumbered fields, changed types,
//! removed events, changed keys...). See `docs/schema-evolution.md`.
//!
//! # Samples
//!
//! [`sample`] builds one realistic, deterministic instance of every event
//! type, for tests and demos.

pub mod cloudevents;
pub mod context;
pub mod decode;
pub mod envelope;
pub use backbone_core::error;
pub mod event;
pub mod evolution;
pub mod header_value;
pub mod mapping;
pub use backbone_core::headers;
mod options;
pub mod registry;
pub mod sample;
pub mod subject;
pub mod wire;

include!(concat!(env!("OUT_DIR"), "/modules.rs"));

pub use context::EventContext;
pub use decode::{DecodeError, DecodeErrorKind};
pub use envelope::{EncodeError, EncodeErrorKind, Envelope};
pub use error::Error;
pub use event::Event;
pub use headers::Headers;
pub use registry::{EventType, FILE_DESCRIPTOR_SET, Registry, RegistryError, RegistryErrorKind};
pub use subject::{
    EVENT_SUBJECT_PREFIX, SubjectError, SubjectErrorKind, event_subject, parse_event_subject,
    validate_key,
};

//! The [`Event`] trait, implemented at build time for every event message.

use crate::subject::{self, SubjectError};

/// A protobuf message that is a Backbone event.
///
/// Never implemented by hand: `build.rs` reads the `(backbone.event)` and
/// `(backbone.key)` options of every message in `proto/` and generates one
/// implementation per event message, so the constants below always match the
/// `.proto` source.
///
/// ```
/// use backbone_schemas::{Event, user::v1::UserFollowed};
///
/// let follow = UserFollowed {
///     follower_id: "u-42".into(),
///     followee_id: "u-7".into(),
///     followed_at: None,
/// };
/// assert_eq!(UserFollowed::TYPE, "user.followed");
/// assert_eq!(UserFollowed::FULL_NAME, "backbone.user.v1.UserFollowed");
/// assert_eq!(UserFollowed::KEY_FIELD, "follower_id");
/// assert_eq!(follow.key(), "u-42");
/// assert_eq!(follow.subject().unwrap(), "events.user.followed.u-42");
/// ```
pub trait Event: prost::Message + Default + Clone + Send + Sync + 'static {
    /// The event type name, `<domain>.<name>`, e.g. `"user.followed"`.
    const TYPE: &'static str;
    /// The protobuf full name, e.g. `"backbone.user.v1.UserFollowed"`.
    const FULL_NAME: &'static str;
    /// The proto name of the key field, e.g. `"follower_id"`.
    const KEY_FIELD: &'static str;

    /// The value of the key field: the last token of the event's subject.
    fn key(&self) -> &str;

    /// The NATS subject `events.<type>.<key>` of this event.
    ///
    /// Fails when the key is not a valid subject token (see
    /// [`validate_key`](crate::subject::validate_key)).
    fn subject(&self) -> Result<String, SubjectError> {
        subject::event_subject(Self::TYPE, self.key())
    }
}

include!(concat!(env!("OUT_DIR"), "/events.rs"));

//! `follow-notifier`: tells a user that someone followed them.
//!
//! On `user.followed` it "sends" a notification by appending it to its
//! [`Outbox`] (`<data_dir>/follow-notifier.outbox.jsonl`), which a delivery
//! worker tails and hands to the push/e-mail provider with the event id as
//! idempotency key. Run by a [`ReactorRunner`](crate::ReactorRunner), it fires
//! at most once per event id: the runner skips ids it recorded as fired, the
//! outbox ignores a key it already holds (the crash window between the two),
//! and in [`RunMode::Rebuild`](crate::RunMode) nothing fires. A self-follow
//! (invalid; the `notifications` read model dead-letters it) notifies nobody.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use backbone_schemas::{Envelope, Event, user::v1::UserFollowed};
use time::format_description::well_known::Rfc3339;

use super::outbox::{Notification, OUTBOX_FORMAT_VERSION, Outbox};
use crate::{
    error::{HandlerError, StoreError},
    model::typed,
    reactor::Reactor,
};

/// The follow notifier's name (its store directory and durable name).
pub const FOLLOW_NOTIFIER: &str = "follow-notifier";

/// The reactor.
#[derive(Debug)]
pub struct FollowNotifier {
    outbox: Outbox,
}

impl FollowNotifier {
    /// The outbox file of a notifier whose data directory is `data_dir`.
    pub fn outbox_path(data_dir: &Path) -> PathBuf {
        data_dir.join(format!("{FOLLOW_NOTIFIER}.outbox.jsonl"))
    }

    /// A notifier appending to its outbox under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::with_source(crate::StoreErrorKind::Io, e))?;
        Ok(Self {
            outbox: Outbox::open(Self::outbox_path(data_dir))?,
        })
    }

    /// The outbox it appends to.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}

#[async_trait]
impl Reactor for FollowNotifier {
    fn name(&self) -> &'static str {
        FOLLOW_NOTIFIER
    }

    fn event_types(&self) -> &'static [&'static str] {
        &[UserFollowed::TYPE]
    }

    async fn react(&self, event: &Envelope) -> Result<(), HandlerError> {
        let followed: UserFollowed = typed(event)?;
        if followed.follower_id == followed.followee_id {
            tracing::debug!(user = %followed.follower_id, "self-follow; nobody to notify");
            return Ok(());
        }
        let notification = Notification {
            v: OUTBOX_FORMAT_VERSION,
            idempotency_key: event.id.to_string(),
            text: format!("{} followed you", followed.follower_id),
            recipient: followed.followee_id,
            actor: followed.follower_id,
            event_time: event.time.format(&Rfc3339).unwrap_or_default(),
        };
        if !self.outbox.append(&notification)? {
            tracing::info!(event_id = %event.id, "notification already in the outbox");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::testing::{follow, payment};

    #[tokio::test]
    async fn appends_one_notification_per_follow_event() {
        let dir = tempfile::tempdir().unwrap();
        let notifier = FollowNotifier::open(dir.path()).unwrap();
        let event = follow("u-1", "u-2");
        notifier.react(&event).await.unwrap();
        notifier.react(&event).await.unwrap();
        notifier.react(&follow("u-3", "u-3")).await.unwrap();
        let sent = Outbox::read_all(FollowNotifier::outbox_path(dir.path())).unwrap();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].idempotency_key, event.id.to_string());
        assert_eq!(
            (sent[0].recipient.as_str(), sent[0].text.as_str()),
            ("u-2", "u-1 followed you")
        );
        let err = notifier
            .react(&payment("u-1", "p-1", 5, "USD"))
            .await
            .unwrap_err();
        assert!(matches!(err, HandlerError::Permanent(_)));
    }
}

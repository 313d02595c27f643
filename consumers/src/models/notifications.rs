//! Notifications: the follow graph and a per-user notification feed.
//!
//! Keys: `following/<follower>/<followee>`, `followers/<followee>/<follower>`
//! (values: the follow's stream sequence), `count/<following|followers>/<user>`
//! and `feed/<user>/<seq:be64>` → [`FeedItem`].

use backbone_schemas::{
    Envelope, Event,
    user::v1::{UserFollowed, UserUnfollowed},
};
use serde::{Deserialize, Serialize};

use crate::{
    error::{HandlerError, StoreError},
    model::{ReadModel, overflow, typed},
    store::ProjectionStore,
    transaction::{Transaction, key, prefix},
};

/// The notifications read model.
#[derive(Debug, Default, Clone, Copy)]
pub struct Notifications;

/// One entry of a user's notification feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedItem {
    /// The stream sequence of the event behind it.
    pub seq: u64,
    /// The user who acted.
    pub actor: String,
    /// The rendered text, e.g. `u-2 followed you`.
    pub text: String,
}

fn count_key(which: &str, user: &str) -> Vec<u8> {
    key(&[b"count", which.as_bytes(), user.as_bytes()])
}

fn bump(tx: &mut Transaction<'_>, which: &str, user: &str, delta: i64) -> Result<(), HandlerError> {
    let k = count_key(which, user);
    let current: u64 = tx.get_json(&k)?.unwrap_or(0);
    let next = current
        .checked_add_signed(delta)
        .ok_or_else(|| overflow(&format!("{which} count of {user}"), current, delta))?;
    if next == 0 {
        tx.delete(&k);
    } else {
        tx.put_json(&k, &next);
    }
    Ok(())
}

impl Notifications {
    fn follow(
        &self,
        seq: u64,
        e: UserFollowed,
        tx: &mut Transaction<'_>,
    ) -> Result<(), HandlerError> {
        if e.follower_id == e.followee_id {
            return Err(HandlerError::permanent("a user cannot follow themselves"));
        }
        let (a, b) = (e.follower_id.as_bytes(), e.followee_id.as_bytes());
        if tx.get(&key(&[b"following", a, b]))?.is_some() {
            return Ok(());
        }
        tx.put_json(&key(&[b"following", a, b]), &seq);
        tx.put_json(&key(&[b"followers", b, a]), &seq);
        bump(tx, "following", &e.follower_id, 1)?;
        bump(tx, "followers", &e.followee_id, 1)?;
        let item = FeedItem {
            seq,
            actor: e.follower_id.clone(),
            text: format!("{} followed you", e.follower_id),
        };
        tx.put_json(&key(&[b"feed", b, &seq.to_be_bytes()]), &item);
        Ok(())
    }

    fn unfollow(&self, e: UserUnfollowed, tx: &mut Transaction<'_>) -> Result<(), HandlerError> {
        let (a, b) = (e.follower_id.as_bytes(), e.followee_id.as_bytes());
        if tx.get(&key(&[b"following", a, b]))?.is_none() {
            return Ok(());
        }
        tx.delete(&key(&[b"following", a, b]));
        tx.delete(&key(&[b"followers", b, a]));
        bump(tx, "following", &e.follower_id, -1)?;
        bump(tx, "followers", &e.followee_id, -1)?;
        Ok(())
    }

    fn ids(store: &ProjectionStore, which: &[u8], user: &str) -> Result<Vec<String>, StoreError> {
        let p = prefix(&[which, user.as_bytes()]);
        store
            .scan_prefix(&p)
            .map(|e| e.map(|(k, _)| String::from_utf8_lossy(&k[p.len()..]).into_owned()))
            .collect()
    }

    /// The users following `user`, sorted.
    pub fn followers(store: &ProjectionStore, user: &str) -> Result<Vec<String>, StoreError> {
        Self::ids(store, b"followers", user)
    }

    /// The users `user` follows, sorted.
    pub fn following(store: &ProjectionStore, user: &str) -> Result<Vec<String>, StoreError> {
        Self::ids(store, b"following", user)
    }

    /// How many users follow `user`.
    pub fn follower_count(store: &ProjectionStore, user: &str) -> Result<u64, StoreError> {
        Ok(store.get_json(&count_key("followers", user))?.unwrap_or(0))
    }

    /// How many users `user` follows.
    pub fn following_count(store: &ProjectionStore, user: &str) -> Result<u64, StoreError> {
        Ok(store.get_json(&count_key("following", user))?.unwrap_or(0))
    }

    /// The newest `limit` feed items of `user`, newest first.
    pub fn feed(
        store: &ProjectionStore,
        user: &str,
        limit: usize,
    ) -> Result<Vec<FeedItem>, StoreError> {
        let p = prefix(&[b"feed", user.as_bytes()]);
        let mut items = store
            .scan_prefix(&p)
            .map(|e| e.and_then(|(_, v)| crate::store::decode_json(&v)))
            .collect::<Result<Vec<FeedItem>, _>>()?;
        items.reverse();
        items.truncate(limit);
        Ok(items)
    }
}

impl ReadModel for Notifications {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn event_types(&self) -> &'static [&'static str] {
        &[UserFollowed::TYPE, UserUnfollowed::TYPE]
    }

    fn apply(
        &self,
        seq: u64,
        event: &Envelope,
        tx: &mut Transaction<'_>,
    ) -> Result<(), HandlerError> {
        match event.event_type.as_str() {
            UserFollowed::TYPE => self.follow(seq, typed(event)?, tx),
            UserUnfollowed::TYPE => self.unfollow(typed(event)?, tx),
            other => Err(HandlerError::permanent(format!(
                "notifications cannot apply {other}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::testing::{apply_all, follow, unfollow};

    #[test]
    fn follows_build_graph_counts_and_feed() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProjectionStore::open(dir.path()).unwrap();
        apply_all(
            &Notifications,
            &store,
            vec![
                follow("u-2", "u-1"),
                follow("u-3", "u-1"),
                follow("u-2", "u-1"),
                unfollow("u-3", "u-1"),
                unfollow("u-9", "u-1"),
            ],
        );
        assert_eq!(
            Notifications::followers(&store, "u-1").unwrap(),
            vec!["u-2"]
        );
        assert_eq!(
            Notifications::following(&store, "u-2").unwrap(),
            vec!["u-1"]
        );
        assert_eq!(Notifications::follower_count(&store, "u-1").unwrap(), 1);
        assert_eq!(Notifications::following_count(&store, "u-3").unwrap(), 0);
        let feed = Notifications::feed(&store, "u-1", 10).unwrap();
        let texts: Vec<_> = feed.iter().map(|i| i.text.as_str()).collect();
        assert_eq!(texts, vec!["u-3 followed you", "u-2 followed you"]);
    }

    #[test]
    fn self_follow_is_permanent() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProjectionStore::open(dir.path()).unwrap();
        let mut tx = store.transaction();
        let err = Notifications
            .apply(1, &follow("u-1", "u-1"), &mut tx)
            .unwrap_err();
        assert!(matches!(err, HandlerError::Permanent(_)));
    }
}

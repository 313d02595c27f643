//! Inbox: conversations per user with their last message and unread count.
//!
//! Keys: `conversation/<conversation_id>` → [`Conversation`],
//! `user/<user>/<conversation_id>` → the conversation's last stream sequence,
//! `seen/<channel>/<provider_message_id>` → seq (drops provider-side
//! redeliveries of the same message under a new event id). A sender not yet
//! known as a user is filed under `address:<sender address>`. There is no
//! read-receipt event yet, so every received message counts as unread.

use backbone_schemas::{Envelope, Event, messaging::v1::MessageReceived};
use serde::{Deserialize, Serialize};

use crate::{
    error::{HandlerError, StoreError},
    model::{ReadModel, overflow, typed},
    store::ProjectionStore,
    transaction::{Transaction, key, prefix},
};

/// The inbox read model.
#[derive(Debug, Default, Clone, Copy)]
pub struct Inbox;

/// A conversation's summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// The conversation id.
    pub conversation_id: String,
    /// The user it belongs to (or `address:<sender address>`).
    pub user: String,
    /// The last message's text.
    pub last_text: String,
    /// The last message's provider id.
    pub last_provider_message_id: String,
    /// The last message's stream sequence.
    pub last_seq: u64,
    /// Messages received.
    pub messages: u64,
    /// Messages not read yet.
    pub unread: u64,
}

fn owner(e: &MessageReceived) -> String {
    if e.sender_user_id.is_empty() {
        format!("address:{}", e.sender_address)
    } else {
        e.sender_user_id.clone()
    }
}

impl Inbox {
    fn received(
        seq: u64,
        e: MessageReceived,
        tx: &mut Transaction<'_>,
    ) -> Result<(), HandlerError> {
        if e.sender_user_id.is_empty() && e.sender_address.is_empty() {
            return Err(HandlerError::permanent("message.received without sender"));
        }
        if !e.provider_message_id.is_empty() {
            let seen = key(&[
                b"seen",
                e.channel.to_string().as_bytes(),
                e.provider_message_id.as_bytes(),
            ]);
            if tx.get(&seen)?.is_some() {
                return Ok(());
            }
            tx.put_json(&seen, &seq);
        }
        let user = owner(&e);
        let k = key(&[b"conversation", e.conversation_id.as_bytes()]);
        let mut conversation = tx.get_json::<Conversation>(&k)?.unwrap_or(Conversation {
            conversation_id: e.conversation_id.clone(),
            user: user.clone(),
            last_text: String::new(),
            last_provider_message_id: String::new(),
            last_seq: 0,
            messages: 0,
            unread: 0,
        });
        conversation.last_text = e.text;
        conversation.last_provider_message_id = e.provider_message_id;
        conversation.last_seq = seq;
        conversation.messages = conversation.messages.checked_add(1).ok_or_else(|| {
            overflow(
                &format!("message count of {}", e.conversation_id),
                conversation.messages,
                1,
            )
        })?;
        conversation.unread = conversation.unread.checked_add(1).ok_or_else(|| {
            overflow(
                &format!("unread count of {}", e.conversation_id),
                conversation.unread,
                1,
            )
        })?;
        tx.put_json(
            &key(&[
                b"user",
                conversation.user.as_bytes(),
                e.conversation_id.as_bytes(),
            ]),
            &seq,
        );
        tx.put_json(&k, &conversation);
        Ok(())
    }

    /// A conversation's summary.
    pub fn conversation(
        store: &ProjectionStore,
        id: &str,
    ) -> Result<Option<Conversation>, StoreError> {
        store.get_json(&key(&[b"conversation", id.as_bytes()]))
    }

    /// `user`'s conversations, the most recently active first.
    pub fn conversations(
        store: &ProjectionStore,
        user: &str,
    ) -> Result<Vec<Conversation>, StoreError> {
        let p = prefix(&[b"user", user.as_bytes()]);
        let mut out = Vec::new();
        for entry in store.scan_prefix(&p) {
            let (k, _) = entry?;
            let id = String::from_utf8_lossy(&k[p.len()..]).into_owned();
            if let Some(c) = Self::conversation(store, &id)? {
                out.push(c);
            }
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.last_seq));
        Ok(out)
    }

    /// `user`'s unread messages over all conversations.
    pub fn unread(store: &ProjectionStore, user: &str) -> Result<u64, StoreError> {
        Ok(Self::conversations(store, user)?
            .iter()
            .map(|c| c.unread)
            .sum())
    }
}

impl ReadModel for Inbox {
    fn name(&self) -> &'static str {
        "inbox"
    }

    fn event_types(&self) -> &'static [&'static str] {
        &[MessageReceived::TYPE]
    }

    fn apply(
        &self,
        seq: u64,
        event: &Envelope,
        tx: &mut Transaction<'_>,
    ) -> Result<(), HandlerError> {
        match event.event_type.as_str() {
            MessageReceived::TYPE => Self::received(seq, typed(event)?, tx),
            other => Err(HandlerError::permanent(format!(
                "inbox cannot apply {other}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::testing::{apply_all, message};

    #[test]
    fn conversations_last_message_and_unread() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProjectionStore::open(dir.path()).unwrap();
        apply_all(
            &Inbox,
            &store,
            vec![
                message("c-1", "u-1", "w-1", "hi"),
                message("c-2", "u-1", "w-2", "yo"),
                message("c-1", "u-1", "w-3", "there"),
                message("c-1", "u-1", "w-3", "there"),
            ],
        );
        let convs = Inbox::conversations(&store, "u-1").unwrap();
        assert_eq!(
            convs
                .iter()
                .map(|c| c.conversation_id.as_str())
                .collect::<Vec<_>>(),
            vec!["c-1", "c-2"]
        );
        assert_eq!(convs[0].last_text, "there");
        assert_eq!(convs[0].messages, 2);
        assert_eq!(Inbox::unread(&store, "u-1").unwrap(), 3);
    }
}

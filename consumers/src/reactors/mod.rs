//! The seed services' reactors and the registry of them by name.
//!
//! A reactor keeps its fired-event ids (and checkpoint) in the store
//! `<data_dir>/<name>` like a read model, and its own output next to it.

pub mod follow_notifier;
pub mod outbox;

use std::{fmt, path::Path, sync::Arc};

pub use follow_notifier::{FOLLOW_NOTIFIER, FollowNotifier};
pub use outbox::{Notification, Outbox};

use crate::{error::StoreError, reactor::Reactor};

/// The names of every reactor, in registry order.
pub const REACTOR_NAMES: [&str; 1] = [FOLLOW_NOTIFIER];

/// A reactor name that is not in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownReactor(pub String);

impl fmt::Display for UnknownReactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown reactor {:?}; known: {}",
            self.0,
            REACTOR_NAMES.join(", ")
        )
    }
}

impl std::error::Error for UnknownReactor {}

/// Checks that every name in `names` is a known reactor.
pub fn validate(names: &[String]) -> Result<(), UnknownReactor> {
    match names.iter().find(|n| !REACTOR_NAMES.contains(&n.as_str())) {
        Some(unknown) => Err(UnknownReactor(unknown.clone())),
        None => Ok(()),
    }
}

/// Opens the reactor `name` with its output under `data_dir`; `None` when
/// the name is unknown.
pub fn open(name: &str, data_dir: &Path) -> Option<Result<Arc<dyn Reactor>, StoreError>> {
    match name {
        FOLLOW_NOTIFIER => {
            Some(FollowNotifier::open(data_dir).map(|r| Arc::new(r) as Arc<dyn Reactor>))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_knows_the_follow_notifier() {
        let dir = tempfile::tempdir().unwrap();
        for name in REACTOR_NAMES {
            assert_eq!(open(name, dir.path()).unwrap().unwrap().name(), name);
        }
        assert!(open("nope", dir.path()).is_none());
        assert_eq!(
            validate(&["follow-notifier".into(), "nope".into()]).unwrap_err(),
            UnknownReactor("nope".into())
        );
    }
}

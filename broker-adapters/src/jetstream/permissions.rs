//! Publish permission violations, which NATS reports on the connection rather
//! than to the publisher.
//!
//! A publish to a subject the user may not publish to is dropped by the
//! server, which sends `-ERR 'Permissions Violation for Publish to "<subject>"'`
//! on the connection. async-nats surfaces it only through the event callback
//! and the publish's acknowledgement never comes. The callback records the
//! subject here and wakes publishers waiting on it, so they fail with
//! `PermissionDenied` at once instead of after the publish timeout.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use tokio::sync::Notify;

const PREFIX: &str = "Permissions Violation for Publish to";
/// Violations older than this are forgotten; only publishes in flight care.
const MEMORY: Duration = Duration::from_secs(60);

/// Subjects recently refused to this connection.
#[derive(Debug, Default)]
pub(crate) struct PermissionViolations {
    seen: Mutex<HashMap<String, Instant>>,
    notify: Notify,
}

impl PermissionViolations {
    /// Records the subject named by a server error text, if it is a publish
    /// permission violation.
    pub(crate) fn observe(&self, server_error: &str) {
        let Some(subject) = violated_subject(server_error) else {
            return;
        };
        let now = Instant::now();
        if let Ok(mut seen) = self.seen.lock() {
            seen.retain(|_, at| now.duration_since(*at) < MEMORY);
            seen.insert(subject, now);
        }
        self.notify.notify_waiters();
    }

    /// Resolves once a violation for `subject` is recorded at or after `since`.
    pub(crate) async fn refused(&self, subject: &str, since: Instant) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.was_refused(subject, since) {
                return;
            }
            notified.await;
        }
    }

    fn was_refused(&self, subject: &str, since: Instant) -> bool {
        self.seen
            .lock()
            .map(|seen| seen.get(subject).is_some_and(|at| *at >= since))
            .unwrap_or(false)
    }
}

fn violated_subject(text: &str) -> Option<String> {
    let start = text.find(PREFIX)? + PREFIX.len();
    let rest = text[start..].trim().trim_matches('\'');
    let subject = rest.trim_matches('"');
    let subject = subject.split('"').next().unwrap_or(subject).trim();
    (!subject.is_empty()).then(|| subject.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_the_refused_subject() {
        assert_eq!(
            violated_subject("Permissions Violation for Publish to \"events.user.x\"").as_deref(),
            Some("events.user.x")
        );
        assert_eq!(
            violated_subject("'Permissions Violation for Publish to \"a.b\"'").as_deref(),
            Some("a.b")
        );
        assert_eq!(violated_subject("Authorization Violation"), None);
    }

    #[tokio::test]
    async fn waiters_wake_on_a_matching_violation() {
        let violations = std::sync::Arc::new(PermissionViolations::default());
        let since = Instant::now();
        let waiter = {
            let v = violations.clone();
            tokio::spawn(async move { v.refused("a.b", since).await })
        };
        tokio::task::yield_now().await;
        violations.observe("Permissions Violation for Publish to \"a.b\"");
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("joined");
    }
}

//! Cooperative shutdown: a run stops fetching when asked, finishes and
//! commits the batch in hand, then returns.

use tokio::sync::watch;

/// Asks runs to stop; clone-free, held by whoever wires the signals.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Tells a run whether it should stop; cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A connected trigger and listener.
pub fn shutdown_channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Asks every listener to stop.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    /// Another listener.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// A listener that is never triggered.
    pub fn never() -> Self {
        let (_trigger, rx) = watch::channel(false);
        Self(rx)
    }

    /// True once stop was asked.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until stop is asked (forever when the trigger was dropped
    /// without triggering).
    pub async fn wait(&mut self) {
        if self.0.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

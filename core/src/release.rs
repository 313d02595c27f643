//! Waiting out a file lock that is still being released.
//!
//! sled 0.34 releases a database's file lock on a thread of its own after
//! the last handle drops, so a store closed a moment ago (in this process,
//! or by a process that just handed it over) can still look held. The opens
//! of the embedded log and of read-model stores retry for [`RELEASE_WAIT`]
//! before reporting `Locked`: a store that is held for real is still
//! reported, a second later.

use std::time::{Duration, Instant};

/// How long an open waits for a lock that may be on its way out.
pub const RELEASE_WAIT: Duration = Duration::from_secs(1);

/// Calls `open` until it succeeds, fails otherwise than `is_locked`, or
/// [`RELEASE_WAIT`] has passed.
pub fn retry_while_locked<T, E>(
    mut open: impl FnMut() -> Result<T, E>,
    is_locked: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let deadline = Instant::now() + RELEASE_WAIT;
    loop {
        match open() {
            Err(e) if is_locked(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_only_a_lock_and_only_for_a_while() {
        let mut calls = 0;
        let opened = retry_while_locked(
            || {
                calls += 1;
                if calls < 3 { Err("locked") } else { Ok(calls) }
            },
            |e| *e == "locked",
        );
        assert_eq!(opened, Ok(3));
        let mut calls = 0;
        let failed: Result<(), _> = retry_while_locked(
            || {
                calls += 1;
                Err("broken")
            },
            |e| *e == "locked",
        );
        assert_eq!((failed, calls), (Err("broken"), 1));
        let started = Instant::now();
        let held: Result<(), _> = retry_while_locked(|| Err("locked"), |e| *e == "locked");
        assert_eq!(held, Err("locked"));
        assert!(started.elapsed() >= RELEASE_WAIT);
    }
}

//! Crash-safe swap of a rebuilt (shadow) store into place, and recovery of
//! an interrupted swap.
//!
//! A swap is two renames (`<model>` → `<model>.old`, `<model>.rebuild` →
//! `<model>`); a crash between them would leave no live store at all, and a
//! service starting then would create an empty one. So the swap first
//! writes a journal, `<model>.swap`, and every open of the store
//! ([`ProjectionStore::open`](crate::ProjectionStore::open)) and every
//! rebuild first calls [`recover`]:
//!
//! - journal present: the shadow was complete and the decision to swap was
//!   made, so the swap is **rolled forward** (the renames that are missing
//!   are done, then the journal and `<model>.old` are removed);
//! - no journal, `<model>.old` present and `<model>` missing (a swap
//!   interrupted by a version without journal): **rolled back**
//!   (`<model>.old` → `<model>`; the shadow stays, a rebuild re-run swaps it);
//! - no journal, both present: `<model>.old` is a leftover and is removed.
//!
//! # Journal format (version 1)
//! `BBSWAP`, one version byte (`1`), then the shadow directory's file name
//! (UTF-8). It is written to `<model>.swap.tmp`, flushed, renamed into place
//! and the directory flushed, so it is either absent or complete.
//!
//! Recovery must not run while another process is in the middle of a swap
//! of the same model: run rebuilds with the service stopped (a held store
//! makes a rebuild fail with `Locked`).

use std::{
    ffi::OsString,
    fs::{self, File},
    io::{self, Write as _},
    path::{Path, PathBuf},
};

use crate::error::{StoreError, StoreErrorKind};

const MAGIC: &[u8] = b"BBSWAP";
/// The journal format version this crate writes and reads.
pub const SWAP_JOURNAL_VERSION: u8 = 1;

/// What [`recover`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// There was nothing to recover.
    Nothing,
    /// An interrupted swap was completed: the rebuilt store is live.
    RolledForward,
    /// A swap interrupted without journal was undone: the old store is live.
    RolledBack,
    /// A leftover `<model>.old` was removed.
    CleanedUp,
}

/// The steps of a swap, in order; tests stop after any of them to simulate
/// a crash there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Step {
    WriteJournal,
    RemoveStaleOld,
    MoveLiveAside,
    MoveShadowIn,
    RemoveJournal,
    RemoveOld,
}

pub(crate) const STEPS: [Step; 6] = [
    Step::WriteJournal,
    Step::RemoveStaleOld,
    Step::MoveLiveAside,
    Step::MoveShadowIn,
    Step::RemoveJournal,
    Step::RemoveOld,
];

fn sibling(live: &Path, suffix: &str) -> PathBuf {
    let mut name: OsString = live.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The journal file of the store at `live`.
pub fn journal_path(live: &Path) -> PathBuf {
    sibling(live, ".swap")
}

fn old_path(live: &Path) -> PathBuf {
    sibling(live, ".old")
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

fn remove_dir_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn write_journal(live: &Path, shadow: &Path) -> io::Result<()> {
    let name = shadow.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "shadow path has no file name")
    })?;
    let tmp = sibling(live, ".swap.tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(MAGIC)?;
    file.write_all(&[SWAP_JOURNAL_VERSION])?;
    file.write_all(name.as_encoded_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, journal_path(live))?;
    sync_parent(live)
}

fn read_journal(live: &Path) -> Result<PathBuf, StoreError> {
    let bytes =
        fs::read(journal_path(live)).map_err(|e| StoreError::with_source(StoreErrorKind::Io, e))?;
    let corrupted = || StoreError::with_detail(StoreErrorKind::Corrupted, "rebuild swap journal");
    let rest = bytes.strip_prefix(MAGIC).ok_or_else(corrupted)?;
    let (&version, name) = rest.split_first().ok_or_else(corrupted)?;
    if version != SWAP_JOURNAL_VERSION {
        return Err(StoreError::new(StoreErrorKind::UnsupportedFormat {
            found: version,
        }));
    }
    let name = std::str::from_utf8(name).map_err(|_| corrupted())?;
    if name.is_empty() || name.contains('/') {
        return Err(corrupted());
    }
    Ok(live.with_file_name(name))
}

/// Swaps the complete store at `shadow` into place at `live`, crash-safely.
pub(crate) fn swap_into_place(shadow: &Path, live: &Path) -> io::Result<()> {
    swap_until(shadow, live, None)
}

/// The swap, stopping right after `stop_after` (a simulated crash).
pub(crate) fn swap_until(shadow: &Path, live: &Path, stop_after: Option<Step>) -> io::Result<()> {
    let old = old_path(live);
    for step in STEPS {
        match step {
            Step::WriteJournal => write_journal(live, shadow)?,
            Step::RemoveStaleOld => remove_dir_if_present(&old)?,
            Step::MoveLiveAside => {
                if live.exists() {
                    fs::rename(live, &old)?;
                }
            }
            Step::MoveShadowIn => {
                fs::rename(shadow, live)?;
                sync_parent(live)?;
            }
            Step::RemoveJournal => {
                fs::remove_file(journal_path(live))?;
                sync_parent(live)?;
            }
            Step::RemoveOld => remove_dir_if_present(&old)?,
        }
        if stop_after == Some(step) {
            break;
        }
    }
    Ok(())
}

/// Completes or undoes a swap of the store at `live` that was interrupted
/// (see the module docs). Cheap when there is nothing to do.
pub fn recover(live: &Path) -> Result<Recovery, StoreError> {
    let io_err = |e| StoreError::with_source(StoreErrorKind::Io, e);
    let old = old_path(live);
    let journal = journal_path(live);
    if journal.exists() {
        let shadow = read_journal(live)?;
        if shadow.exists() {
            if live.exists() {
                remove_dir_if_present(&old).map_err(io_err)?;
                fs::rename(live, &old).map_err(io_err)?;
            }
            fs::rename(&shadow, live).map_err(io_err)?;
            sync_parent(live).map_err(io_err)?;
        }
        fs::remove_file(&journal).map_err(io_err)?;
        sync_parent(live).map_err(io_err)?;
        remove_dir_if_present(&old).map_err(io_err)?;
        tracing::warn!(store = %live.display(), "completed an interrupted rebuild swap");
        return Ok(Recovery::RolledForward);
    }
    if !old.exists() {
        return Ok(Recovery::Nothing);
    }
    if live.exists() {
        remove_dir_if_present(&old).map_err(io_err)?;
        return Ok(Recovery::CleanedUp);
    }
    fs::rename(&old, live).map_err(io_err)?;
    sync_parent(live).map_err(io_err)?;
    tracing::warn!(store = %live.display(), "rolled back an interrupted rebuild swap");
    Ok(Recovery::RolledBack)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ProjectionStore;

    /// A data dir with a live store at checkpoint 1, a complete shadow at
    /// checkpoint 2 and a stale `.old` left by an earlier swap.
    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let (live, shadow) = (
            dir.path().join("billing"),
            dir.path().join("billing.rebuild"),
        );
        for (path, checkpoint) in [(&live, 1), (&shadow, 2), (&old_path(&live), 9)] {
            let store = ProjectionStore::open(path).unwrap();
            let mut tx = store.transaction();
            tx.put(b"from", checkpoint.to_string().into_bytes());
            store.commit(tx, checkpoint).unwrap();
        }
        (dir, live, shadow)
    }

    fn leftovers(live: &Path, shadow: &Path) -> Vec<PathBuf> {
        [shadow.to_path_buf(), old_path(live), journal_path(live)]
            .into_iter()
            .filter(|p| p.exists())
            .collect()
    }

    #[test]
    fn a_swap_interrupted_after_any_step_is_completed_on_open() {
        for step in STEPS {
            let (_dir, live, shadow) = setup();
            swap_until(&shadow, &live, Some(step)).unwrap();
            let store = ProjectionStore::open(&live).unwrap();
            assert_eq!(store.checkpoint().unwrap(), 2, "crash after {step:?}");
            assert_eq!(store.get(b"from").unwrap(), Some(b"2".to_vec()));
            drop(store);
            assert!(leftovers(&live, &shadow).is_empty(), "after {step:?}");
            assert_eq!(recover(&live).unwrap(), Recovery::Nothing);
        }
    }

    #[test]
    fn recovery_reports_what_it_did() {
        let (_dir, live, shadow) = setup();
        swap_until(&shadow, &live, Some(Step::MoveLiveAside)).unwrap();
        assert!(
            !live.exists(),
            "the window a crash would leave without journal"
        );
        assert_eq!(recover(&live).unwrap(), Recovery::RolledForward);
        let (_dir, live, shadow) = setup();
        swap_into_place(&shadow, &live).unwrap();
        assert_eq!(recover(&live).unwrap(), Recovery::Nothing);
        assert!(leftovers(&live, &shadow).is_empty());
        let (_dir, live, _shadow) = setup();
        assert_eq!(recover(&live).unwrap(), Recovery::CleanedUp);
    }

    #[test]
    fn a_swap_interrupted_without_journal_is_rolled_back() {
        let (_dir, live, shadow) = setup();
        remove_dir_if_present(&old_path(&live)).unwrap();
        fs::rename(&live, old_path(&live)).unwrap();
        let store = ProjectionStore::open(&live).unwrap();
        assert_eq!(store.checkpoint().unwrap(), 1);
        assert!(shadow.exists(), "the shadow stays for a re-run");
        assert!(!old_path(&live).exists());
    }

    #[test]
    fn a_damaged_or_foreign_journal_is_refused() {
        let (_dir, live, _shadow) = setup();
        fs::write(journal_path(&live), b"garbage").unwrap();
        let err = ProjectionStore::open(&live).unwrap_err();
        assert_eq!(err.kind(), &StoreErrorKind::Corrupted);
        fs::write(journal_path(&live), b"BBSWAP\x09billing.rebuild").unwrap();
        let err = recover(&live).unwrap_err();
        assert_eq!(err.kind(), &StoreErrorKind::UnsupportedFormat { found: 9 });
        assert!(live.exists(), "nothing was touched");
    }
}

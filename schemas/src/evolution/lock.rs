//! The lock file `schemas/schema.lock.json`: reading, verifying, updating.
//!
//! These are the functions behind the crate's `schema_lock_is_current` test
//! and a CLI's `schemas check` / `schemas lock` commands.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{BreakingChange, SchemaSnapshot, check};
use crate::error::Error;

/// The lock file's name, next to the crate's `Cargo.toml`.
pub const LOCK_FILE: &str = "schema.lock.json";

/// The environment variable that lets the test suite rewrite the lock:
/// `1` accepts compatible changes, `breaking` also accepts breaking ones.
pub const UPDATE_ENV: &str = "BACKBONE_UPDATE_SCHEMA_LOCK";

/// An error reading or writing the lock file.
pub type LockError = Error<LockErrorKind>;

/// What went wrong with the lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockErrorKind {
    /// The lock file does not exist.
    Missing,
    /// It could not be read or written.
    Io,
    /// It is not a snapshot.
    Malformed,
    /// The update was refused: these breaking changes were not allowed.
    Breaking(Vec<BreakingChange>),
}

impl fmt::Display for LockErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("schema lock file is missing"),
            Self::Io => f.write_str("schema lock file I/O failed"),
            Self::Malformed => f.write_str("schema lock file is malformed"),
            Self::Breaking(changes) => {
                write!(f, "{} breaking schema change(s):", changes.len())?;
                for change in changes {
                    write!(f, "\n  - {change}")?;
                }
                Ok(())
            }
        }
    }
}

/// How the current schemas relate to the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockStatus {
    /// The lock equals the current schemas.
    UpToDate,
    /// The current schemas only add to the lock; the lock should be updated.
    Compatible,
    /// The current schemas break the lock.
    Breaking(Vec<BreakingChange>),
}

/// `schemas/schema.lock.json` of this crate's source tree.
pub fn default_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(LOCK_FILE)
}

/// Reads a lock file.
pub fn read(path: &Path) -> Result<SchemaSnapshot, LockError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::NotFound {
            LockErrorKind::Missing
        } else {
            LockErrorKind::Io
        };
        LockError::with_source(kind, e).detail(path.display().to_string())
    })?;
    SchemaSnapshot::from_json(&text).map_err(|e| {
        LockError::with_source(LockErrorKind::Malformed, e).detail(path.display().to_string())
    })
}

/// Writes `snapshot` as a lock file.
pub fn write(path: &Path, snapshot: &SchemaSnapshot) -> Result<(), LockError> {
    std::fs::write(path, snapshot.to_json()).map_err(|e| {
        LockError::with_source(LockErrorKind::Io, e).detail(path.display().to_string())
    })
}

/// Compares `current` with a locked snapshot.
pub fn status(locked: &SchemaSnapshot, current: &SchemaSnapshot) -> LockStatus {
    let breaking = check(locked, current);
    if !breaking.is_empty() {
        LockStatus::Breaking(breaking)
    } else if locked == current {
        LockStatus::UpToDate
    } else {
        LockStatus::Compatible
    }
}

/// Reads the lock at `path` and compares `current` with it.
pub fn verify(path: &Path, current: &SchemaSnapshot) -> Result<LockStatus, LockError> {
    Ok(status(&read(path)?, current))
}

/// Writes `current` to the lock at `path` (creating it when missing).
///
/// Refuses with [`LockErrorKind::Breaking`] when `current` breaks the
/// existing lock, unless `allow_breaking`. Returns the breaking changes that
/// were accepted.
pub fn update(
    path: &Path,
    current: &SchemaSnapshot,
    allow_breaking: bool,
) -> Result<Vec<BreakingChange>, LockError> {
    let breaking = match read(path) {
        Ok(locked) => check(&locked, current),
        Err(e) if e.kind() == &LockErrorKind::Missing => Vec::new(),
        Err(e) => return Err(e),
    };
    if !breaking.is_empty() && !allow_breaking {
        return Err(LockError::new(LockErrorKind::Breaking(breaking)));
    }
    write(path, current)?;
    Ok(breaking)
}

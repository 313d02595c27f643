//! The data directory's layout, shared by the consumer service and
//! `replay-tool`, so that one `--data-dir` finds everything:
//!
//! ```text
//! <data-dir>/log                          the embedded event log (embedded backend)
//! <data-dir>/read-models/<name>           a read model's or reactor's store
//! <data-dir>/read-models/<name>.rebuild   a rebuild's shadow copy, while it runs
//! <data-dir>/read-models/follow-notifier.outbox.jsonl
//! ```
//!
//! While the service runs it holds the embedded log and every store it
//! runs; `replay-tool` then reports them as locked (exit code 5).

use std::path::{Path, PathBuf};

/// The embedded log's directory inside the data directory.
pub const LOG_DIR: &str = "log";

/// The directory of read-model and reactor stores inside the data directory.
pub const READ_MODELS_DIR: &str = "read-models";

/// `<data_dir>/log`: where the embedded backend keeps the event log.
pub fn log_path(data_dir: &Path) -> PathBuf {
    data_dir.join(LOG_DIR)
}

/// `<data_dir>/read-models`: the parent of every store
/// ([`crate::rebuild::live_path`] and [`crate::rebuild::shadow_path`] take it).
pub fn read_models_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(READ_MODELS_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rebuild::{live_path, shadow_path};

    #[test]
    fn stores_and_log_sit_side_by_side_under_the_data_dir() {
        let root = Path::new("/var/lib/backbone");
        assert_eq!(log_path(root), Path::new("/var/lib/backbone/log"));
        let models = read_models_dir(root);
        assert_eq!(
            live_path(&models, "billing"),
            Path::new("/var/lib/backbone/read-models/billing")
        );
        assert_eq!(
            shadow_path(&models, "billing"),
            Path::new("/var/lib/backbone/read-models/billing.rebuild")
        );
    }
}

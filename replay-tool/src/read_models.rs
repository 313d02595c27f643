//! Where read models live in the data directory, and reading their state
//! without disturbing a service that holds them.
//!
//! Layout: `<data-dir>/log` is the embedded event log and
//! `<data-dir>/read-models/<name>` each read model's store (with
//! `<name>.rebuild` beside it while a rebuild runs).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backbone_consumers::{
    ProjectionStore, ReadModel,
    models::{READ_MODEL_NAMES, read_model},
};

use crate::error::{CliError, CliResult};

/// The read-model directory of `data_dir` (shared with the consumer
/// service: [`backbone_consumers::layout`]).
pub(crate) fn models_dir(data_dir: &Path) -> PathBuf {
    backbone_consumers::layout::read_models_dir(data_dir)
}

/// The read model called `name`, or a bad-input error listing the names.
pub(crate) fn by_name(name: &str) -> CliResult<Arc<dyn ReadModel>> {
    read_model(name).ok_or_else(|| {
        CliError::BadInput(format!(
            "unknown read model {name:?}; known: {}",
            READ_MODEL_NAMES.join(", ")
        ))
    })
}

/// Opens a live store, mapping "held by a service" to the locked exit code.
pub(crate) fn open_store(path: &Path, what: &str) -> CliResult<ProjectionStore> {
    ProjectionStore::open(path)
        .map_err(|e| CliError::Store(e.context(format!("{what} at {}", path.display()))))
}

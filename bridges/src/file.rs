//! [`BridgesFile`]: the standalone bridge's TOML.
//!
//! ```toml
//! stream = "EVENTS"                     # the stream outbound bridges read
//! [backend]                             # as every binary reads it
//! kind = "jetstream"
//! urls = ["nats://10.0.0.1:4222"]
//!
//! [[bridges]]                           # as in the server's config
//! name = "social-out"
//! direction = "outbound"
//! broker = "rabbitmq"
//! url = "amqp://10.0.0.5:5672/%2f"
//! ```
//!
//! Without `[backend]`, `data_dir` names the embedded log's directory
//! (`<data_dir>/log`); a log held by a running server cannot be opened
//! twice, so beside the server run the bridges in it instead.

use std::path::{Path, PathBuf};

use backbone_broker::{Backend, embedded::EmbeddedOptions, stream::EVENT_STREAM};
use backbone_consumers::layout;
use serde::Deserialize;

use crate::{
    config::{BridgeConfig, problem_of_all},
    error::{BridgeError, BridgeErrorKind},
};

/// The standalone bridge's configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgesFile {
    /// The log; the embedded log in `<data_dir>/log` when absent.
    #[serde(default)]
    pub backend: Option<Backend>,
    /// The embedded log's data directory, when there is no `[backend]`.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// The stream outbound bridges read.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// The bridges, each run concurrently.
    pub bridges: Vec<BridgeConfig>,
}

fn default_stream() -> String {
    EVENT_STREAM.to_owned()
}

impl BridgesFile {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, BridgeError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            BridgeError::with_detail(
                BridgeErrorKind::Config,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        Self::from_toml(&text)
    }

    /// Parses and checks a configuration.
    pub fn from_toml(text: &str) -> Result<Self, BridgeError> {
        let file: Self = toml::from_str(text)
            .map_err(|e| BridgeError::with_detail(BridgeErrorKind::Config, e.to_string()))?;
        let problem = if file.bridges.is_empty() {
            Some("no [[bridges]]".to_owned())
        } else if file.backend.is_none() && file.data_dir.is_none() {
            Some("give [backend] or data_dir".to_owned())
        } else {
            problem_of_all(&file.bridges)
        };
        match problem {
            Some(problem) => Err(BridgeError::with_detail(BridgeErrorKind::Config, problem)),
            None => Ok(file),
        }
    }

    /// The log to open.
    pub fn backend(&self) -> Backend {
        self.backend.clone().unwrap_or_else(|| {
            Backend::Embedded(EmbeddedOptions {
                path: layout::log_path(self.data_dir.as_deref().unwrap_or(Path::new("."))),
                ..Default::default()
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_names_its_log_and_unique_bridges() {
        let bridge = "[[bridges]]\nname = \"a\"\ndirection = \"outbound\"\nbroker = \"redis\"\nurl = \"redis://h\"\n";
        let file = BridgesFile::from_toml(&format!("data_dir = \"/tmp/x\"\n{bridge}")).unwrap();
        assert_eq!(file.stream, EVENT_STREAM);
        let kind = |text: &str| BridgesFile::from_toml(text).unwrap_err().kind().clone();
        assert_eq!(kind(bridge), BridgeErrorKind::Config);
        assert_eq!(
            kind(&format!("data_dir = \"/x\"\n{bridge}{bridge}")),
            BridgeErrorKind::Config
        );
        assert_eq!(
            kind("data_dir = \"/x\"\nbridges = []"),
            BridgeErrorKind::Config
        );
    }
}

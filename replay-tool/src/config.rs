//! Resolving the global options: flags > `BACKBONE_*` env > `--config` file >
//! defaults.
//!
//! clap already resolves flags over environment variables (every global
//! option is an `Option` with no clap default), so the file only fills what
//! both left unset, and the built-in defaults fill the rest.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::{GlobalOptions, OutputFormat};
use crate::error::{CliError, CliResult};

/// The data directory used when no option names one.
pub(crate) const DEFAULT_DATA_DIR: &str = "./backbone-data";

/// The `--config` file. Keys are the long option names with `_` for `-`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    nats_urls: Option<Vec<String>>,
    nats_user: Option<String>,
    nats_password: Option<String>,
    nats_token: Option<String>,
    nats_creds: Option<PathBuf>,
    nats_nkey_seed: Option<String>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    output: Option<OutputFormat>,
}

/// Which broker to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BackendChoice {
    /// The embedded sled log in the data directory.
    Embedded,
    /// NATS JetStream at these servers.
    JetStream(Box<NatsSettings>),
}

/// Connection settings for NATS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NatsSettings {
    /// Server URLs.
    pub(crate) urls: Vec<String>,
    /// User name.
    pub(crate) user: Option<String>,
    /// Password.
    pub(crate) password: Option<String>,
    /// Token.
    pub(crate) token: Option<String>,
    /// Credentials file.
    pub(crate) creds: Option<PathBuf>,
    /// Nkey seed.
    pub(crate) nkey_seed: Option<String>,
    /// CA certificate.
    pub(crate) tls_ca: Option<PathBuf>,
    /// Client certificate.
    pub(crate) tls_cert: Option<PathBuf>,
    /// Client key.
    pub(crate) tls_key: Option<PathBuf>,
}

/// The global options after precedence is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// The broker to use.
    pub(crate) backend: BackendChoice,
    /// Local state: the embedded log (when embedded) and read models.
    pub(crate) data_dir: PathBuf,
    /// True when the data directory was chosen (flag, env or file).
    pub(crate) data_dir_explicit: bool,
    /// The output format.
    pub(crate) output: OutputFormat,
    /// A running server to ask (`--server`).
    pub(crate) server: Option<String>,
    /// Its bearer token (`--token`).
    pub(crate) token: Option<String>,
}

fn read_file(path: &Path) -> CliResult<FileConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::bad_input(format!("cannot read config file {}: {e}", path.display()))
    })?;
    toml::from_str(&text)
        .map_err(|e| CliError::bad_input(format!("config file {}: {e}", path.display())))
}

/// Applies the documented precedence to the parsed global options.
pub(crate) fn resolve(options: &GlobalOptions) -> CliResult<Settings> {
    let file = match &options.config {
        Some(path) => read_file(path)?,
        None => FileConfig::default(),
    };
    let output = options
        .output
        .or(file.output)
        .unwrap_or(OutputFormat::Table);
    let urls = if options.nats_urls.is_empty() {
        file.nats_urls.unwrap_or_default()
    } else {
        options.nats_urls.clone()
    };
    let data_dir = options.data_dir.clone().or(file.data_dir);
    let backend = if urls.is_empty() {
        BackendChoice::Embedded
    } else {
        BackendChoice::JetStream(Box::new(NatsSettings {
            urls,
            user: options.nats_user.clone().or(file.nats_user),
            password: options.nats_password.clone().or(file.nats_password),
            token: options.nats_token.clone().or(file.nats_token),
            creds: options.nats_creds.clone().or(file.nats_creds),
            nkey_seed: options.nats_nkey_seed.clone().or(file.nats_nkey_seed),
            tls_ca: options.tls_ca.clone().or(file.tls_ca),
            tls_cert: options.tls_cert.clone().or(file.tls_cert),
            tls_key: options.tls_key.clone().or(file.tls_key),
        }))
    };
    Ok(Settings {
        backend,
        data_dir_explicit: data_dir.is_some(),
        data_dir: data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        output,
        server: options.server.clone(),
        token: options.token.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "data_dir = \"/from/file\"\noutput = \"json\"\n").unwrap();
        let mut options = GlobalOptions {
            config: Some(path),
            ..Default::default()
        };
        let from_file = resolve(&options).unwrap();
        assert_eq!(from_file.output, OutputFormat::Json);
        assert_eq!(from_file.data_dir, PathBuf::from("/from/file"));
        options.data_dir = Some("/from/flag".into());
        options.output = Some(OutputFormat::Ndjson);
        let from_flag = resolve(&options).unwrap();
        assert_eq!(from_flag.output, OutputFormat::Ndjson);
        assert_eq!(from_flag.data_dir, PathBuf::from("/from/flag"));
        let defaults = resolve(&GlobalOptions::default()).unwrap();
        assert_eq!(defaults.output, OutputFormat::Table);
        assert_eq!(defaults.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn unknown_file_keys_are_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "data_dri = \"x\"\n").unwrap();
        let options = GlobalOptions {
            config: Some(path),
            ..Default::default()
        };
        assert_eq!(resolve(&options).unwrap_err().exit_code(), 3);
    }
}

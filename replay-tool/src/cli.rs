//! The command line: global options shared by every subcommand, and the
//! subcommands themselves.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::commands::{
    audit::AuditArgs, demo::DemoArgs, dlq::DlqArgs, provision::ProvisionArgs, publish::PublishArgs,
    rebuild::RebuildArgs, schemas::SchemasArgs, status::StatusArgs, tail::TailArgs,
};
use crate::error::exit_codes_help;

/// Backbone's operator CLI: run the demo, rebuild read models, tail, publish
/// and audit events, handle dead letters, provision streams.
#[derive(Debug, Parser)]
#[command(name = "replay-tool", version, after_long_help = exit_codes_help())]
pub struct Cli {
    /// Options every subcommand understands.
    #[command(flatten)]
    pub(crate) global: GlobalOptions,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How output is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// One JSON document.
    Json,
    /// One JSON object per line.
    Ndjson,
    /// Comma-separated values with a header row (audit only).
    Csv,
}

/// Options shared by every subcommand. Each may also come from a
/// `BACKBONE_*` environment variable or the `--config` file.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct GlobalOptions {
    /// TOML file with defaults for these options (see docs/replay-tool.md).
    #[arg(long, global = true, env = "BACKBONE_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Directory of the embedded log and read models [default: ./backbone-data].
    #[arg(long, global = true, env = "BACKBONE_DATA_DIR", value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// NATS server URL; repeat for a cluster. Selects the JetStream backend.
    #[arg(
        long = "nats-url",
        global = true,
        env = "BACKBONE_NATS_URL",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub(crate) nats_urls: Vec<String>,
    /// NATS user name (with --nats-password).
    #[arg(long, global = true, env = "BACKBONE_NATS_USER")]
    pub(crate) nats_user: Option<String>,
    /// NATS password.
    #[arg(
        long,
        global = true,
        env = "BACKBONE_NATS_PASSWORD",
        hide_env_values = true
    )]
    pub(crate) nats_password: Option<String>,
    /// NATS token.
    #[arg(
        long,
        global = true,
        env = "BACKBONE_NATS_TOKEN",
        hide_env_values = true
    )]
    pub(crate) nats_token: Option<String>,
    /// NATS credentials file (JWT + nkey seed).
    #[arg(long, global = true, env = "BACKBONE_NATS_CREDS", value_name = "FILE")]
    pub(crate) nats_creds: Option<PathBuf>,
    /// NATS nkey seed (SU...).
    #[arg(
        long,
        global = true,
        env = "BACKBONE_NATS_NKEY_SEED",
        hide_env_values = true
    )]
    pub(crate) nats_nkey_seed: Option<String>,
    /// CA certificate (PEM) to verify the NATS server.
    #[arg(long, global = true, env = "BACKBONE_TLS_CA", value_name = "FILE")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, global = true, env = "BACKBONE_TLS_CERT", value_name = "FILE")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(long, global = true, env = "BACKBONE_TLS_KEY", value_name = "FILE")]
    pub(crate) tls_key: Option<PathBuf>,
    /// A running backbone-server to ask instead of the data directory
    /// (`status`) [default: the one whose <data-dir>/server.json exists].
    #[arg(long, global = true, env = "BACKBONE_SERVER", value_name = "URL")]
    pub(crate) server: Option<String>,
    /// Bearer token for --server (admin scope for status).
    #[arg(long, global = true, env = "BACKBONE_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Output format [default: table].
    #[arg(long, global = true, env = "BACKBONE_OUTPUT", value_enum)]
    pub(crate) output: Option<OutputFormat>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Simulate the seed services, run every read model, rebuild and verify.
    Demo(DemoArgs),
    /// Rebuild a read model from the log into a shadow copy and swap it in.
    Rebuild(RebuildArgs),
    /// Follow the event log, decoded to JSON.
    Tail(TailArgs),
    /// Publish events given as JSON.
    Publish(PublishArgs),
    /// Query the event log by key, type, source, correlation id, time, fields.
    Audit(AuditArgs),
    /// Inspect, redrive and purge dead letters.
    Dlq(DlqArgs),
    /// Apply a declarative TOML description of streams and consumers.
    Provision(ProvisionArgs),
    /// Streams, consumers and their lag, dead letters, read-model checkpoints.
    Status(StatusArgs),
    /// List event types, or check schemas against the committed lock.
    Schemas(SchemasArgs),
}

//! One module per subcommand; [`run`] dispatches.

pub(crate) mod audit;
pub(crate) mod demo;
pub(crate) mod dlq;
pub(crate) mod provision;
pub(crate) mod publish;
pub(crate) mod rebuild;
pub(crate) mod schemas;
pub(crate) mod status;
pub(crate) mod tail;

use crate::cli::{Cli, Command};
use crate::config;
use crate::error::CliResult;

/// Runs the parsed command line.
pub(crate) async fn run(cli: Cli) -> CliResult {
    let settings = config::resolve(&cli.global)?;
    match cli.command {
        Command::Demo(args) => demo::run(&settings, args).await,
        Command::Rebuild(args) => rebuild::run(&settings, args).await,
        Command::Tail(args) => tail::run(&settings, args).await,
        Command::Publish(args) => publish::run(&settings, args).await,
        Command::Audit(args) => audit::run(&settings, args).await,
        Command::Dlq(args) => dlq::run(&settings, args).await,
        Command::Provision(args) => provision::run(&settings, args).await,
        Command::Status(args) => status::run(&settings, args).await,
        Command::Schemas(args) => schemas::run(&settings, args).await,
    }
}

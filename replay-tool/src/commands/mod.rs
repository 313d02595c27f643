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
        Command::Bench(args) => bench(&settings, args).await,
    }
}

/// `replay-tool bench`: the global `--nats-url` (first URL), when given,
/// replaces the servers the harness would spawn.
async fn bench(settings: &config::Settings, mut args: crate::bench::BenchArgs) -> CliResult {
    if let config::BackendChoice::JetStream(nats) = &settings.backend {
        args.nats_url = nats.urls.first().cloned();
    }
    let report = crate::bench::run(&args).await?;
    let mut stdout = std::io::stdout().lock();
    std::io::Write::write_all(&mut stdout, report.markdown().as_bytes())?;
    Ok(())
}

//! `backbone-bridge`: runs the bridges of a config file beside a log it
//! opens itself (JetStream, or an embedded log no server holds). Like
//! the server, it creates the event log when it does not exist.
//!
//! ```text
//! backbone-bridge --config bridges.toml
//! ```
//!
//! SIGINT or SIGTERM stops every bridge: an unconfirmed batch is handed
//! back to the log (outbound) or left unacknowledged upstream (inbound),
//! so the next start sends or takes it again. Exit codes: 0 after a clean
//! stop, 1 a configuration or log failure, 2 a bridge failed.

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use backbone_bridges::{BridgeCounters, BridgesFile};
use backbone_broker::stream::ensure_event_log;
use backbone_consumers::shutdown_channel;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code: the configuration or the log failed.
const EXIT_SETUP: u8 = 1;
/// Exit code: a bridge stopped with an error.
const EXIT_BRIDGE: u8 = 2;

/// Runs Backbone's bridges to RabbitMQ, Redis, AMQP 1.0 and Azure Service Bus.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The TOML config file (`[backend]` or `data_dir`, `[[bridges]]`).
    #[arg(long, short, env = "BACKBONE_BRIDGE_CONFIG")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let file = match BridgesFile::load(&args.config) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("backbone-bridge: {e}");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run(file)),
        Err(e) => {
            eprintln!("backbone-bridge: cannot start the runtime: {e}");
            ExitCode::from(EXIT_SETUP)
        }
    }
}

async fn run(file: BridgesFile) -> ExitCode {
    // Before anything slow, so a stop request during startup is a clean
    // stop, not the default action of the signal.
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            eprintln!("backbone-bridge: cannot install signal handlers");
            return ExitCode::from(EXIT_SETUP);
        }
    };
    let backend = file.backend();
    let broker = match backend.connect().await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("backbone-bridge: {}: {e}", backend.describe());
            return ExitCode::from(EXIT_SETUP);
        }
    };
    if let Err(e) = ensure_event_log(broker.as_ref(), &file.stream).await {
        eprintln!("backbone-bridge: {e}");
        return ExitCode::from(EXIT_SETUP);
    }
    let (trigger, shutdown) = shutdown_channel();
    let mut bridges = tokio::task::JoinSet::new();
    for config in file.bridges {
        let (broker, stream, shutdown) = (broker.clone(), file.stream.clone(), shutdown.clone());
        bridges.spawn(async move {
            let counters = Arc::new(BridgeCounters::default());
            tracing::info!(bridge = %config.name, direction = ?config.direction, broker = %config.broker, "starting");
            let result =
                backbone_bridges::run(broker, &stream, &config, counters.clone(), shutdown).await;
            let (moved, dead_lettered, failures) = counters.snapshot();
            tracing::info!(bridge = %config.name, moved, dead_lettered, failures, "stopped");
            result
        });
    }
    let mut code = ExitCode::SUCCESS;
    let mut signalled = false;
    while !bridges.is_empty() {
        tokio::select! {
            joined = bridges.join_next() => match joined {
                Some(Ok(Ok(()))) | None => {}
                Some(Ok(Err(e))) => {
                    eprintln!("backbone-bridge: {e}");
                    code = ExitCode::from(EXIT_BRIDGE);
                    trigger.trigger();
                }
                Some(Err(e)) => {
                    eprintln!("backbone-bridge: a bridge panicked: {e}");
                    code = ExitCode::from(EXIT_BRIDGE);
                    trigger.trigger();
                }
            },
            _ = term.recv(), if !signalled => { signalled = true; trigger.trigger(); }
            _ = int.recv(), if !signalled => { signalled = true; trigger.trigger(); }
        }
    }
    if let Err(e) = broker.close().await {
        eprintln!("backbone-bridge: closing the log: {e}");
        return ExitCode::from(EXIT_SETUP);
    }
    code
}

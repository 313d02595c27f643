//! `backbone-consumer`: runs read models as a long-running service.
//!
//! ```text
//! backbone-consumer --config consumer.toml [--models billing,audit] [--reactors follow-notifier]
//! ```
//!
//! SIGINT or SIGTERM stops fetching; in-flight batches finish and commit,
//! then the process exits 0. If that takes longer than the configured grace
//! time it exits 2 (nothing is lost: the next start resumes from the
//! committed checkpoints).

use std::{path::PathBuf, process::ExitCode};

use backbone_consumers::{
    Metrics,
    service::{ServiceConfig, run_service},
    shutdown_channel,
};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

/// The same allocator as the other binaries: sled's per-insert leaf copies
/// make the allocator a large part of a read model's cost (see
/// `docs/benchmarks.md`, "Profiles").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs Backbone read models from a TOML config.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The TOML config file.
    #[arg(long, short, env = "BACKBONE_CONSUMER_CONFIG")]
    config: PathBuf,
    /// Read models to run (comma-separated), overriding the config's list.
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// Reactors to run (comma-separated), overriding the config's list.
    #[arg(long, value_delimiter = ',')]
    reactors: Option<Vec<String>>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    json_logs: bool,
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_logs(args.json_logs);
    let mut config = match ServiceConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("backbone-consumer: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(models) = args.models {
        config.models = models;
    }
    if let Some(reactors) = args.reactors {
        config.reactors = reactors;
    }
    let broker = match config.connect().await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("backbone-consumer: {e}");
            return ExitCode::from(1);
        }
    };
    let (trigger, shutdown) = shutdown_channel();
    let service_config = config.clone();
    let mut service = tokio::spawn(async move {
        run_service(&service_config, broker, Metrics::new(), shutdown).await
    });
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            eprintln!("backbone-consumer: cannot install signal handlers");
            return ExitCode::from(1);
        }
    };
    let finished = tokio::select! {
        result = &mut service => Some(result),
        _ = term.recv() => None,
        _ = int.recv() => None,
    };
    let result = match finished {
        Some(result) => result,
        None => {
            tracing::info!(grace_time = ?config.grace_time, "shutting down");
            trigger.trigger();
            match tokio::time::timeout(config.grace_time, &mut service).await {
                Ok(result) => result,
                Err(_) => {
                    eprintln!("backbone-consumer: grace time exceeded; exiting without waiting");
                    return ExitCode::from(2);
                }
            }
        }
    };
    match result {
        Ok(Ok(reports)) => {
            for (model, report) in reports {
                tracing::info!(%model, applied = report.applied, checkpoint = report.checkpoint, "stopped");
            }
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("backbone-consumer: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("backbone-consumer: {e}");
            ExitCode::from(1)
        }
    }
}

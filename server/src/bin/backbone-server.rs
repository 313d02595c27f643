//! `backbone-server`: owns the log, runs read models and reactors, serves
//! HTTP.
//!
//! ```text
//! backbone-server --data-dir ./backbone-data [--listen 127.0.0.1:7070]
//! backbone-server --config server.toml [--models billing,audit] [--reactors follow-notifier]
//! ```
//!
//! SIGINT or SIGTERM stops accepting requests and fetching; in-flight
//! requests and batches finish and commit, then the process exits 0. If that takes longer than the configured grace
//! time it exits 2 (nothing is lost: the next start resumes from the
//! committed checkpoints).

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use backbone_consumers::{Metrics, shutdown_channel};
use backbone_server::{Server, ServerConfig, telemetry};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

/// The same allocator as the other binaries: sled's per-insert leaf copies
/// make the allocator a large part of a read model's cost (see
/// `docs/benchmarks.md`, "Profiles").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Owns the Backbone log, runs read models and reactors, serves HTTP.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The TOML config file; without it, the defaults for `--data-dir`.
    #[arg(
        long,
        short,
        env = "BACKBONE_SERVER_CONFIG",
        required_unless_present = "data_dir"
    )]
    config: Option<PathBuf>,
    /// The data directory (the embedded log and the read models),
    /// overriding the config's.
    #[arg(long, env = "BACKBONE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The HTTP address, overriding the config's (default 127.0.0.1:7070).
    #[arg(long)]
    listen: Option<SocketAddr>,
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

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = match (&args.config, &args.data_dir) {
        (Some(path), _) => match ServerConfig::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("backbone-server: {e}");
                return ExitCode::from(1);
            }
        },
        (None, Some(dir)) => ServerConfig::for_data_dir(dir.clone()),
        (None, None) => unreachable!("clap requires --config or --data-dir"),
    };
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(listen) = args.listen {
        config.http.listen = listen;
    }
    let telemetry = match telemetry::init(args.json_logs, &config.telemetry) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("backbone-server: {e}");
            return ExitCode::from(1);
        }
    };
    // The OTLP exporter's blocking HTTP client lives outside the runtime:
    // built before it, flushed after it.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("backbone-server: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(serve(config, args.models, args.reactors));
    drop(runtime);
    telemetry.shutdown();
    code
}

/// Runs the server until it stops or is signalled; the exit code.
async fn serve(
    mut config: ServerConfig,
    models: Option<Vec<String>>,
    reactors: Option<Vec<String>>,
) -> ExitCode {
    if let Some(models) = models {
        config.models = models;
    }
    if let Some(reactors) = reactors {
        config.reactors = reactors;
    }
    let broker = match config.connect().await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("backbone-server: {e}");
            return ExitCode::from(1);
        }
    };
    let server = match Server::start(&config, broker, Metrics::new()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("backbone-server: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!(
        "backbone-server: listening on http://{}",
        server.local_addr()
    );
    let (trigger, shutdown) = shutdown_channel();
    let mut service = tokio::spawn(server.run(shutdown));
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            eprintln!("backbone-server: cannot install signal handlers");
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
                    eprintln!("backbone-server: grace time exceeded; exiting without waiting");
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
            eprintln!("backbone-server: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("backbone-server: {e}");
            ExitCode::from(1)
        }
    }
}

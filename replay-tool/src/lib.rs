//! `replay-tool`, Backbone's operator CLI, as a library: the binary is a
//! thin `main.rs` over [`main`]. See `docs/replay-tool.md`.

mod backend;
mod cli;
mod commands;
mod config;
pub mod error;
mod event_view;
mod generator;
mod log_source;
mod output;
mod predicate;
mod progress;
mod read_models;
pub mod server_client;

use std::process::ExitCode;

use clap::Parser;

pub use cli::Cli;
pub use error::{CliError, exit};

/// Exits quietly when stdout is closed early (`replay-tool tail | head`),
/// as command-line tools are expected to, instead of reporting a panic.
fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or_default();
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Runs the command line of this process and returns its exit code.
pub fn main() -> ExitCode {
    exit_quietly_on_broken_pipe();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BACKBONE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) | Err(CliError::OutputClosed) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

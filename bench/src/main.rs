//! `backbone-bench`: Backbone measured against the raw async-nats client in
//! one run, on the same nats-server, with JSON results and a plot. Its own
//! crate, so the operator CLI does not carry the harness, hdrhistogram or
//! plotters; `scripts/bench` runs it.
//!
//! Ratios, not absolute numbers, are the figures to read: on a shared machine
//! only a comparison made in the same run is honest. See
//! `docs/benchmarks.md` for what each scenario does and the latest figures.

/// The same allocator as the other binaries: sled's per-insert leaf copies
/// make the allocator a large part of a read model's cost (see
/// `docs/benchmarks.md`, "Profiles").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bridges;
mod embedded;
pub(crate) mod error;
mod http;
mod jetstream;
mod latency;
mod machine;
mod memory;
mod model;
mod own_process;
mod pipeline;
mod plan;
mod plot;
mod raw;
mod raw_storage;
pub(crate) mod report;
mod server;
#[cfg(test)]
mod smoke;
mod workload;

use std::{path::PathBuf, time::Instant};

use error::{BenchError, BenchErrorKind};
use plan::Plan;
use report::{BenchReport, ServerUsed, Skipped};
use server::{FsyncPolicy, SpawnOutcome, SpawnedServer};

/// Arguments of `backbone-bench`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BenchArgs {
    /// Small counts that finish in seconds: a smoke run for CI; its figures
    /// are not meaningful.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Measure against this running server instead of spawning one per fsync
    /// policy: the global `--nats-url`, filled in by the command.
    #[arg(long, value_name = "URL")]
    pub(crate) nats_url: Option<String>,
    /// The nats-server binary to spawn [default: nats-server on PATH, else
    /// /usr/sbin/nats-server].
    #[arg(long, value_name = "PATH")]
    pub(crate) nats_server: Option<PathBuf>,
    /// The nats-server binary for the `sync_interval: always` leg, which
    /// needs nats-server 2.10 or later [default: the --nats-server binary].
    #[arg(long, value_name = "PATH")]
    pub(crate) nats_server_always: Option<PathBuf>,
    /// Directory for results.json, results.md and plot.svg.
    #[arg(long, value_name = "DIR", default_value = "docs/benchmarks")]
    pub(crate) out_dir: PathBuf,
    /// Events per throughput scenario [default: 200000; quick: 2000].
    #[arg(long)]
    pub(crate) events: Option<u64>,
    /// Largest log of the rebuild-memory scenario [default: 1000000; quick: 10000].
    #[arg(long)]
    pub(crate) memory_events: Option<u64>,
    /// Publishes in flight at once, raw and Backbone alike.
    #[arg(long, default_value_t = 256)]
    pub(crate) window: usize,
    /// Seconds of open-loop traffic per rate [default: 5; quick: 0.5].
    #[arg(long)]
    pub(crate) latency_seconds: Option<f64>,
}

/// Runs every scenario, writes `results.json`, `results.md` and `plot.svg`
/// into `args.out_dir`, and returns the report.
pub(crate) async fn run(args: &BenchArgs) -> Result<BenchReport, BenchError> {
    let plan = Plan::new(args)?;
    let started = Instant::now();
    let binary = args
        .nats_server
        .clone()
        .unwrap_or_else(server::default_binary);
    let version = match &args.nats_url {
        Some(_) => "external".to_owned(),
        None => server::server_version(&binary),
    };
    let mut report = BenchReport::empty(machine::Machine::detect(version), plan.settings());
    let cpu_at_start = machine::CpuTimes::now();

    match &args.nats_url {
        Some(url) => jetstream::run(&plan, url, FsyncPolicy::External, &mut report).await?,
        None => {
            for policy in [FsyncPolicy::Default, FsyncPolicy::Always] {
                let binary = match (policy, &args.nats_server_always) {
                    (FsyncPolicy::Always, Some(always)) => always.clone(),
                    _ => binary.clone(),
                };
                report.servers.push(ServerUsed {
                    fsync: policy,
                    version: server::server_version(&binary),
                    binary: binary.display().to_string(),
                });
                match SpawnedServer::spawn(&binary, policy)? {
                    SpawnOutcome::Running(server) => {
                        let leg = plan.for_fsync(policy);
                        jetstream::run(&leg, server.url(), policy, &mut report).await?;
                    }
                    SpawnOutcome::Unsupported(reason) => {
                        plan.progress(&format!("skipping fsync policy `{policy}`: {reason}"));
                        report.skipped.push(Skipped {
                            scenario: format!("JetStream scenarios with fsync `{policy}`"),
                            reason,
                        });
                    }
                }
            }
        }
    }
    embedded::run(&plan, &mut report).await?;
    http::run(&plan, &mut report).await?;
    bridges::run(&plan, &mut report).await?;

    report.total_seconds = started.elapsed().as_secs_f64();
    report.machine.load = cpu_at_start.and_then(machine::CpuTimes::load_since);
    write_outputs(&report, &args.out_dir)?;
    Ok(report)
}

fn write_outputs(report: &BenchReport, dir: &std::path::Path) -> Result<(), BenchError> {
    let io = |e: std::io::Error| BenchError::with_source(BenchErrorKind::Io, e);
    std::fs::create_dir_all(dir).map_err(io)?;
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| BenchError::with_source(BenchErrorKind::Io, e))?;
    std::fs::write(dir.join("results.json"), json + "\n").map_err(io)?;
    std::fs::write(dir.join("results.md"), report.markdown()).map_err(io)?;
    plot::write_svg(report, &dir.join("plot.svg"))
}

/// The command line: the benchmark's arguments.
#[derive(Debug, clap::Parser)]
#[command(
    name = "backbone-bench",
    version,
    about = "Backbone against raw async-nats, in one run"
)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
    /// Internal: rebuild the embedded log in LOG into the store STORE and
    /// print the figures (the memory scenario's process of its own).
    #[arg(long, hide = true, num_args = 2, value_names = ["LOG", "STORE"])]
    rebuild_child: Option<Vec<PathBuf>>,
}

fn main() -> std::process::ExitCode {
    use clap::Parser as _;
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Some([log, store]) = cli.rebuild_child.as_deref() {
        return match runtime.block_on(own_process::child(log, store)) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::from(exit_code(e.kind()))
            }
        };
    }
    match runtime.block_on(run(&cli.bench)) {
        Ok(report) => {
            print!("{}", report.markdown());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(exit_code(e.kind()))
        }
    }
}

/// Exit code: no server to measure.
const EXIT_UNAVAILABLE: u8 = 4;
/// Exit code: the arguments do not make a run.
const EXIT_USAGE: u8 = 2;
/// Exit code: a scenario failed.
const EXIT_FAILED: u8 = 1;

/// The exit code of a failed run, as `replay-tool` numbers them.
fn exit_code(kind: &BenchErrorKind) -> u8 {
    match kind {
        BenchErrorKind::ServerUnavailable => EXIT_UNAVAILABLE,
        BenchErrorKind::InvalidArguments => EXIT_USAGE,
        BenchErrorKind::RawClient
        | BenchErrorKind::Backbone
        | BenchErrorKind::Incomplete { .. }
        | BenchErrorKind::Io => EXIT_FAILED,
    }
}

#[cfg(test)]
mod exit_codes {
    use super::*;

    #[test]
    fn kinds_map_to_documented_exit_codes() {
        let cases = [
            (BenchErrorKind::ServerUnavailable, 4),
            (BenchErrorKind::InvalidArguments, 2),
            (BenchErrorKind::RawClient, 1),
            (BenchErrorKind::Backbone, 1),
            (
                BenchErrorKind::Incomplete {
                    expected: 2,
                    seen: 1,
                },
                1,
            ),
            (BenchErrorKind::Io, 1),
        ];
        for (kind, code) in cases {
            assert_eq!(exit_code(&kind), code, "{kind:?}");
        }
    }
}

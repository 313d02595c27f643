//! The counts and rates of a run, from the arguments.

use std::time::Duration;

use super::{
    BenchArgs,
    error::{BenchError, BenchErrorKind},
    report::Settings,
    server::FsyncPolicy,
};

/// Payload sizes published, bytes.
const PAYLOAD_SIZES: [usize; 2] = [128, 1024];
/// How many times fewer events the `sync_interval: always` leg publishes.
const ALWAYS_EVENTS_DIVISOR: u64 = 10;
/// Open-loop rates, events per second.
const LATENCY_RATES: [u64; 3] = [1_000, 5_000, 20_000];

/// What a run does, resolved from [`BenchArgs`].
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Smoke mode.
    pub(crate) quick: bool,
    /// Events per throughput scenario and payload size.
    pub(crate) events: u64,
    /// Publishes in flight.
    pub(crate) window: usize,
    /// Payload sizes, bytes.
    pub(crate) payload_sizes: Vec<usize>,
    /// Open-loop rates.
    pub(crate) latency_rates: Vec<u64>,
    /// Seconds per open-loop rate.
    pub(crate) latency_seconds: f64,
    /// Log sizes of the rebuild-memory scenario, ascending.
    pub(crate) memory_log_sizes: Vec<u64>,
}

impl Plan {
    /// Resolves defaults; fails on zero counts or a zero window.
    pub(crate) fn new(args: &BenchArgs) -> Result<Self, BenchError> {
        let quick = args.quick;
        let events = args.events.unwrap_or(if quick { 2_000 } else { 200_000 });
        let memory_max = args
            .memory_events
            .unwrap_or(if quick { 10_000 } else { 1_000_000 });
        let latency_seconds = args
            .latency_seconds
            .unwrap_or(if quick { 0.5 } else { 5.0 });
        if events == 0 || memory_max == 0 || args.window == 0 {
            return Err(BenchError::with_detail(
                BenchErrorKind::InvalidArguments,
                "--events, --memory-events and --window must be at least 1",
            ));
        }
        if !(latency_seconds > 0.0 && latency_seconds <= 600.0) {
            return Err(BenchError::with_detail(
                BenchErrorKind::InvalidArguments,
                "--latency-seconds must be in (0, 600]",
            ));
        }
        Ok(Self {
            quick,
            events,
            window: args.window,
            payload_sizes: PAYLOAD_SIZES.to_vec(),
            latency_rates: LATENCY_RATES.to_vec(),
            latency_seconds,
            memory_log_sizes: vec![memory_max / 4, memory_max / 2, memory_max],
        })
    }

    /// The plan of one fsync policy's leg: `sync_interval: always` fsyncs
    /// every write, so publishing runs at a few thousand events/s; its
    /// throughput scenarios use a tenth of the events to finish in minutes.
    pub(crate) fn for_fsync(&self, fsync: FsyncPolicy) -> Self {
        match fsync {
            FsyncPolicy::Always => Self {
                events: (self.events / ALWAYS_EVENTS_DIVISOR).max(1),
                ..self.clone()
            },
            FsyncPolicy::Default | FsyncPolicy::External | FsyncPolicy::EmbeddedGroupCommit => {
                self.clone()
            }
        }
    }

    /// Events sent at `rate` in one open-loop run.
    pub(crate) fn latency_events(&self, rate: u64) -> u64 {
        ((rate as f64 * self.latency_seconds) as u64).max(1)
    }

    /// The settings as recorded in the report.
    pub(crate) fn settings(&self) -> Settings {
        Settings {
            quick: self.quick,
            events: self.events,
            window: self.window,
            payload_sizes: self.payload_sizes.clone(),
            latency_rates: self.latency_rates.clone(),
            latency_seconds: self.latency_seconds,
            memory_log_sizes: self.memory_log_sizes.clone(),
        }
    }

    /// How long one throughput scenario may take before it counts as stuck.
    pub(crate) fn deadline(&self) -> Duration {
        Duration::from_secs(120) + Duration::from_millis(self.events / 10)
    }

    /// Prints a progress line to stderr.
    pub(crate) fn progress(&self, line: &str) {
        eprintln!("bench: {line}");
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn plan(args: &[&str]) -> Result<Plan, BenchError> {
        let cli = Cli::parse_from(std::iter::once("bench").chain(args.iter().copied()));
        Plan::new(&cli.bench)
    }

    #[test]
    fn zero_counts_and_bad_durations_are_invalid_arguments() {
        for args in [
            &["--events", "0"][..],
            &["--memory-events", "0"],
            &["--window", "0"],
            &["--latency-seconds", "0"],
            &["--latency-seconds", "NaN"],
        ] {
            let error = plan(args).unwrap_err();
            assert_eq!(error.kind(), &BenchErrorKind::InvalidArguments, "{args:?}");
        }
    }

    #[test]
    fn quick_mode_shrinks_every_count() {
        let quick = plan(&["--quick"]).unwrap();
        let full = plan(&[]).unwrap();
        assert!(quick.events < full.events);
        assert!(quick.memory_log_sizes[2] < full.memory_log_sizes[2]);
        assert_eq!(full.memory_log_sizes, vec![250_000, 500_000, 1_000_000]);
        assert_eq!(quick.latency_events(1_000), 500);
        assert_eq!(full.for_fsync(FsyncPolicy::Always).events, 20_000);
        assert_eq!(full.for_fsync(FsyncPolicy::Default).events, 200_000);
    }
}

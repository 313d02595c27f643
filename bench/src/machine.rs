//! The machine and versions a run measured on, recorded with the figures.

use std::{path::Path, process::Command};

use serde::Serialize;

/// Cargo.lock of the workspace, read at build time for the async-nats
/// version actually linked.
const CARGO_LOCK: &str = include_str!("../../Cargo.lock");

/// Where and with what a run measured.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    /// Logical CPUs.
    pub(crate) cpus: usize,
    /// CPU model, from /proc/cpuinfo.
    pub(crate) cpu_model: String,
    /// Total memory, GiB.
    pub(crate) memory_gib: f64,
    /// Kernel release.
    pub(crate) kernel: String,
    /// `rustc --version`, when a toolchain is on PATH.
    pub(crate) rustc: String,
    /// The nats-server version spawned (or `external`).
    pub(crate) nats_server: String,
    /// The async-nats version linked.
    pub(crate) async_nats: String,
    /// `release` or `debug` build.
    pub(crate) profile: &'static str,
    /// How busy the machine was while the run measured, from /proc.
    pub(crate) load: Option<Load>,
}

/// How much of the machine the run could not have. Steal is CPU time the
/// hypervisor gave other guests: a run with steal well above zero was not
/// on an idle machine, whatever this guest's own load, and its absolute
/// figures are low by about that much (its ratios less so).
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Load {
    /// Percent of all CPU time stolen by the hypervisor.
    pub(crate) steal_percent: f64,
    /// The 1-minute load average when the run ended.
    pub(crate) load_average_at_end: f64,
}

/// The aggregate `cpu` line of /proc/stat, in clock ticks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuTimes {
    total: u64,
    steal: u64,
}

impl CpuTimes {
    /// Now, or `None` without /proc/stat.
    pub(crate) fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let ticks: Vec<u64> = stat
            .lines()
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .filter_map(|t| t.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is
        // already counted in user).
        Some(Self {
            total: ticks.iter().take(8).sum(),
            steal: *ticks.get(7)?,
        })
    }

    /// The load between `self` and now.
    pub(crate) fn load_since(self) -> Option<Load> {
        let end = Self::now()?;
        let total = end.total.checked_sub(self.total)?.max(1);
        let steal = end.steal.saturating_sub(self.steal);
        let load_average_at_end = std::fs::read_to_string("/proc/loadavg")
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(Load {
            steal_percent: 100.0 * steal as f64 / total as f64,
            load_average_at_end,
        })
    }
}

impl Machine {
    /// Reads the running machine; `nats_server` is the server's version.
    pub(crate) fn detect(nats_server: String) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
            memory_gib: field(&meminfo, "MemTotal")
                .and_then(|v| v.trim_end_matches("kB").trim().parse::<f64>().ok())
                .map_or(0.0, |kib| kib / (1024.0 * 1024.0)),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into()),
            rustc: command_line("rustc", &["--version"]),
            nats_server,
            async_nats: locked_version("async-nats").unwrap_or_else(|| "unknown".into()),
            profile: if cfg!(debug_assertions) {
                "debug build"
            } else {
                "release build"
            },
            load: None,
        }
    }
}

/// The value of the first `name : value` line of a /proc file.
fn field(text: &str, name: &str) -> Option<String> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim() == name)
        .map(|(_, value)| value.trim().to_owned())
}

fn command_line(program: impl AsRef<Path>, args: &[&str]) -> String {
    Command::new(program.as_ref())
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// The version of `package` in the workspace's Cargo.lock.
fn locked_version(package: &str) -> Option<String> {
    let needle = format!("name = \"{package}\"");
    let mut lines = CARGO_LOCK.lines();
    lines.find(|line| *line == needle)?;
    lines
        .next()
        .and_then(|line| line.strip_prefix("version = \""))
        .map(|v| v.trim_end_matches('"').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_linked_async_nats_version() {
        assert!(locked_version("async-nats").unwrap().starts_with("0.51"));
    }

    #[test]
    fn reads_proc_fields() {
        let machine = Machine::detect("v0".into());
        assert!(machine.cpus >= 1);
        assert!(machine.memory_gib > 0.0);
        let load = CpuTimes::now().unwrap().load_since().unwrap();
        assert!((0.0..=100.0).contains(&load.steal_percent));
        assert_eq!(
            field("a\t: 1\nmodel name\t: Xeon\n", "model name").as_deref(),
            Some("Xeon")
        );
    }
}

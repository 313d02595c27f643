//! The rebuild-memory scenario's measurement in a process of its own.
//!
//! A rebuild's peak resident set only means something without the harness
//! around it (the JetStream scenarios leave hundreds of MiB mapped), so the
//! harness runs `backbone-bench --rebuild-child LOG STORE`: that process
//! opens the embedded log, rebuilds the benchmark model into a fresh store,
//! and prints its figures as one JSON line; its peak (VmHWM) covers its
//! whole life: the open, the rebuild and nothing else.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use backbone_broker::stream::EVENT_STREAM;
use serde::{Deserialize, Serialize};

use super::{
    embedded,
    error::{BenchError, BenchErrorKind},
    memory,
    pipeline::{self, backbone_error},
    report::{MemoryPoint, Throughput},
};

/// The unit test that stands in for `--rebuild-child` in the smoke test.
const CHILD_TEST: &str = "own_process::tests::rebuild_child";
/// The log and store of [`CHILD_TEST`].
const CHILD_LOG_ENV: &str = "BACKBONE_BENCH_CHILD_LOG";
const CHILD_STORE_ENV: &str = "BACKBONE_BENCH_CHILD_STORE";

/// What the child reports.
#[derive(Debug, Serialize, Deserialize)]
struct ChildFigures {
    rss_before_mib: f64,
    peak_rss_mib: f64,
    events: u64,
    seconds: f64,
}

/// Rebuilds the log in `log` into `store` in a child process.
pub(crate) fn measure(log: &Path, store: &Path) -> Result<MemoryPoint, BenchError> {
    let mut command = Command::new(std::env::current_exe().map_err(io)?);
    if cfg!(test) {
        // The smoke test's binary is libtest's: it runs the child as a test.
        command
            .args([CHILD_TEST, "--exact", "--nocapture", "--quiet"])
            .env(CHILD_LOG_ENV, log)
            .env(CHILD_STORE_ENV, store);
    } else {
        command.arg("--rebuild-child").args([log, store]);
    }
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(io)?;
    if !output.status.success() {
        return Err(BenchError::with_detail(
            BenchErrorKind::Backbone,
            format!("the rebuild process failed ({})", output.status),
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|line| line.starts_with('{'))
        .unwrap_or_default();
    let figures: ChildFigures =
        serde_json::from_str(line).map_err(|e| BenchError::with_source(BenchErrorKind::Io, e))?;
    Ok(MemoryPoint {
        source: "embedded log, own process".into(),
        log_events: figures.events,
        rss_before_mib: figures.rss_before_mib,
        peak_rss_mib: figures.peak_rss_mib,
        throughput: Throughput::new(figures.events, Duration::from_secs_f64(figures.seconds)),
    })
}

/// The child's side: rebuilds and prints [`ChildFigures`].
pub(crate) async fn child(log: &Path, store: &Path) -> Result<(), BenchError> {
    // The parent closed the log just before; the open waits out its lock.
    let broker = embedded::open(log).await?;
    let events = broker
        .stream_info(EVENT_STREAM)
        .await
        .map_err(backbone_error)?
        .last_seq;
    let rss_before_mib = memory::current_mib();
    let throughput = pipeline::rebuild_model(broker.as_ref(), store, events).await?;
    let figures = ChildFigures {
        rss_before_mib,
        peak_rss_mib: memory::peak_mib(),
        events: throughput.events,
        seconds: throughput.seconds,
    };
    broker.close().await.map_err(backbone_error)?;
    println!(
        "{}",
        serde_json::to_string(&figures)
            .map_err(|e| BenchError::with_source(BenchErrorKind::Io, e))?
    );
    Ok(())
}

fn io(e: std::io::Error) -> BenchError {
    BenchError::with_source(BenchErrorKind::Io, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The child process of [`measure`] under `cargo test`; a no-op in a
    /// plain test run.
    #[test]
    fn rebuild_child() {
        let (Some(log), Some(store)) = (
            std::env::var_os(CHILD_LOG_ENV),
            std::env::var_os(CHILD_STORE_ENV),
        ) else {
            return;
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(child(Path::new(&log), Path::new(&store)))
            .unwrap();
    }
}

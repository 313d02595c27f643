//! The kill -9 harness of `tests/crash.rs`: the bridge process, killed
//! at random points, then run to the end; the RELIABILITY lines.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use backbone_schemas::Envelope;

use super::*;

/// Events per scenario: enough that kills land mid-stream.
pub const EVENTS: usize = 4_000;

pub fn trials() -> usize {
    std::env::var("BACKBONE_BRIDGE_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// A deterministic pseudo-random sequence (no dependency for one test).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

/// The config of one bridge over the embedded log in `dir/data`.
pub fn write_config(dir: &Path, bridge: &str) -> PathBuf {
    let data = dir.join("data");
    let path = dir.join("bridges.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = {data:?}\n[[bridges]]\nbatch_size = 64\nreconnect_base = \"20ms\"\nreconnect_max = \"200ms\"\n{bridge}"
        ),
    )
    .unwrap();
    path
}

/// A bridge process, killed when dropped (a failing test leaves none).
pub struct Bridge(pub Child);

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn(config: &Path) -> Bridge {
    Bridge(
        Command::new(env!("CARGO_BIN_EXE_backbone-bridge"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

/// Starts the bridge and kills it with SIGKILL after a random 30-400 ms,
/// `trials` times.
pub fn kill_at_random_points(config: &Path, seed: u64) {
    let mut random = Lcg(seed);
    for _ in 0..trials() {
        let child = spawn(config);
        std::thread::sleep(Duration::from_millis(30 + random.below(370)));
        drop(child);
    }
}

/// Runs the bridge until `done` holds (at most two minutes), then stops it
/// with SIGTERM; it must exit 0.
pub async fn run_until<F, Fut>(config: &Path, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut child = spawn(config);
    let deadline = Instant::now() + Duration::from_secs(120);
    // Long enough for the bridge to start and take what is left.
    tokio::time::sleep(Duration::from_secs(1)).await;
    while !done().await {
        assert!(Instant::now() < deadline, "the bridge did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.0.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "backbone-bridge exited with {status}");
}

/// Prepares the embedded log in `dir/data/log` with `events`, then closes
/// it for the bridge process.
pub async fn log_with(dir: &Path, events: &[Envelope]) {
    let log = open_log(&dir.join("data").join("log")).await;
    publish(log.as_ref(), events).await;
    log.close().await.unwrap();
}

/// Checks that every event arrived and every copy is the same message;
/// prints the RELIABILITY line.
pub fn report_outbound(events: &[Envelope], arrived: &[(String, Vec<u8>)]) {
    let originals: BTreeMap<String, &Envelope> =
        events.iter().map(|e| (e.id.to_string(), e)).collect();
    let mut copies: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, body) in arrived {
        let original = originals
            .get(id)
            .unwrap_or_else(|| panic!("{id} was never published"));
        assert_eq!(&body[..], &original.payload[..], "a copy of {id} differs");
        *copies.entry(id.as_str()).or_default() += 1;
    }
    let lost = events.len() - copies.len();
    let duplicates = arrived.len() - copies.len();
    println!(
        "RELIABILITY acked={} stored={} lost={lost} duplicates={duplicates} not_consumed=0 publish_errors=0",
        events.len(),
        copies.len()
    );
    assert_eq!(lost, 0, "events lost");
}

pub async fn report_inbound(dir: &Path, events: &[Envelope]) {
    let log = open_log(&dir.join("data").join("log")).await;
    let stored = stored_events(log.as_ref()).await.len();
    println!(
        "RELIABILITY acked={} stored={stored} lost={} duplicates=0 not_consumed=0 publish_errors=0",
        events.len(),
        events.len().saturating_sub(stored)
    );
    assert_each_once(log.as_ref(), events).await;
}

//! The nats-server processes the benchmark runs against: one per fsync
//! policy, on a free loopback port with a temporary store, killed on drop.
//!
//! The bench spawns its own servers instead of using `backbone-testkit`
//! because it ships in the operator binary (testkit is a test-only crate) and
//! needs a server config file for the fsync policy.

use std::{
    fmt,
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde::Serialize;
use tempfile::TempDir;

use super::error::{BenchError, BenchErrorKind};

/// How the server flushes its JetStream file store to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FsyncPolicy {
    /// The server's default: fsync every couple of minutes, in the background.
    Default,
    /// `sync_interval: always`: fsync after every write (nats-server >= 2.10).
    Always,
    /// An external server given with the global `--nats-url`, as configured there.
    External,
    /// No server: the embedded log's group commit (one fsync per write group).
    EmbeddedGroupCommit,
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Default => "default",
            Self::Always => "sync_interval: always",
            Self::External => "external server",
            Self::EmbeddedGroupCommit => "embedded group commit",
        })
    }
}

/// What starting a server gave.
#[derive(Debug)]
pub(crate) enum SpawnOutcome {
    /// The server runs and accepts connections.
    Running(SpawnedServer),
    /// The server rejected its configuration as unknown (an older server
    /// lacking the feature); the text is the server's own message.
    Unsupported(String),
}

/// A nats-server child process with its own store directory.
#[derive(Debug)]
pub(crate) struct SpawnedServer {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl SpawnedServer {
    /// Starts `binary` with JetStream and `policy`, and waits until it
    /// accepts TCP connections.
    pub(crate) fn spawn(binary: &Path, policy: FsyncPolicy) -> Result<SpawnOutcome, BenchError> {
        let dir =
            tempfile::tempdir().map_err(|e| BenchError::with_source(BenchErrorKind::Io, e))?;
        let port = free_port()?;
        let store = dir.path().join("store");
        let sync = match policy {
            FsyncPolicy::Always => ", sync_interval: always",
            FsyncPolicy::Default | FsyncPolicy::External | FsyncPolicy::EmbeddedGroupCommit => "",
        };
        let config = format!(
            "listen: 127.0.0.1:{port}\nmax_payload: 8MB\njetstream {{ store_dir: {store:?}{sync} }}\n"
        );
        let config_path = dir.path().join("nats.conf");
        let log_path = dir.path().join("nats.log");
        std::fs::write(&config_path, config)
            .map_err(|e| BenchError::with_source(BenchErrorKind::Io, e))?;
        let log = std::fs::File::create(&log_path)
            .map_err(|e| BenchError::with_source(BenchErrorKind::Io, e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| BenchError::with_source(BenchErrorKind::Io, e))?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| {
                BenchError::with_source(BenchErrorKind::ServerUnavailable, e)
                    .detail(format!("cannot start {}", binary.display()))
            })?;
        let mut server = SpawnedServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            _dir: dir,
        };
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(_)) = server.child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                if log.contains("unknown field") {
                    return Ok(SpawnOutcome::Unsupported(log.trim().to_owned()));
                }
                return Err(BenchError::with_detail(
                    BenchErrorKind::ServerUnavailable,
                    format!("nats-server exited at start: {}", log.trim()),
                ));
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_ok() {
                return Ok(SpawnOutcome::Running(server));
            }
            if Instant::now() > deadline {
                return Err(BenchError::with_detail(
                    BenchErrorKind::ServerUnavailable,
                    "nats-server did not accept connections within 10 s",
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The version line of `binary --version`, e.g. `nats-server: v2.9.10`.
pub(crate) fn server_version(binary: &Path) -> String {
    Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().trim_start_matches("nats-server: ").to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// Resolves `nats-server` on `PATH`, falling back to Debian's location.
pub(crate) fn default_binary() -> PathBuf {
    let debian = PathBuf::from("/usr/sbin/nats-server");
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("nats-server"))
                .find(|p| p.is_file())
        })
        .unwrap_or(debian)
}

fn free_port() -> Result<u16, BenchError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BenchError::with_source(BenchErrorKind::Io, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_is_server_unavailable() {
        let error =
            SpawnedServer::spawn(Path::new("/nonexistent/nats-server"), FsyncPolicy::Default)
                .unwrap_err();
        assert_eq!(error.kind(), &BenchErrorKind::ServerUnavailable);
    }

    #[test]
    fn the_default_server_runs_and_stops() {
        let binary = default_binary();
        match SpawnedServer::spawn(&binary, FsyncPolicy::Default).unwrap() {
            SpawnOutcome::Running(server) => {
                let address = server.url().trim_start_matches("nats://").to_owned();
                assert!(TcpStream::connect(&address).is_ok());
                drop(server);
                assert!(TcpStream::connect(&address).is_err());
            }
            SpawnOutcome::Unsupported(reason) => panic!("default config refused: {reason}"),
        }
    }
}

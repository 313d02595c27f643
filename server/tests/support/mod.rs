//! The `backbone-server` binary as a child process of a test, on a free
//! loopback port and a temp data dir, killed when dropped.
#![allow(dead_code, unreachable_pub)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use backbone_testkit::free_port;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// The hex SHA-256 of `token`, as `[[tokens]] sha256` wants it.
pub fn sha256_hex(token: &str) -> String {
    Sha256::digest(token)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Provisions the embedded event log in `data` with a one-second duplicate
/// window, so a redrive soon after the original publish (the same event
/// id) is not dropped as its copy. For [`ServerProcess::start_prepared`].
pub fn short_duplicate_window(data: &Path) {
    use backbone_broker::{
        Broker, StreamConfig,
        embedded::{EmbeddedBroker, EmbeddedOptions},
    };
    let path = data.join("log");
    // Its own thread: a test's runtime cannot block on another.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let log = EmbeddedBroker::open(EmbeddedOptions {
                path,
                ..Default::default()
            })
            .unwrap();
            let config = StreamConfig {
                duplicate_window: Duration::from_secs(1),
                ..StreamConfig::event_log()
            };
            log.ensure_stream(&config).await.unwrap();
            log.close().await.unwrap();
        });
    })
    .join()
    .unwrap();
}

/// A structured-mode CloudEvent of `type_name` with a fresh id.
pub fn cloud_event(type_name: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": uuid::Uuid::now_v7().to_string(), "source": "http-test",
           "type": type_name, "data": data})
}

/// A running `backbone-server`.
pub struct ServerProcess {
    child: Child,
    /// The HTTP port.
    pub port: u16,
    /// The data dir (`<dir>/data`) and the config's directory.
    pub dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts the server with `extra` appended to a config of `data_dir`,
    /// every read model, short fetch waits and the free port; waits until
    /// `/readyz` answers 200.
    pub async fn start(extra: &str) -> Self {
        Self::start_prepared(extra, |_| {}).await
    }

    /// [`start`](Self::start), after `prepare` ran on the data dir (to
    /// provision the embedded log beforehand, say).
    pub async fn start_prepared(extra: &str, prepare: impl FnOnce(&Path)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        prepare(&dir.path().join("data"));
        let port = free_port();
        let config = dir.path().join("server.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = {:?}\nfetch_wait = \"50ms\"\nack_wait = \"2s\"\n{}",
                dir.path().join("data"),
                with_listen(extra, port)
            ),
        )
        .unwrap();
        let mut server = Self {
            child: spawn(
                &config,
                std::fs::File::create(dir.path().join("server.log")).unwrap(),
            ),
            port,
            dir,
        };
        server.wait_ready().await;
        server
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `GET path`'s JSON body.
    pub async fn get_json(&self, path: &str) -> Value {
        reqwest::get(self.url(path))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                panic!("backbone-server exited: {exit:?}; log:\n{}", self.log());
            }
            if let Ok(r) = reqwest::get(self.url("/readyz")).await
                && r.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never ready; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Kills the server with SIGKILL (no shutdown at all) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same config and data dir; waits
    /// until `/readyz` answers 200.
    pub async fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        self.child = spawn(&self.dir.path().join("server.toml"), log);
        self.wait_ready().await;
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().unwrap()
    }
}

/// `extra` with `listen` in its `[http]` table (added when it has none).
fn with_listen(extra: &str, port: u16) -> String {
    let listen = format!("listen = \"127.0.0.1:{port}\"");
    if extra.contains("[http]") {
        extra.replace("[http]", &format!("[http]\n{listen}"))
    } else {
        format!("{extra}\n[http]\n{listen}\n")
    }
}

/// Spawns `backbone-server --config config`, its stderr into `log`.
pub fn spawn(config: &Path, log: std::fs::File) -> Child {
    Command::new(env!("CARGO_BIN_EXE_backbone-server"))
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! One real `nats-server` process for tests.

use std::{
    fs::{self, File},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use tempfile::TempDir;

use crate::{
    binary::find_nats_server,
    config::NatsServerBuilder,
    external::stop_gracefully,
    port::free_port,
    probe::{jetstream_answers, server_info, wait_until},
};

/// How long a starting server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a graceful stop may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A `nats-server` process with JetStream, on a free loopback port, keeping
/// its store in a temporary directory. Killed (and the directory removed)
/// on drop.
///
/// ```no_run
/// let server = backbone_testkit::NatsServer::new();
/// println!("{}", server.url());
/// ```
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    builder: NatsServerBuilder,
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server with JetStream and no auth.
    ///
    /// # Panics
    /// When no `nats-server` binary is found (with an install hint), or the
    /// server does not accept connections within 15 seconds.
    pub fn new() -> Self {
        Self::builder().start()
    }

    /// A builder for servers with auth, TLS, accounts or limits.
    pub fn builder() -> NatsServerBuilder {
        NatsServerBuilder::default()
    }

    pub(crate) fn start_with(builder: NatsServerBuilder) -> Self {
        let binary = find_nats_server().unwrap_or_else(|missing| panic!("{missing}"));
        let dir = tempfile::Builder::new()
            .prefix("backbone-nats-")
            .tempdir()
            .expect("creating the server's temp dir");
        let port = builder.port.unwrap_or_else(free_port);
        let mut server = Self {
            binary,
            builder,
            port,
            dir,
            child: None,
        };
        fs::create_dir_all(server.store_dir()).expect("creating the store dir");
        let config = server.builder.render(port, &server.store_dir());
        fs::write(server.config_path(), config).expect("writing the server config");
        server.start();
        server
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port; stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory; stays the same across restarts.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    /// The generated config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.conf")
    }

    /// The server's log (stdout and stderr of every run, appended).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// The server's log so far, for assertion messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Starts the process (again) on the same port and store; waits until it
    /// accepts connections. Does nothing if it already runs.
    ///
    /// # Panics
    /// When the server exits or does not become ready within 15 seconds.
    pub fn start(&mut self) {
        if self.is_running() {
            return;
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening the server log");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", self.binary.display()));
        self.child = Some(child);
        let port = self.port;
        // A cluster member's JetStream needs a quorum, which the first
        // node cannot have alone: the cluster waits for it once all run.
        let probe_jetstream = self.builder.jetstream_enabled()
            && !self.builder.cluster_member
            && !self.builder.has_auth()
            && !self.builder.has_tls();
        let ready = wait_until(START_TIMEOUT, || {
            if !self.is_running() {
                return true;
            }
            let Some(info) = server_info(port) else {
                return false;
            };
            !probe_jetstream || (info.contains("\"jetstream\":true") && jetstream_answers(port))
        });
        assert!(
            ready && self.is_running(),
            "nats-server on port {port} did not become ready; log:\n{}",
            self.log()
        );
    }

    /// Stops the process gracefully (SIGTERM), keeping port and store.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_gracefully(child, STOP_TIMEOUT);
        }
    }

    /// Kills the process with SIGKILL, as a crash would; keeps port and store.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops gracefully and starts again on the same port and store.
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    /// The temporary directory holding config, log and store.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for NatsServer {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

//! Real `rabbitmq-server` and `redis-server` processes for the bridges'
//! tests: loopback, free ports, temporary directories, stopped on drop,
//! restartable on the same port and data (to test broker restarts).

use std::{
    env,
    fs::{self, File},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use tempfile::TempDir;

use crate::{port::free_port, probe::wait_until};

/// How long a starting broker may take to accept connections (RabbitMQ
/// boots an Erlang VM: seconds).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful stop may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The environment variable naming the `rabbitmq-server` start script.
pub const RABBITMQ_SERVER_BIN: &str = "RABBITMQ_SERVER_BIN";
/// The environment variable naming the `redis-server` binary.
pub const REDIS_SERVER_BIN: &str = "REDIS_SERVER_BIN";

/// `env_var`, else the first of `candidates` that is a file, else a panic
/// naming the Debian package and the script that installs it.
fn find(env_var: &str, candidates: &[&str], package: &str, script: &str) -> PathBuf {
    if let Some(path) = env::var_os(env_var).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{env_var}={} is not a file", path.display());
        return path;
    }
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{package} was not found ({}); install Debian's package: apt-get install {package}, \
                 or set {env_var} ({script} does either)",
                candidates.join(", ")
            )
        })
}

/// One broker process: how to start it, its log, and the child.
#[derive(Debug)]
struct Process {
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn start(&mut self, ready: impl Fn(u16) -> bool) {
        if self.is_running() {
            return;
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("opening the broker log");
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", self.program.display()));
        self.child = Some(child);
        let port = self.port;
        let up = wait_until(START_TIMEOUT, || !self.is_running() || ready(port));
        assert!(
            up && self.is_running(),
            "{} on port {port} did not become ready; log:\n{}",
            self.program.display(),
            self.log_text()
        );
    }

    fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_gracefully(child, STOP_TIMEOUT);
        }
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// SIGTERM, then SIGKILL if `child` has not exited within `timeout`.
pub(crate) fn stop_gracefully(mut child: Child, timeout: Duration) {
    let terminated = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .is_ok_and(|s| s.success());
    let exited = terminated && wait_until(timeout, || matches!(child.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// A CA (`ca.pem`) and a server certificate it issued for `127.0.0.1`
/// and `localhost` (`server.pem`, `server.key`) in `dir`, by `openssl`.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("running openssl (Debian's openssl package) to make test certificates");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &[
                "req",
                "-x509",
                "-days",
                "2",
                "-subj",
                "/CN=backbone-test-ca",
            ][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req", "-subj", "/CN=localhost"][..],
            &ec,
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat(),
    );
    fs::write(
        dir.join("server.ext"),
        "subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth\n",
    )
    .expect("writing server.ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
}

fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// A `rabbitmq-server` node (Debian's, with the `rabbitmq_amqp1_0`
/// plugin: AMQP 0.9.1 and 1.0 on one port) on a free loopback port, with
/// its own Erlang port mapper, its data in a temporary directory. User
/// `guest`/`guest` may connect over loopback.
#[derive(Debug)]
pub struct RabbitMq {
    process: Process,
    epmd_port: u16,
    /// The TLS listener's port, when started [`RabbitMq::with_tls`].
    tls_port: Option<u16>,
    dir: TempDir,
}

impl RabbitMq {
    /// Starts a node and waits until it accepts connections.
    ///
    /// # Panics
    /// When no `rabbitmq-server` is installed (with an install hint), or it
    /// does not accept connections within a minute.
    pub fn new() -> Self {
        Self::start_node(false)
    }

    /// Starts a node that also listens with TLS (AMQP 0.9.1 and 1.0) on
    /// [`RabbitMq::tls_port`], its certificate for `127.0.0.1` and
    /// `localhost` issued by a CA made for it ([`RabbitMq::ca_file`]).
    ///
    /// # Panics
    /// As [`RabbitMq::new`], and when `openssl` cannot make the
    /// certificates.
    pub fn with_tls() -> Self {
        Self::start_node(true)
    }

    fn start_node(tls: bool) -> Self {
        let program = find(
            RABBITMQ_SERVER_BIN,
            // The script itself: /usr/sbin's wrapper switches to the
            // rabbitmq user, who cannot write the test's directory.
            &["/usr/lib/rabbitmq/bin/rabbitmq-server"],
            "rabbitmq-server",
            "scripts/ensure-brokers",
        );
        let dir = tempfile::Builder::new()
            .prefix("backbone-rabbitmq-")
            .tempdir()
            .expect("creating the broker's temp dir");
        let (port, dist_port, epmd_port) = (free_port(), free_port(), free_port());
        let path = |name: &str| dir.path().join(name).display().to_string();
        let mut conf = format!(
            "listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n\
             log.console = true\nlog.file = false\n"
        );
        let tls_port = tls.then(|| {
            make_certificates(dir.path());
            let tls_port = free_port();
            conf.push_str(&format!(
                "listeners.ssl.default = 127.0.0.1:{tls_port}\n\
                 ssl_options.cacertfile = {}\nssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\nssl_options.verify = verify_none\n\
                 ssl_options.fail_if_no_peer_cert = false\n",
                path("ca.pem"),
                path("server.pem"),
                path("server.key"),
            ));
            tls_port
        });
        fs::write(dir.path().join("rabbitmq.conf"), conf).expect("writing rabbitmq.conf");
        fs::write(dir.path().join("enabled_plugins"), "[rabbitmq_amqp1_0].\n")
            .expect("writing enabled_plugins");
        fs::create_dir_all(dir.path().join("mnesia")).expect("creating the data dir");
        let envs = [
            ("HOME", path("")),
            (
                "RABBITMQ_NODENAME",
                format!("backbone-test-{port}@localhost"),
            ),
            ("RABBITMQ_CONFIG_FILE", path("rabbitmq")),
            ("RABBITMQ_ADVANCED_CONFIG_FILE", path("advanced.config")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins")),
            ("RABBITMQ_MNESIA_BASE", path("mnesia")),
            ("RABBITMQ_LOG_BASE", path("log")),
            ("RABBITMQ_FEATURE_FLAGS_FILE", path("feature_flags")),
            ("RABBITMQ_PLUGINS_EXPAND_DIR", path("plugins-expand")),
            ("RABBITMQ_PID_FILE", path("pid")),
            ("RABBITMQ_DIST_PORT", dist_port.to_string()),
            ("ERL_EPMD_PORT", epmd_port.to_string()),
            // Run the VM in place of the script, so the child is the node
            // (SIGTERM stops it, SIGKILL kills it).
            ("RUNNING_UNDER_SYSTEMD", "1".to_owned()),
        ];
        let mut broker = Self {
            process: Process {
                program,
                args: Vec::new(),
                envs: envs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
                port,
                log: dir.path().join("rabbitmq.log"),
                child: None,
            },
            epmd_port,
            tls_port,
            dir,
        };
        broker.start();
        broker
    }

    /// The TLS listener's port.
    ///
    /// # Panics
    /// When the node was not started [`RabbitMq::with_tls`].
    pub fn tls_port(&self) -> u16 {
        self.tls_port.expect("a node started with_tls")
    }

    /// The PEM file of the CA that issued the TLS listener's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.process.port)
    }

    /// The listener port (AMQP 0.9.1 and 1.0); the same across restarts.
    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// The node's log so far, for assertion messages.
    pub fn log(&self) -> String {
        self.process.log_text()
    }

    /// The temporary directory holding config, data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the node (again) on the same port and data; waits until it
    /// accepts connections. Does nothing if it runs.
    pub fn start(&mut self) {
        self.process.start(accepts);
    }

    /// Stops the node gracefully (durable queues and persistent messages
    /// survive), keeping port and data.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Kills the node with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Stops gracefully and starts again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }
}

impl Default for RabbitMq {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        self.process.kill9();
        // The node's port mapper daemonized itself: stop it too.
        let _ = Command::new("epmd")
            .arg("-kill")
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A `redis-server` on a free loopback port, persisting to an append-only
/// file in a temporary directory (`appendfsync always`, so a restart or a
/// kill loses nothing Redis replied to).
#[derive(Debug)]
pub struct Redis {
    process: Process,
    dir: TempDir,
}

impl Redis {
    /// Starts a server and waits until it accepts connections.
    ///
    /// # Panics
    /// When no `redis-server` is installed (with an install hint), or it
    /// does not accept connections within a minute.
    pub fn new() -> Self {
        let program = find(
            REDIS_SERVER_BIN,
            &["/usr/bin/redis-server", "/usr/local/bin/redis-server"],
            "redis-server",
            "scripts/ensure-brokers",
        );
        let dir = tempfile::Builder::new()
            .prefix("backbone-redis-")
            .tempdir()
            .expect("creating the server's temp dir");
        let port = free_port();
        let args = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
            &dir.path().display().to_string(),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--daemonize",
            "no",
        ]
        .map(str::to_owned)
        .to_vec();
        let mut server = Self {
            process: Process {
                program,
                args,
                envs: Vec::new(),
                port,
                log: dir.path().join("redis.log"),
                child: None,
            },
            dir,
        };
        server.start();
        server
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.process.port)
    }

    /// The port; the same across restarts.
    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process.log_text()
    }

    /// The temporary directory holding the data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the server (again) on the same port and data.
    pub fn start(&mut self) {
        self.process.start(accepts);
    }

    /// Stops gracefully, keeping port and data.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Stops gracefully and starts again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }
}

impl Default for Redis {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.process.kill9();
    }
}

//! Finding the `nats-server` binary.

use std::{
    env, fmt,
    path::{Path, PathBuf},
};

/// The environment variable naming the `nats-server` binary to use.
pub const NATS_SERVER_BIN: &str = "NATS_SERVER_BIN";

/// Directories searched after `PATH`: where Debian and manual installs put it.
const FALLBACK_DIRS: [&str; 3] = ["/usr/sbin", "/usr/local/bin", "/usr/bin"];

/// No usable `nats-server` binary was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsServerMissing {
    /// The value of `NATS_SERVER_BIN` when it was set but not usable.
    pub configured: Option<PathBuf>,
}

impl fmt::Display for NatsServerMissing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.configured {
            write!(
                f,
                "{NATS_SERVER_BIN}={} is not an executable file; ",
                path.display()
            )?;
        } else {
            write!(
                f,
                "nats-server was not found on PATH or in /usr/sbin, /usr/local/bin; "
            )?;
        }
        write!(
            f,
            "install Debian's package nats-server: apt-get install nats-server, \
             or set {NATS_SERVER_BIN} (scripts/ensure-nats-server does either)"
        )
    }
}

impl std::error::Error for NatsServerMissing {}

/// The `nats-server` binary: `NATS_SERVER_BIN`, else `PATH`, else the usual
/// system directories.
pub fn find_nats_server() -> Result<PathBuf, NatsServerMissing> {
    if let Some(configured) = env::var_os(NATS_SERVER_BIN).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(configured);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(NatsServerMissing {
                configured: Some(path),
            })
        };
    }
    let path_dirs = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(FALLBACK_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| is_executable(candidate))
        .ok_or(NatsServerMissing { configured: None })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_message_tells_how_to_install() {
        let text = NatsServerMissing { configured: None }.to_string();
        assert!(text.contains("apt-get install nats-server"));
        assert!(text.contains(NATS_SERVER_BIN));
    }

    #[test]
    fn directories_are_not_executables() {
        assert!(!is_executable(Path::new("/usr")));
        assert!(!is_executable(Path::new("/nonexistent/nats-server")));
    }
}

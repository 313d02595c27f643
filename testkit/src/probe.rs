//! Readiness probes speaking just enough of the NATS protocol over plain TCP.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The server's INFO line, if it accepts a connection on `port`.
pub(crate) fn server_info(port: u16) -> Option<String> {
    let stream = connect(port)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    line.starts_with("INFO ").then_some(line)
}

/// True when JetStream on `port` answers an account-info request without an
/// error, i.e. it is enabled and (in a cluster) has a meta leader. Only for
/// servers without auth or TLS.
pub(crate) fn jetstream_answers(port: u16) -> bool {
    let Some(stream) = connect(port) else {
        return false;
    };
    let Ok(mut writer) = stream.try_clone() else {
        return false;
    };
    let mut reader = BufReader::new(stream);
    let request = "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n\
                   SUB _PROBE.reply 1\r\n\
                   PUB $JS.API.INFO _PROBE.reply 0\r\n\r\n";
    if writer.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return false;
        }
        if line.starts_with("PING") {
            let _ = writer.write_all(b"PONG\r\n");
        }
        if line.starts_with("HMSG ") || line.starts_with("MSG ") {
            let Some(len) = line
                .split_whitespace()
                .last()
                .and_then(|n| n.parse::<usize>().ok())
            else {
                return false;
            };
            let mut body = vec![0; len + 2];
            if reader.read_exact(&mut body).is_err() {
                return false;
            }
            let body = String::from_utf8_lossy(&body);
            return !body.contains("\"error\"") && !body.contains("503");
        }
    }
    false
}

fn connect(port: u16) -> Option<TcpStream> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT)).ok()?;
    Some(stream)
}

/// Polls `ready` every 20 ms until it holds or `timeout` passes.
pub(crate) fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

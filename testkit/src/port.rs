//! Free loopback ports for test servers.

use std::net::TcpListener;

/// An unused TCP port on 127.0.0.1.
///
/// The port is found by binding port 0 and releasing it, so another process
/// could take it before the caller binds it; on a test machine that race is
/// rare enough, and servers started with it fail loudly rather than silently.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("binding an ephemeral loopback port")
}

#[cfg(test)]
mod tests {
    use super::free_port;

    #[test]
    fn free_ports_are_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("port is free");
    }
}

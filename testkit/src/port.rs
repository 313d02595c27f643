//! Free loopback ports for test servers.

use std::{
    net::TcpListener,
    sync::atomic::{AtomicU64, Ordering},
    time::SystemTime,
};

/// An unused TCP port on 127.0.0.1, below the kernel's ephemeral range.
///
/// Ports are tried at random below the range the kernel hands out for
/// outgoing connections (`ip_local_port_range`), so no client connection of
/// a concurrent test (each JetStream consumer opens one more) can be given
/// the port between this check and the server binding it. Another test
/// picking the same port is the remaining race, made rare by the random
/// choice; a server started on a taken port fails loudly, never silently.
pub fn free_port() -> u16 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let (low, high) = (10_000u64, u64::from(ephemeral_floor()).max(10_001));
    let mut state = u64::from(std::process::id())
        ^ SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
        ^ CALLS
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for _ in 0..200 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let port = u16::try_from(low + (state >> 33) % (high - low)).unwrap_or(0);
        if port != 0 && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("binding an ephemeral loopback port")
}

/// The first port of the kernel's ephemeral range (32768 when unknown).
fn ephemeral_floor() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

#[cfg(test)]
mod tests {
    use super::free_port;

    #[test]
    fn free_ports_lie_below_the_ephemeral_range() {
        for _ in 0..50 {
            assert!(free_port() < super::ephemeral_floor());
        }
    }

    #[test]
    fn free_ports_are_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("port is free");
    }
}

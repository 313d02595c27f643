//! Resident memory of this process, from /proc/self.

/// Current resident set, MiB.
pub(crate) fn current_mib() -> f64 {
    status_kib("VmRSS").map_or(0.0, kib_to_mib)
}

/// Peak resident set since the process started (VmHWM), MiB.
pub(crate) fn peak_mib() -> f64 {
    status_kib("VmHWM").map_or(0.0, kib_to_mib)
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_follows_allocations() {
        assert!(current_mib() > 0.0);
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let peak = peak_mib();
        assert!(peak >= 64.0, "peak {peak}");
        drop(block);
        assert!(peak_mib() >= peak, "the peak stays after a free");
    }
}

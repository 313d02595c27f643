//! Resident memory of this process, from /proc/self.
//!
//! The peak (VmHWM) is reset before each measured rebuild by writing `5` to
//! /proc/self/clear_refs (Linux >= 4.0), so earlier scenarios do not leak
//! into the figure and one process can measure several log sizes.

/// Resets the peak resident set to the current one. Returns false where the
/// kernel does not allow it; the peak then covers the whole process life.
pub(crate) fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Current resident set, MiB.
pub(crate) fn current_mib() -> f64 {
    status_kib("VmRSS").map_or(0.0, kib_to_mib)
}

/// Peak resident set since start or the last [`reset_peak`], MiB.
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
    fn peak_follows_allocations_and_resets() {
        assert!(current_mib() > 0.0);
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let peak = peak_mib();
        assert!(peak >= 64.0, "peak {peak}");
        drop(block);
        if reset_peak() {
            assert!(peak_mib() < peak, "peak not reset");
        }
    }
}

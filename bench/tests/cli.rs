//! The `backbone-bench` binary: its help, and arguments that make no run.

use std::process::Command;

#[test]
fn help_lists_the_options_and_zero_events_is_a_usage_error() {
    let bench = env!("CARGO_BIN_EXE_backbone-bench");
    let help = Command::new(bench).arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("--nats-server-always"), "{text}");
    assert!(text.contains("--nats-url"), "{text}");
    let out = Command::new(bench)
        .args(["--events", "0", "--out-dir", "/nonexistent/never-written"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

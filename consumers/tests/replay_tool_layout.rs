//! The service and `replay-tool` share one data-dir layout: the service
//! binary run on `<dir>` (no `[backend]` table: the embedded log in
//! `<dir>/log`, stores in `<dir>/read-models/<name>`), then
//! `replay-tool --data-dir <dir>` reports everything as locked while it
//! runs (exit 5), and after SIGTERM finds the service's read models in
//! `status` and rebuilds one in place.
//!
//! `replay-tool` is the binary of the sibling package, found next to this
//! test's target directory: `cargo test -p backbone-consumers -p replay-tool`
//! builds both.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

fn replay_tool() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join("replay-tool");
    assert!(
        path.exists(),
        "{} is missing: run `cargo test -p backbone-consumers -p replay-tool` (or build replay-tool first)",
        path.display()
    );
    path
}

fn replay(data: &Path, args: &[&str]) -> Output {
    Command::new(replay_tool())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("BACKBONE_CONFIG")
        .env_remove("BACKBONE_NATS_URL")
        .env_remove("BACKBONE_DATA_DIR")
        .output()
        .unwrap()
}

fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn spawn_service(dir: &Path, data: &Path) -> Child {
    let config = dir.join("consumer.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\nmodels = [\"billing\", \"audit\"]\nfetch_wait = \"100ms\"\n\
             ack_wait = \"1s\"\ngrace_time = \"10s\"\n"
        ),
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_backbone-consumer"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the service has opened the read-model stores (they exist
/// and are locked), which it does before consuming.
fn wait_until_running(data: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let billing = data.join("read-models").join("billing");
        if billing.exists() && backbone_consumers::ProjectionStore::open(&billing).is_err() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the service never opened its stores"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn replay_tool_finds_the_service_stores_and_reports_them_locked_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (i, amount) in [100, 250].iter().enumerate() {
        let json = format!(
            "{{\"paymentId\":\"p-{i}\",\"userId\":\"u-1\",\"amountMinor\":{amount},\"currency\":\"USD\"}}"
        );
        assert_exit(
            &replay(
                &data,
                &["publish", "--type", "payment.received", "--json", &json],
            ),
            0,
        );
    }

    let mut service = spawn_service(dir.path(), &data);
    wait_until_running(&data);
    // Let the service apply both events before it is stopped.
    std::thread::sleep(Duration::from_millis(1500));
    let status = replay(&data, &["status"]);
    assert_exit(&status, 5);
    let rebuild = replay(&data, &["rebuild", "billing"]);
    assert_exit(&rebuild, 5);
    assert!(
        String::from_utf8_lossy(&rebuild.stderr).contains("store locked"),
        "{}",
        String::from_utf8_lossy(&rebuild.stderr)
    );

    let term = Command::new("kill")
        .arg("-TERM")
        .arg(service.id().to_string())
        .status()
        .unwrap();
    assert!(term.success());
    let exit = service.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "the service stops cleanly on SIGTERM");
    assert!(
        data.join("log").is_dir(),
        "the embedded log is <data-dir>/log"
    );

    let status = replay(&data, &["--output", "json", "status"]);
    assert_exit(&status, 0);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let models = status["read_models"].as_array().unwrap();
    let row = |name: &str| {
        models
            .iter()
            .find(|m| m["read_model"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(row("billing")["checkpoint"], 2, "{status}");
    assert_eq!(row("audit")["checkpoint"], 2, "{status}");
    assert_eq!(row("inbox")["state"], "absent");

    let rebuild = replay(
        &data,
        &["--output", "json", "rebuild", "billing", "--verify"],
    );
    assert_exit(&rebuild, 0);
}

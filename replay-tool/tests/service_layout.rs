//! The server and `replay-tool` share one data-dir layout: the
//! server run on `<dir>` (no `[backend]` table: the embedded log in
//! `<dir>/log`, stores in `<dir>/read-models/<name>`), then
//! `replay-tool --data-dir <dir> status` answers through the server while
//! it runs (its discovery file is in the data dir), so do `rebuild`
//! (the server rebuilds and swaps), `tail` and `audit`, and after the server stops `status`
//! reads the data dir itself and `rebuild` rebuilds in place.
//!
//! The server runs in this test's process (`backbone_server::Server`, what
//! the `backbone-server` binary runs); `replay-tool` is this package's
//! binary, a process of its own.

use std::{
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use backbone_consumers::{Metrics, shutdown_channel};
use backbone_server::{Server, ServerConfig};

fn replay(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_replay-tool"))
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

fn service_config(data: &Path) -> ServerConfig {
    ServerConfig::from_toml(&format!(
        "data_dir = {data:?}\nmodels = [\"billing\", \"audit\"]\nfetch_wait = \"100ms\"\n\
         ack_wait = \"1s\"\ngrace_time = \"10s\"\n[http]\nlisten = \"127.0.0.1:0\"\n"
    ))
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

/// Runs `replay-tool` off the runtime's threads, so the service keeps
/// running while the child waits on its stores.
async fn replay_async(data: &Path, args: &[&str]) -> Output {
    let data = data.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        replay(&data, &args)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_tool_finds_the_service_stores_and_reports_them_locked_while_it_runs() {
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

    let config = service_config(&data);
    let broker = config.connect().await.unwrap();
    let (trigger, shutdown) = shutdown_channel();
    let server = Server::start(&config, broker, Metrics::new())
        .await
        .unwrap();
    let service = tokio::spawn(server.run(shutdown));
    let wait_data = data.clone();
    tokio::task::spawn_blocking(move || wait_until_running(&wait_data))
        .await
        .unwrap();
    // Let the service apply both events before it is stopped.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = replay_async(&data, &["--output", "json", "status"]).await;
    assert_exit(&status, 0);
    let through_server: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let billing = through_server["read_models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["read_model"] == "billing")
        .unwrap();
    assert_eq!(billing["state"], "ok", "{through_server}");
    assert_eq!(billing["checkpoint"], 2, "{through_server}");
    assert!(
        through_server["streams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["stream"] == "EVENTS" && s["last_seq"] == 2),
        "{through_server}"
    );
    // The server rebuilds what it runs; flags that need the data
    // directory are refused.
    let rebuild = replay_async(
        &data,
        &["--output", "json", "rebuild", "billing", "--verify"],
    )
    .await;
    assert_exit(&rebuild, 0);
    let rebuilt: serde_json::Value = serde_json::from_slice(&rebuild.stdout).unwrap();
    assert_eq!(rebuilt["checkpoint"], 2, "{rebuilt}");
    assert_eq!(rebuilt["verified"], true, "{rebuilt}");
    let refused = replay_async(&data, &["rebuild", "billing", "--to-seq", "1"]).await;
    assert_exit(&refused, i32::from(replay_tool::exit::USAGE));
    // tail and audit read the log through the server, as they print it
    // from the data directory.
    let audit = replay_async(
        &data,
        &[
            "--output",
            "json",
            "audit",
            "--type",
            "payment.received",
            "--where",
            "amount_minor>100",
        ],
    )
    .await;
    assert_exit(&audit, 0);
    let found: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    let tail = replay_async(
        &data,
        &["--output", "ndjson", "tail", "--last", "1", "--no-follow"],
    )
    .await;
    assert_exit(&tail, 0);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&tail.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["seq"], 2, "{lines:?}");

    trigger.trigger();
    let reports = service.await.unwrap().unwrap();
    assert_eq!(reports.len(), 2, "billing and audit stop cleanly");
    assert!(
        data.join("log").is_dir(),
        "the embedded log is <data-dir>/log"
    );
    assert!(
        !data.join(backbone_server::DISCOVERY_FILE).exists(),
        "a stopped server leaves no discovery file"
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

/// `--server` with the server's tokens: the admin token reads the status,
/// no token or one without admin scope is refused (exit 3, bad input), and
/// an unreachable server is exit 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_through_a_server_needs_an_admin_token() {
    use sha2::{Digest as _, Sha256};
    let hash = |t: &str| -> String {
        Sha256::digest(t)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = ServerConfig::from_toml(&format!(
        "data_dir = {data:?}\nmodels = [\"billing\"]\nfetch_wait = \"100ms\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [[tokens]]\nname = \"ops\"\nsha256 = \"{}\"\nadmin = true\n\
         [[tokens]]\nname = \"billing\"\nsha256 = \"{}\"\nread = [\"billing\"]\n",
        hash("ops-token"),
        hash("billing-token"),
    ))
    .unwrap();
    let broker = config.connect().await.unwrap();
    let server = Server::start(&config, broker, Metrics::new())
        .await
        .unwrap();
    let url = format!("http://{}", server.local_addr());
    let (trigger, shutdown) = shutdown_channel();
    let running = tokio::spawn(server.run(shutdown));
    let status = |token: Option<&'static str>, url: String| {
        let data = data.clone();
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["--server".to_owned(), url, "--output".into(), "json".into()];
            if let Some(t) = token {
                args.extend(["--token".into(), t.into()]);
            }
            args.push("status".into());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            replay(&data, &args)
        })
    };
    let ok = status(Some("ops-token"), url.clone()).await.unwrap();
    assert_exit(&ok, 0);
    let report: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert!(report["read_models"].is_array(), "{report}");
    assert_exit(&status(None, url.clone()).await.unwrap(), 3);
    assert_exit(
        &status(Some("billing-token"), url.clone()).await.unwrap(),
        3,
    );
    trigger.trigger();
    running.await.unwrap().unwrap();
    assert_exit(&status(Some("ops-token"), url).await.unwrap(), 4);
}

/// `dlq list` and `dlq purge` on a data directory a running server holds
/// go through the server's admin routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_goes_through_the_server_that_holds_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A refund of an unknown payment: billing dead-letters it.
    let refund = "{\"refundId\":\"r-1\",\"paymentId\":\"p-404\",\"userId\":\"u-1\",\"amountMinor\":\"5\",\"currency\":\"EUR\"}";
    assert_exit(
        &replay(
            &data,
            &["publish", "--type", "payment.refunded", "--json", refund],
        ),
        0,
    );
    let config = service_config(&data);
    let broker = config.connect().await.unwrap();
    let server = Server::start(&config, broker, Metrics::new())
        .await
        .unwrap();
    let (trigger, shutdown) = shutdown_channel();
    let running = tokio::spawn(server.run(shutdown));
    let deadline = Instant::now() + Duration::from_secs(20);
    let letters = loop {
        let list = replay_async(&data, &["--output", "json", "dlq", "list"]).await;
        assert_exit(&list, 0);
        let letters: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
        if letters.as_array().is_some_and(|l| !l.is_empty()) {
            break letters;
        }
        assert!(Instant::now() < deadline, "no dead letter: {letters}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(letters[0]["consumer"], "billing", "{letters}");
    let purge = replay_async(&data, &["dlq", "purge", "--consumer", "billing"]).await;
    assert_exit(&purge, 0);
    assert!(
        String::from_utf8_lossy(&purge.stdout).contains("purged 1"),
        "{}",
        String::from_utf8_lossy(&purge.stdout)
    );
    trigger.trigger();
    running.await.unwrap().unwrap();
}

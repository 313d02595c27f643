//! The demo and the operator commands against a real nats-server 2.9+.

mod common;

use backbone_testkit::NatsServer;
use common::*;

#[test]
fn demo_passes_against_nats_server() {
    let server = NatsServer::new();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = run(&[
        "--nats-url",
        &url,
        "--data-dir",
        d,
        "demo",
        "--events",
        "2000",
    ]);
    assert_code(&out, exit::SUCCESS);
    assert!(out.stdout.contains("verification: OK"), "{}", out.stdout);

    let status = run(&[
        "--nats-url",
        &url,
        "--data-dir",
        d,
        "--output",
        "json",
        "status",
    ]);
    assert_code(&status, exit::SUCCESS);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["dead_letters"], 5);

    let audit = run(&[
        "--nats-url",
        &url,
        "--output",
        "ndjson",
        "audit",
        "--type",
        "payment.refunded",
        "--where",
        "amount_minor>10000",
    ]);
    assert_code(&audit, exit::SUCCESS);
    assert_eq!(audit.stdout.lines().count(), 5);

    let tail = run(&[
        "--nats-url",
        &url,
        "--output",
        "ndjson",
        "tail",
        "--no-follow",
        "--last",
        "3",
    ]);
    assert_code(&tail, exit::SUCCESS);
    assert_eq!(tail.stdout.lines().count(), 3);

    let dlq = run(&["--nats-url", &url, "--output", "ndjson", "dlq", "list"]);
    assert_eq!(dlq.stdout.lines().count(), 5);
}

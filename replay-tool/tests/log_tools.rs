//! The demo on the embedded log, and the commands that work on its result:
//! status, audit, dead letters, rebuild.

mod common;

use common::*;

#[test]
fn demo_verifies_and_leaves_a_log_for_the_other_commands() {
    let dir = demo_dir();
    let d = dir.path();

    let status = run_in(d, &["--output", "json", "status"]);
    assert_code(&status, exit::SUCCESS);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["dead_letters"], 5);
    assert_eq!(status["read_models"].as_array().unwrap().len(), 5);
    assert!(
        status["consumers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["lag"] == 0)
    );

    // Deterministic: seed 42 publishes the same ids, times and payloads.
    let audit = run_in(d, &["audit", "--key", "u-3", "--type", "payment.received"]);
    assert_code(&audit, exit::SUCCESS);
    assert!(audit.stderr.contains("audit index"), "{}", audit.stderr);
    assert_snapshot("audit_u3_payments.txt", &audit.stdout);

    dead_letters(d);
    rebuilds(d);
}

fn dead_letters(d: &std::path::Path) {
    let list = run_in(d, &["--output", "ndjson", "dlq", "list"]);
    assert_code(&list, exit::SUCCESS);
    let letters: Vec<serde_json::Value> = list
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 5);
    assert!(letters.iter().all(|l| l["consumer"] == "demo-billing"));
    assert!(
        letters[0]["error"]
            .as_str()
            .unwrap()
            .contains("unknown payment")
    );

    let show = run_in(d, &["dlq", "show", "1"]);
    assert_code(&show, exit::SUCCESS);
    let shown: serde_json::Value = serde_json::from_str(&show.stdout).unwrap();
    assert_eq!(shown["event"]["type"], "payment.refunded");
    assert_eq!(shown["event"]["stream"], "EVENTS");
    assert_eq!(shown["event"]["seq"].as_str().map(str::to_owned), None);
    assert_eq!(
        shown["event"]["seq"],
        letters[0]["original_seq"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    );
    assert_code(&run_in(d, &["dlq", "show", "999"]), exit::NOT_FOUND);

    // The original id is kept, so within the duplicate window a redrive is
    // deduplicated and reported, and nothing is appended.
    let before = run_in(d, &["--output", "json", "status"]);
    let redrive = run_in(d, &["dlq", "redrive", "1"]);
    assert_code(&redrive, exit::FAILURE);
    assert!(redrive.stdout.contains("duplicate"), "{}", redrive.stdout);
    let after = run_in(d, &["--output", "json", "status"]);
    let last = |s: &Run| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(&s.stdout).unwrap()["streams"][1]["last_seq"]
            .clone()
    };
    assert_eq!(last(&before), last(&after));

    let purge = run_in(d, &["dlq", "purge", "--consumer", "nobody"]);
    assert_code(&purge, exit::SUCCESS);
    assert!(purge.stdout.contains("purged 0"));
    let purge = run_in(d, &["dlq", "purge"]);
    assert_code(&purge, exit::SUCCESS);
    assert!(purge.stdout.contains("purged 5"), "{}", purge.stdout);
    let list = run_in(d, &["--output", "ndjson", "dlq", "list"]);
    assert_eq!(list.stdout, "");
}

fn rebuilds(d: &std::path::Path) {
    let verify = run_in(d, &["rebuild", "billing", "--verify"]);
    assert_code(&verify, exit::SUCCESS);
    assert!(
        verify.stdout.contains("matches the live digest"),
        "{}",
        verify.stdout
    );

    let dry = run_in(
        d,
        &[
            "--output",
            "json",
            "rebuild",
            "gallery",
            "--dry-run",
            "--from-seq",
            "100",
            "--to-seq",
            "300",
        ],
    );
    assert_code(&dry, exit::SUCCESS);
    let plan: serde_json::Value = serde_json::from_str(&dry.stdout).unwrap();
    assert_eq!(
        (
            plan["from_seq"].clone(),
            plan["to_seq"].clone(),
            plan["events"].clone()
        ),
        (100.into(), 300.into(), 201.into())
    );
    assert!(
        !d.join("read-models/gallery.rebuild").exists(),
        "a dry run leaves no shadow"
    );

    // An interrupted rebuild leaves its shadow; the next run resumes from its
    // checkpoint (here: a shadow already at the end, so nothing is left).
    copy_dir(
        &d.join("read-models/inbox"),
        &d.join("read-models/inbox.rebuild"),
    );
    let dry = run_in(d, &["--output", "json", "rebuild", "inbox", "--dry-run"]);
    let plan: serde_json::Value = serde_json::from_str(&dry.stdout).unwrap();
    assert_eq!(plan["resumes_interrupted_rebuild"], true);
    let resumed = run_in(d, &["rebuild", "inbox"]);
    assert_code(&resumed, exit::SUCCESS);
    assert!(resumed.stderr.contains("resuming"), "{}", resumed.stderr);
    assert!(!d.join("read-models/inbox.rebuild").exists());

    let partial = run_in(
        d,
        &[
            "rebuild",
            "notifications",
            "--from-time",
            "2025-06-01T12:00:00Z",
        ],
    );
    assert_code(&partial, exit::SUCCESS);
    // The shadow of a partial rebuild holds its start checkpoint before any
    // state: the audit model (key layout 2) must still claim it.
    assert_code(
        &run_in(d, &["rebuild", "audit", "--from-seq", "100"]),
        exit::SUCCESS,
    );

    assert_code(&run_in(d, &["rebuild", "nope"]), exit::BAD_INPUT);
    assert_code(
        &run_in(
            d,
            &["rebuild", "audit", "--from-seq", "10", "--to-seq", "5"],
        ),
        exit::BAD_INPUT,
    );
    assert_code(
        &run_in(d, &["rebuild", "audit", "--from-time", "noon"]),
        exit::BAD_INPUT,
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn demo_rejects_zero_events() {
    let dir = tempfile::tempdir().unwrap();
    assert_code(
        &run_in(dir.path(), &["demo", "--events", "0"]),
        exit::BAD_INPUT,
    );
}

#[test]
fn redrive_appends_the_original_event_once_the_duplicate_window_passed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let plan = d.join("short-window.toml");
    std::fs::write(
        &plan,
        "[[streams]]\nname = \"EVENTS\"\nsubjects = [\"events.>\"]\nduplicate_window = \"1s\"\n\
         deny_delete = true\ndeny_purge = true\n",
    )
    .unwrap();
    assert_code(
        &run_in(d, &["provision", plan.to_str().unwrap()]),
        exit::SUCCESS,
    );
    assert_code(&run_in(d, &["demo", "--events", "2000"]), exit::SUCCESS);
    std::thread::sleep(std::time::Duration::from_millis(1500));

    let shown = run_in(d, &["dlq", "show", "1"]);
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    let redrive = run_in(d, &["--output", "ndjson", "dlq", "redrive", "1"]);
    assert_code(&redrive, exit::SUCCESS);
    let outcome: serde_json::Value = serde_json::from_str(redrive.stdout.trim()).unwrap();
    assert_eq!(outcome["new_seq"], 2001);
    assert_eq!(outcome["outcome"], "redriven");

    let tail = run_in(
        d,
        &["--output", "ndjson", "tail", "--no-follow", "--last", "1"],
    );
    let event: serde_json::Value = serde_json::from_str(tail.stdout.trim()).unwrap();
    assert_eq!(event["seq"], 2001);
    assert_eq!(event["id"], shown["event"]["id"], "the event keeps its id");
    assert_eq!(event["data"], shown["event"]["data"]);
    assert_eq!(outcome["consumer"], shown["letter"]["consumer"]);
    // Redriving it again right away is deduplicated: nothing is appended,
    // and the message says how long to wait.
    let again = run_in(d, &["dlq", "redrive", "1"]);
    assert_code(&again, exit::FAILURE);
    assert!(
        again.stderr.contains("duplicate window (1s)"),
        "{}",
        again.stderr
    );
    assert_redrive_headers(d, 2001, shown["letter"]["consumer"].as_str().unwrap());
}

/// The redriven entry carries the event's own headers plus the two routing
/// headers, and no `Backbone-Dlq-*` header.
fn assert_redrive_headers(d: &std::path::Path, seq: u64, consumer: &str) {
    use backbone_broker::{Backend, embedded::EmbeddedOptions};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let backend = Backend::Embedded(EmbeddedOptions {
            path: d.join("log"),
            ..Default::default()
        });
        let broker = backend.connect().await.unwrap();
        let entry = broker.get("EVENTS", seq).await.unwrap();
        let h = &entry.headers;
        assert_eq!(h.get("Backbone-Redrive-Consumer"), Some(consumer));
        assert_eq!(h.get("Backbone-Redrive-Of"), Some("1"));
        assert_eq!(h.get("Nats-Msg-Id"), h.get("ce-id"));
        assert!(h.iter().all(|(name, _)| !name.starts_with("Backbone-Dlq-")));
        broker.close().await.unwrap();
    });
}

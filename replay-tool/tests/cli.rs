//! The CLI surface: arguments, configuration, exit codes, and the commands
//! that need no prepared log (publish, tail, audit, provision, schemas).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

const FOLLOW: &str = r#"{"type":"user.followed","data":{"followerId":"u-1","followeeId":"u-2"},"source":"test","correlation_id":"c-1"}"#;
const PAYMENT: &str = r#"{"type":"payment.received","data":{"paymentId":"p-1","userId":"u-1","amountMinor":"15000","currency":"USD"}}"#;

#[test]
fn long_help_lists_the_exit_codes_and_precedence() {
    let out = run(&["--help"]);
    assert_code(&out, exit::SUCCESS);
    for needle in [
        "Exit codes:",
        "3  bad input",
        "5  store locked",
        "flags > BACKBONE_*",
    ] {
        assert!(
            out.stdout.contains(needle),
            "{needle} missing from:\n{}",
            out.stdout
        );
    }
}

#[test]
fn bad_arguments_exit_2() {
    assert_code(&run(&["tail", "--from-seq", "abc"]), exit::USAGE);
    assert_code(&run(&["no-such-command"]), exit::USAGE);
    assert_code(&run(&["--output", "xml", "status"]), exit::USAGE);
    assert_code(&run(&["dlq", "redrive"]), exit::USAGE);
}

#[test]
fn csv_output_is_refused_outside_audit() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &["--output", "csv", "status"]);
    assert_code(&out, exit::USAGE);
    assert!(out.stderr.contains("`audit` only"), "{}", out.stderr);
}

#[test]
fn config_file_fills_options_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-file");
    let config = dir.path().join("backbone.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\noutput = \"json\"\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = run_with_stdin(&["--config", config.to_str().unwrap(), "publish"], FOLLOW);
    assert_code(&out, exit::SUCCESS);
    assert!(
        out.stdout.trim_start().starts_with('['),
        "json output: {}",
        out.stdout
    );
    assert!(data.join("log").exists(), "the file's data dir was used");
    // The environment overrides the file, the flag overrides the environment.
    let env_dir = dir.path().join("from-env");
    // Two events there, one in the file's data dir: status tells them apart.
    for _ in 0..2 {
        let seeded = run_with_stdin(
            &["--data-dir", env_dir.to_str().unwrap(), "publish"],
            FOLLOW,
        );
        assert_code(&seeded, exit::SUCCESS);
    }
    let out: Run = command(&[
        "--config",
        config.to_str().unwrap(),
        "--output",
        "ndjson",
        "status",
    ])
    .env("BACKBONE_DATA_DIR", &env_dir)
    .output()
    .unwrap()
    .into();
    assert_code(&out, exit::SUCCESS);
    assert!(env_dir.join("log").exists());
    assert!(out.stdout.starts_with('{'));
    assert!(out.stdout.contains("\"messages\":2"), "{}", out.stdout);
}

#[test]
fn bad_config_file_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "data_dri = 1\n").unwrap();
    assert_code(
        &run(&["--config", config.to_str().unwrap(), "status"]),
        exit::BAD_INPUT,
    );
    assert_code(
        &run(&["--config", "/no/such/file.toml", "status"]),
        exit::BAD_INPUT,
    );
}

#[test]
fn publish_then_tail_round_trips_with_filters() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(
        dir.path(),
        &[
            "publish",
            "--type",
            "payment.received",
            "--json",
            r#"{"paymentId":"p-0","userId":"u-9","amountMinor":"100","currency":"EUR"}"#,
        ],
    );
    assert_code(&out, exit::SUCCESS);
    assert!(out.stdout.contains("events.payment.received.u-9"));
    let input = format!("{FOLLOW}\n\n{PAYMENT}\n");
    let mut args = vec![
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--output",
        "ndjson",
        "publish",
    ];
    let out = run_with_stdin(&args, &input);
    assert_code(&out, exit::SUCCESS);
    let seqs: Vec<u64> = out
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, vec![2, 3]);

    args.truncate(4);
    args.extend(["tail", "--no-follow", "--type", "user.followed"]);
    let out = run(&args);
    assert_code(&out, exit::SUCCESS);
    let event: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(event["data"]["followeeId"], "u-2");
    assert_eq!(event["correlation_id"], "c-1");
    assert_eq!(event["source"], "test");

    let out = run_in(dir.path(), &["tail", "--no-follow", "--last", "1"]);
    assert_code(&out, exit::SUCCESS);
    assert_eq!(out.stdout.lines().count(), 1);
    assert!(out.stdout.contains("payment.received"));
    let out = run_in(
        dir.path(),
        &[
            "tail",
            "--no-follow",
            "--key",
            "u-1",
            "--subject",
            "events.user.>",
        ],
    );
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.stdout);
}

#[test]
fn bad_publish_input_names_every_bad_line_and_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = format!(
        "{FOLLOW}\nnot json\n{}\n{}\n{}\n",
        r#"{"type":"user.exploded","data":{}}"#,
        r#"{"type":"user.followed","data":{"followerId":"a.b","followeeId":"u-2"}}"#,
        r#"{"type":"user.followed","data":{"nope":1}}"#,
    );
    let out = run_with_stdin(
        &["--data-dir", dir.path().to_str().unwrap(), "publish"],
        &input,
    );
    assert_code(&out, exit::BAD_INPUT);
    for line in ["line 2", "line 3", "line 4", "line 5"] {
        assert!(out.stderr.contains(line), "{line} missing:\n{}", out.stderr);
    }
    assert!(!out.stderr.contains("line 1:"));
    assert!(out.stderr.contains("nothing was published"));
    // Not even the event log was created.
    let tail = run_in(dir.path(), &["tail", "--no-follow"]);
    assert_code(&tail, exit::NOT_FOUND);
    assert_eq!(tail.stdout, "");
    assert_code(
        &run_in(
            dir.path(),
            &["publish", "--type", "user.followed", "--json", "{"],
        ),
        exit::BAD_INPUT,
    );
    assert_code(
        &run_in(
            dir.path(),
            &["publish", "--type", "nope.nope", "--json", "{}"],
        ),
        exit::BAD_INPUT,
    );
}

#[test]
fn audit_filters_by_predicates_and_prints_csv() {
    let dir = tempfile::tempdir().unwrap();
    let input = format!(
        "{PAYMENT}\n{}\n{FOLLOW}\n",
        r#"{"type":"payment.received","data":{"paymentId":"p-2","userId":"u-1","amountMinor":"500","currency":"USD"},"source":"shop"}"#
    );
    assert_code(
        &run_with_stdin(
            &["--data-dir", dir.path().to_str().unwrap(), "publish"],
            &input,
        ),
        exit::SUCCESS,
    );
    let out = run_in(
        dir.path(),
        &[
            "--output",
            "csv",
            "audit",
            "--key",
            "u-1",
            "--where",
            "amount_minor>10000",
        ],
    );
    assert_code(&out, exit::SUCCESS);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "seq,time,type,key,source,correlation_id,id,data");
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert!(lines[1].starts_with("1,"));
    let out = run_in(
        dir.path(),
        &["--output", "ndjson", "audit", "--source", "shop"],
    );
    assert_eq!(out.stdout.lines().count(), 1);
    let out = run_in(
        dir.path(),
        &[
            "--output",
            "ndjson",
            "audit",
            "--type",
            "payment.received",
            "--where",
            "currency~SD",
            "--where",
            "amount_minor<=500",
        ],
    );
    assert_eq!(out.stdout.lines().count(), 1);
    assert_code(
        &run_in(dir.path(), &["audit", "--where", "amount"]),
        exit::BAD_INPUT,
    );
    assert_code(
        &run_in(dir.path(), &["audit", "--where", "amount_minor>>5"]),
        exit::BAD_INPUT,
    );
    assert_code(
        &run_in(dir.path(), &["audit", "--since", "yesterday"]),
        exit::BAD_INPUT,
    );
    assert_code(
        &run_in(dir.path(), &["audit", "--key", "a b"]),
        exit::BAD_INPUT,
    );
    assert_code(
        &run_in(dir.path(), &["audit", "--type", "user.exploded"]),
        exit::BAD_INPUT,
    );
}

#[test]
fn provision_shows_the_diff_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/provision.toml");
    let dry = run_in(dir.path(), &["provision", "--dry-run", example]);
    assert_code(&dry, exit::SUCCESS);
    assert!(dry.stdout.contains("create"), "{}", dry.stdout);
    let first = run_in(dir.path(), &["provision", example]);
    assert_code(&first, exit::SUCCESS);
    assert!(first.stdout.contains("created"));
    let second = run_in(dir.path(), &["provision", example]);
    assert_code(&second, exit::SUCCESS);
    assert!(
        second.stdout.contains("unchanged") && second.stdout.contains("bound"),
        "{}",
        second.stdout
    );
    assert!(!second.stdout.contains("created"));

    let changed = dir.path().join("changed.toml");
    let text = std::fs::read_to_string(example).unwrap().replacen(
        "duplicate_window = \"2m\"",
        "duplicate_window = \"1m\"",
        1,
    );
    std::fs::write(&changed, text).unwrap();
    let diff = run_in(
        dir.path(),
        &["provision", "--dry-run", changed.to_str().unwrap()],
    );
    assert_code(&diff, exit::SUCCESS);
    assert!(
        diff.stdout.contains("duplicate_window: 2m -> 1m"),
        "{}",
        diff.stdout
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[streams]]\nname = \"X\"\nsubjectz = []\n").unwrap();
    assert_code(
        &run_in(dir.path(), &["provision", bad.to_str().unwrap()]),
        exit::BAD_INPUT,
    );
}

#[test]
fn schemas_list_matches_its_snapshot_and_the_lock_checks() {
    let out = run(&["schemas", "list"]);
    assert_code(&out, exit::SUCCESS);
    assert_snapshot("schemas_list.txt", &out.stdout);
    let dir = tempfile::tempdir().unwrap();
    let snapshot = run(&["schemas", "snapshot"]);
    assert_code(&snapshot, exit::SUCCESS);
    let lock = dir.path().join("schema.lock.json");
    std::fs::write(&lock, &snapshot.stdout).unwrap();
    let ok = run(&["schemas", "check", "--lock", lock.to_str().unwrap()]);
    assert_code(&ok, exit::SUCCESS);
    assert!(ok.stdout.contains("match the lock"), "{}", ok.stdout);
    let renumbered = snapshot.stdout.replacen(
        r#"{"number":7,"name":"pipeline""#,
        r#"{"number":17,"name":"pipeline""#,
        1,
    );
    assert_ne!(renumbered, snapshot.stdout);
    std::fs::write(&lock, renumbered).unwrap();
    let breaking = run(&[
        "--output",
        "json",
        "schemas",
        "check",
        "--lock",
        lock.to_str().unwrap(),
    ]);
    assert_code(&breaking, exit::FAILURE);
    let verdict: serde_json::Value = serde_json::from_str(&breaking.stdout).unwrap();
    assert_eq!(verdict["status"], "breaking");
    assert_code(
        &run(&["schemas", "check", "--lock", "/no/such/lock.json"]),
        exit::NOT_FOUND,
    );
    let bad = dir.path().join("lock.json");
    std::fs::write(&bad, "{oops").unwrap();
    assert_code(
        &run(&["schemas", "check", "--lock", bad.to_str().unwrap()]),
        exit::BAD_INPUT,
    );
}

#[test]
fn a_log_held_by_another_process_is_reported_as_locked() {
    let dir = tempfile::tempdir().unwrap();
    assert_code(
        &run_with_stdin(
            &["--data-dir", dir.path().to_str().unwrap(), "publish"],
            FOLLOW,
        ),
        exit::SUCCESS,
    );
    let mut holder = command(&["--data-dir", dir.path().to_str().unwrap(), "tail"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The follower prints the one event once it holds the log.
    let mut stdout = holder.stdout.take().unwrap();
    let mut buf = [0u8; 1];
    std::io::Read::read_exact(&mut stdout, &mut buf).unwrap();
    let started = Instant::now();
    let out = run_in(dir.path(), &["status"]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_code(&out, exit::LOCKED);
    assert!(out.stderr.contains("locked"), "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(30), "no hang");
}

#[test]
fn unreachable_nats_is_broker_unavailable() {
    let port = backbone_testkit::free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let out = run(&["--nats-url", &url, "status"]);
    assert_code(&out, exit::UNAVAILABLE);
    assert_code(
        &run(&["--nats-url", &url, "--nats-user", "u", "status"]),
        exit::USAGE,
    );
}

#[test]
fn read_only_commands_create_no_stream() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["status"][..],
        &["tail", "--no-follow"],
        &["audit", "--key", "u-1"],
    ] {
        assert_code(&run_in(dir.path(), args), exit::NOT_FOUND);
    }
    // Still nothing: a later read-only command finds no stream either.
    assert_code(&run_in(dir.path(), &["status"]), exit::NOT_FOUND);
}

#[test]
fn help_lists_every_exit_code_by_its_number() {
    let help = run(&["--help"]);
    assert_code(&help, exit::SUCCESS);
    for (code, meaning) in exit::MEANINGS {
        assert!(
            help.stdout.contains(&format!("  {code}  {meaning}")),
            "{code} missing:\n{}",
            help.stdout
        );
    }
}

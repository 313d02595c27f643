//! Running the built `replay-tool` binary in tests.

#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_replay-tool");

/// A command for the binary with no `BACKBONE_*` variables inherited.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars() {
        if name.starts_with("BACKBONE_") {
            command.env_remove(name);
        }
    }
    command.args(args);
    command
}

/// The finished run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs the binary with `args` and `stdin`.
pub fn run_with_stdin(args: &[&str], stdin: &str) -> Run {
    let mut child = command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn replay-tool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap().into()
}

/// Runs the binary with `args` and empty stdin.
pub fn run(args: &[&str]) -> Run {
    run_with_stdin(args, "")
}

/// Runs with `--data-dir dir` before `args`.
pub fn run_in(dir: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--data-dir", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    run(&all)
}

pub use replay_tool::exit;

/// Asserts the exit code (one of [`exit`]), showing the output on failure.
pub fn assert_code(run: &Run, code: u8) {
    let code = i32::from(code);
    assert_eq!(
        run.code, code,
        "expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
        run.stdout, run.stderr
    );
}

/// A data dir holding the demo's log and read models (seed 42, 2000 events).
pub fn demo_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &["demo", "--events", "2000", "--seed", "42"]);
    assert_code(&out, 0);
    dir
}

/// Compares `actual` with `tests/snapshots/<name>`; `UPDATE_SNAPSHOTS=1`
/// rewrites the file instead.
pub fn assert_snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_SNAPSHOTS=1)", path.display()));
    assert_eq!(actual, expected, "snapshot {name} differs");
}

"""What the seed walkthroughs share: the Backbone binaries, a server on a
free loopback port with its data in a temporary directory, JSON over HTTP,
and checks that fail the walkthrough loudly.

Binaries come from ``--bin-dir`` (default ``target/debug``, which
``cargo build`` or ``scripts/test`` fills; ``target/release`` after
``cargo build --release``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[2]

failures: list[str] = []


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bin-dir", default=str(REPO / "target" / "debug"),
                        help="where backbone-server and replay-tool are (default target/debug)")
    return parser.parse_args()


def binary(bin_dir: str, name: str) -> str:
    path = Path(bin_dir) / name
    if not path.is_file():
        sys.exit(f"{path} is missing: build it with `cargo build -p {name}` (or pass --bin-dir)")
    return str(path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def check(what: str, got: Any, expected: Any) -> None:
    """Prints one answer; records a failure when it is not the expected one."""
    ok = got == expected
    print(f"  {'ok ' if ok else 'BAD'} {what}: {got!r}" + ("" if ok else f" (expected {expected!r})"))
    if not ok:
        failures.append(what)


def finish(name: str) -> None:
    """Exits 1 when any check failed."""
    if failures:
        print(f"{name}: {len(failures)} answer(s) wrong: {', '.join(failures)}")
        sys.exit(1)
    print(f"{name}: every answer is right")


class Server:
    """``backbone-server`` on the embedded log in a temporary directory."""

    def __init__(self, bin_dir: str, config: str = "", models: str = '["all"]'):
        self._tmp = tempfile.TemporaryDirectory(prefix="backbone-seed-")
        self.data_dir = Path(self._tmp.name) / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config_path = Path(self._tmp.name) / "server.toml"
        config_path.write_text(
            f'data_dir = "{self.data_dir}"\nmodels = {models}\n{config}\n'
            f'[http]\nlisten = "127.0.0.1:{self.port}"\n'
        )
        self._log = open(Path(self._tmp.name) / "server.log", "w")
        self.process = subprocess.Popen(
            [binary(bin_dir, "backbone-server"), "--config", str(config_path)],
            stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "warn"},
        )
        deadline = time.monotonic() + 30
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                sys.exit(f"backbone-server did not start:\n{self.log()}")
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def log(self) -> str:
        self._log.flush()
        return (Path(self._tmp.name) / "server.log").read_text()

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
            return json.loads(response.read())

    def wait_for(self, path: str, done, timeout: float = 20) -> Any:
        """GETs ``path`` until ``done(answer)`` holds; the last answer."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = self.get(path)
            except OSError:
                answer = None
            if answer is not None and done(answer):
                return answer
            if time.monotonic() > deadline:
                return answer
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()
        self._tmp.cleanup()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def replay_tool(bin_dir: str, *args: str, data_dir: Optional[Path] = None) -> subprocess.CompletedProcess:
    """Runs ``replay-tool``; its completed process (stdout as text)."""
    command = [binary(bin_dir, "replay-tool")]
    if data_dir is not None:
        command += ["--data-dir", str(data_dir)]
    return subprocess.run(command + list(args), capture_output=True, text=True, timeout=120)

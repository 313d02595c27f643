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


def parse_args(description: str, more=None) -> argparse.Namespace:
    """``--bin-dir``, and what ``more(parser)`` adds."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bin-dir", default=str(REPO / "target" / "debug"),
                        help="where backbone-server and replay-tool are (default target/debug)")
    if more is not None:
        more(parser)
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
        self.process = _start(
            [binary(bin_dir, "backbone-server"), "--config", str(config_path)],
            {"RUST_LOG": "warn"}, self._ready, "backbone-server",
            Path(self._tmp.name) / "server.log")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

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
        _stop(self.process)
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


def _start(command: list, env: dict, ready, what: str, log: Path) -> subprocess.Popen:
    handle = open(log, "w")
    process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                               env={**os.environ, **env})
    deadline = time.monotonic() + 60
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            sys.exit(f"{what} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return process


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def _program(env: str, default: str, package: str) -> str:
    program = os.environ.get(env) or default
    if not Path(program).is_file():
        sys.exit(f"{program} is missing: install Debian's {package} "
                 f"(scripts/ensure-{'nats-server' if package == 'nats-server' else 'brokers'} does) or set {env}")
    return program


class NatsServer:
    """``nats-server`` with JetStream (``NATS_SERVER_BIN``, else the PATH's)."""

    def __init__(self):
        import shutil

        self._dir = tempfile.TemporaryDirectory(prefix="backbone-seed-nats-")
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        program = _program("NATS_SERVER_BIN", shutil.which("nats-server") or "/usr/sbin/nats-server",
                           "nats-server")
        self.process = _start(
            [program, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", self._dir.name],
            {}, lambda: accepts(self.port), "nats-server", Path(self._dir.name) / "nats.log")

    def stop(self) -> None:
        _stop(self.process)
        self._dir.cleanup()


class RedisServer:
    """``redis-server`` (``REDIS_SERVER_BIN``, else Debian's)."""

    def __init__(self):
        self._dir = tempfile.TemporaryDirectory(prefix="backbone-seed-redis-")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        program = _program("REDIS_SERVER_BIN", "/usr/bin/redis-server", "redis-server")
        self.process = _start(
            [program, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self._dir.name],
            {}, lambda: accepts(self.port), "redis-server", Path(self._dir.name) / "redis.log")

    def stop(self) -> None:
        _stop(self.process)
        self._dir.cleanup()


class RabbitMq:
    """A ``rabbitmq-server`` node with the AMQP 1.0 plugin, its own port
    mapper and data (``RABBITMQ_SERVER_BIN``, else Debian's start script),
    user guest/guest over loopback; as ``backbone-testkit`` starts it."""

    def __init__(self):
        self._dir = tempfile.TemporaryDirectory(prefix="backbone-seed-rabbitmq-")
        root = Path(self._dir.name)
        self.port, dist_port, self._epmd_port = free_port(), free_port(), free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}"
        program = _program("RABBITMQ_SERVER_BIN", "/usr/lib/rabbitmq/bin/rabbitmq-server",
                           "rabbitmq-server")
        (root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
            "log.console = true\nlog.file = false\n")
        (root / "enabled_plugins").write_text("[rabbitmq_amqp1_0].\n")
        (root / "mnesia").mkdir()
        env = {
            "HOME": str(root), "RABBITMQ_NODENAME": f"backbone-seed-{self.port}@localhost",
            "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(root / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"), "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(root / "feature_flags"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(root / "plugins-expand"),
            "RABBITMQ_PID_FILE": str(root / "pid"), "RABBITMQ_DIST_PORT": str(dist_port),
            "ERL_EPMD_PORT": str(self._epmd_port),
            # The VM in place of the script: SIGTERM stops the node itself.
            "RUNNING_UNDER_SYSTEMD": "1",
        }
        self.process = _start([program], env, lambda: accepts(self.port), "rabbitmq-server",
                              root / "rabbitmq.log")

    def stop(self) -> None:
        _stop(self.process)
        subprocess.run(["epmd", "-kill"], env={**os.environ, "ERL_EPMD_PORT": str(self._epmd_port)},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._dir.cleanup()

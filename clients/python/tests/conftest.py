"""Real servers for the package's tests: nats-server with JetStream and the
Backbone server, on loopback, free ports and temporary directories, stopped
after each test.

``NATS_SERVER_BIN`` (else ``nats-server`` on the PATH; ``scripts/test``
exports it) and ``BACKBONE_SERVER_BIN`` (else ``target/debug/backbone-server``,
which ``cargo test --workspace`` builds) name the binaries; a missing one
fails the test with what to install, never skips it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import nats
import pytest

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(check: Callable[[], bool], process: subprocess.Popen, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}")
        if check():
            return
        time.sleep(0.05)
    pytest.fail(f"{what} did not start within {timeout} s")


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def binary(env: str, fallback: str, hint: str) -> str:
    path = os.environ.get(env) or fallback
    if not path or not Path(path).is_file():
        pytest.fail(f"{env}: {path or 'nothing'} is not a file; {hint}")
    return path


def run(coroutine):
    """Runs a coroutine to the end in a fresh event loop."""
    return asyncio.run(coroutine)


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    """A fresh nats-server with JetStream; its URL."""
    program = binary(
        "NATS_SERVER_BIN", shutil.which("nats-server") or "",
        "install Debian's nats-server (scripts/ensure-nats-server does)",
    )
    port = free_port()
    process = subprocess.Popen(
        [program, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(tmp_path / "js")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: accepts(port), process, "nats-server")
        yield f"nats://127.0.0.1:{port}"
    finally:
        stop(process)


async def event_stream(url: str, duplicate_window: float = 120.0):
    """Connects and creates the ``EVENTS`` stream; the connection."""
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
    await nc.jetstream().add_stream(
        name="EVENTS", subjects=["events.>"], duplicate_window=duplicate_window
    )
    return nc


@pytest.fixture
def backbone_server(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Starts ``backbone-server`` on the embedded log with ``extra`` TOML
    (and ``http`` in its ``[http]`` table); returns its base URL."""
    program = binary(
        "BACKBONE_SERVER_BIN", str(REPO / "target" / "debug" / "backbone-server"),
        "build it with cargo build -p backbone-server",
    )
    processes: list[subprocess.Popen] = []

    def start(extra: str = "", http: str = "") -> str:
        port = free_port()
        data = tmp_path / f"server-{len(processes)}"
        config = data.with_suffix(".toml")
        config.write_text(
            f'data_dir = "{data}"\nmodels = []\n{extra}\n[http]\nlisten = "127.0.0.1:{port}"\n{http}\n'
        )
        process = subprocess.Popen(
            [program, "--config", str(config)], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"},
        )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/readyz", timeout=1) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_until(healthy, process, "backbone-server")
        return url

    try:
        yield start
    finally:
        for process in processes:
            stop(process)

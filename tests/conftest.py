"""Fixtures that start real processes: the townhall server, speaker bots, ffmpeg listeners.

Every process is started by the fixture, bound to loopback, and stopped by its own PID.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll `condition` until it holds; fail the test with `what` if the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Proc:
    """A child process whose output lines are collected in the background."""

    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        def pump() -> None:
            assert self.popen.stdout is not None
            with self.popen.stdout:
                for line in self.popen.stdout:
                    self.lines.append(line.rstrip("\n"))

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()

    def wait(self, timeout: float) -> int:
        code = self.popen.wait(timeout)
        self._pump.join(5)
        return code

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def output(self) -> str:
        return "\n".join(self.lines[-60:])

    def stop(self, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        return self.wait(5)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.wait(5)


def spawn(args: list[str], env: dict[str, str] | None = None) -> Proc:
    popen = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        cwd=REPO,
    )
    return Proc(popen)


@dataclass
class Server:
    url: str
    proc: Proc
    data_dir: Path

    def create_space(self, title: str = "Test Space") -> dict[str, object]:
        response = httpx.post(f"{self.url}/api/spaces", json={"title": title}, timeout=10)
        assert response.status_code == 201, response.text
        created: dict[str, object] = response.json()
        return created

    def invite(self, space_id: str, host_token: str) -> str:
        response = httpx.post(
            f"{self.url}/api/spaces/{space_id}/invites",
            headers={"Authorization": f"Bearer {host_token}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return str(response.json()["stage_url"])


def start_server(tmp: Path, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    proc = spawn(
        [
            sys.executable,
            "-m",
            "townhall",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(tmp),
        ],
        env=env,
    )
    try:
        wait_until(
            lambda: proc.saw("is live at") or proc.popen.poll() is not None,
            30,
            "the server to start",
        )
    except AssertionError:
        proc.kill()
        raise
    if proc.popen.poll() is not None:
        raise AssertionError(f"server exited:\n{proc.output()}")
    return Server(f"http://127.0.0.1:{port}", proc, tmp)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = start_server(tmp_path / "data")
    yield srv
    code = srv.proc.stop()
    assert code == 0, f"server did not shut down cleanly (exit {code}):\n{srv.proc.output()}"


@pytest.fixture
def speakers() -> Iterator[Callable[..., Proc]]:
    """Start `townhall speak` bots; every one still running is stopped at the end."""
    started: list[Proc] = []

    def start(stage_url: str, *extra: str) -> Proc:
        proc = spawn([sys.executable, "-m", "townhall", "speak", stage_url, *extra])
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()

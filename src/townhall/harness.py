"""Start and stop real townhall processes on loopback: the server, speaker bots.

Used by the end-to-end tests and the benchmarks, so both drive the product the way an operator
would: as separate processes, stopped by their own PID.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


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
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


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
        if response.status_code != 201:
            raise RuntimeError(f"creating a Space failed: {response.status_code} {response.text}")
        created: dict[str, object] = response.json()
        return created

    def invite(self, space_id: str, host_token: str) -> str:
        response = httpx.post(
            f"{self.url}/api/spaces/{space_id}/invites",
            headers={"Authorization": f"Bearer {host_token}"},
            timeout=10,
        )
        if response.status_code != 201:
            raise RuntimeError(f"inviting a speaker failed: {response.status_code} {response.text}")
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
    except TimeoutError:
        proc.kill()
        raise
    if proc.popen.poll() is not None:
        raise RuntimeError(f"server exited:\n{proc.output()}")
    return Server(f"http://127.0.0.1:{port}", proc, tmp)


def start_speaker(stage_url: str, *extra: str) -> Proc:
    """A `townhall speak` bot in its own process (e.g. `--tone 440`)."""
    return spawn([sys.executable, "-m", "townhall", "speak", stage_url, *extra])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0

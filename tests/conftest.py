"""Fixtures that start real processes (see townhall.harness): the server and speaker bots.

Every process is started by the fixture, bound to loopback, and stopped by its own PID.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from townhall.harness import REPO, Proc, Server, start_server, start_speaker, wait_until

__all__ = ["REPO", "Proc", "Server", "wait_until"]

ARTIFACTS = REPO / "test-artifacts"


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
        proc = start_speaker(stage_url, *extra)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()

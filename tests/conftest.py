"""Fixtures that start real processes (see townhall.harness): the server, speaker bots, and the
engines a cluster runs on (redis-server, PostgreSQL).

Every process is started by the fixture, bound to loopback, and stopped by its own PID.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.push_service import PushService
from tests.smtp_inbox import Inbox, start_smtp
from townhall.harness import (
    REPO,
    Postgres,
    Proc,
    Server,
    free_port,
    postgres_bin,
    start_postgres,
    start_redis,
    start_server,
    start_speaker,
    wait_until,
)

__all__ = ["REPO", "Proc", "Server", "wait_until"]

# The servers tests start refuse a connection that waited longer than this to be accepted
# (api/accept.py; 500 ms in production). A test asserts on what a user sees, not on overload, and
# on a machine at load 10-20 a test's server can stand still for longer than a production bound;
# tests/api/test_accept.py sets its own bound and proves the refusal.
os.environ.setdefault("TOWNHALL_ACCEPT_WAIT_MAX_MS", "10000")

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


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    proc = start_redis(port, tmp_path_factory.mktemp("redis"))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One throwaway PostgreSQL server for the session (on loopback, in a temporary directory);
    tests get a database each from `postgres_url`."""
    if postgres_bin() is None:
        pytest.fail("PostgreSQL is not installed (the project's setup installs it with apt)")
    server = start_postgres()
    yield server
    server.stop()


_database_numbers = itertools.count(1)


@pytest.fixture
def postgres_url(postgres: Postgres) -> Iterator[str]:
    """A new, empty database on the session's PostgreSQL (`postgresql://…`), dropped afterwards."""
    name = f"test_{next(_database_numbers)}"
    url = postgres.create_database(name)
    yield url
    postgres.drop_database(name)


@dataclass
class FlakyRedis:
    """A redis-server we can stop (by PID) and start again on the same port, with its data."""

    port: int
    data_dir: Path
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = start_redis(self.port, self.data_dir, persist=True)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


@pytest.fixture
def flaky_redis(tmp_path: Path) -> Iterator[FlakyRedis]:
    server = FlakyRedis(free_port(), tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on loopback for reminder mail: what it accepted, and its port."""
    inbox, port, controller = start_smtp()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def service() -> Iterator[PushService]:
    """A Web Push service on loopback (tests/push_service.py): what it received, its answers."""
    started = PushService().start()
    yield started
    started.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database for the records, once on each kind they run on: a SQLite file (in a
    directory not made yet), and a database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'townhall.db'}"
    return str(request.getfixturevalue("postgres_url"))

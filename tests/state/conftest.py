"""Fixtures for the shared-state contract: a real redis-server, and both LiveState implementations.

`redis_url` starts one `redis-server` for the session (loopback, a free port, no persistence) and
stops it by its PID at the end; it starts only if a test asks for the Redis implementation. `live`
is the store under test, once per implementation; `peer` is a second process's view of the same
shared state (another RedisLiveState on the same server; for the embedded store, which serves one
process, the same instance).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio

from townhall.harness import free_port, spawn, wait_until
from townhall.state.embedded_live import EmbeddedLiveState
from townhall.state.live import LiveState
from townhall.state.redis_live import RedisLiveState

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _answers_ping(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_timeout=1) as client:
            return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not Path(REDIS_SERVER).exists():
        pytest.fail("redis-server is not installed (the project's setup installs it with apt)")
    port = free_port()
    proc = spawn(
        [
            REDIS_SERVER,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path_factory.mktemp("redis")),
        ]
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_until(
            lambda: proc.popen.poll() is not None or _answers_ping(url), 15, "redis-server to start"
        )
        if proc.popen.poll() is not None:
            pytest.fail(f"redis-server exited:\n{proc.output()}")
        yield url
    finally:
        proc.stop()


@pytest.fixture(params=["embedded", "redis"])
async def live(request: pytest.FixtureRequest) -> AsyncIterator[LiveState]:
    state: LiveState
    if request.param == "embedded":
        state = EmbeddedLiveState()
    else:
        url: str = request.getfixturevalue("redis_url")
        client = redis.asyncio.Redis.from_url(url)
        await client.flushall()
        await client.aclose()
        state = RedisLiveState.from_url(url)
    yield state
    await state.close()


@pytest.fixture
async def peer(live: LiveState, request: pytest.FixtureRequest) -> AsyncIterator[LiveState]:
    if not isinstance(live, RedisLiveState):
        yield live
        return
    other = RedisLiveState.from_url(request.getfixturevalue("redis_url"))
    yield other
    await other.close()


@pytest.fixture
async def raw_redis(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client on the test server, for looking at keys and subscriptions."""
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_live(redis_url: str) -> AsyncIterator[RedisLiveState]:
    """The Redis implementation alone, for what only Redis has (keys, TTLs, subscriptions)."""
    client = redis.asyncio.Redis.from_url(redis_url)
    await client.flushall()
    await client.aclose()
    state = RedisLiveState.from_url(redis_url)
    yield state
    await state.close()

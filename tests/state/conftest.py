"""Fixtures for the shared-state contract: a real redis-server, and both LiveState implementations.

`redis_url` (tests/conftest.py) starts one `redis-server` for the session; it starts only if a
test asks for the Redis implementation. `live`
is the store under test, once per implementation; `peer` is a second process's view of the same
shared state (another RedisLiveState on the same server; for the embedded store, which serves one
process, the same instance).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from townhall.state.embedded_live import EmbeddedLiveState
from townhall.state.live import LiveState
from townhall.state.records import Records, open_records
from townhall.state.redis_live import RedisLiveState


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


@pytest.fixture
async def records(database_url: str) -> AsyncIterator[Records]:
    """The records on a new database, once on SQLite and once on PostgreSQL (`database_url`)."""
    opened = await open_records(database_url)
    yield opened
    await opened.close()


@pytest.fixture
async def other_process(database_url: str, records: Records) -> AsyncIterator[Records]:
    """A second Records on the same database: another server process, as far as it can tell."""
    opened = await open_records(database_url)
    yield opened
    await opened.close()

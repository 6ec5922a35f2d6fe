"""The event outbox against a real redis-server that goes away and comes back on the same port.

A command's change is refused while Redis is down, or — when Redis dies after the check — its
event is held (in order, spooled to disk) and reaches the log once Redis is back, also after the
process holding it died. Nothing sleeps: every wait is on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis.exceptions

from tests.conftest import FlakyRedis
from tests.media.test_director import FAST, until
from townhall.config import MediaConfig
from townhall.media.audio import SpeakerId
from townhall.media.director import SpaceDirector
from townhall.media.pipeline import SpaceMedia
from townhall.spaces.control import Actor, NewSpace, SpaceControl
from townhall.spaces.model import StageMember, UserId
from townhall.state.outbox import EventOutbox
from townhall.state.records import Records, open_records
from townhall.state.redis_live import RedisLiveState

SPACE = "sp_outbox"
HOST = Actor(UserId("u-host00000000"), "Hana Host")


@pytest.fixture
async def live(flaky_redis: FlakyRedis) -> AsyncIterator[RedisLiveState]:
    state = RedisLiveState.from_url(flaky_redis.url, pool_timeout=1.0)
    yield state
    await state.close()


async def logged(live: RedisLiveState, space_id: str = SPACE) -> list[tuple[str, object]]:
    events = await live.events_since(space_id, 0)
    assert events is not None
    return [(e.type, dict(e.data).get("n")) for e in events]


def spooled(spool: Path) -> list[str]:
    return [line for f in spool.glob("*.jsonl") for line in f.read_text().splitlines()]


async def test_events_that_cannot_be_appended_are_held_in_order_and_delivered_when_redis_returns(
    flaky_redis: FlakyRedis, live: RedisLiveState, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    outbox = EventOutbox(live, spool, retry_s=0.05)
    with pytest.raises(redis.exceptions.ConnectionError):
        await outbox.ready()  # a command would be refused here, before changing anything
    for n in (1, 2, 3):
        await outbox.append(SPACE, "stage.muted", {"n": n}, 1.0)
    assert outbox.held == 3
    assert len(spooled(spool)) == 3, "held events are on disk before append returns"

    flaky_redis.start()
    await until(lambda: outbox.held == 0, "the held events to be delivered", 15)
    assert await logged(live) == [("stage.muted", 1), ("stage.muted", 2), ("stage.muted", 3)]
    assert spooled(spool) == []
    await outbox.ready()
    await outbox.close()
    assert list(spool.glob("*.jsonl")) == [], "nothing held: no spool file left behind"


async def test_a_process_that_died_holding_events_hands_them_to_the_next_start(
    flaky_redis: FlakyRedis, live: RedisLiveState, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    first = EventOutbox(live, spool, retry_s=60)
    await first.append(SPACE, "stage.muted", {"n": 1}, 1.0)
    await first.append(SPACE, "hand.raised", {"n": 2}, 2.0)

    second = EventOutbox(live, spool, retry_s=0.05)
    await second.recover()
    assert second.held == 0, "a live process's spool is its own (locked)"

    await first.close()  # it stops as a dying process would: the events stay on disk
    assert len(spooled(spool)) == 2
    flaky_redis.start()
    third = EventOutbox(live, spool, retry_s=0.05)
    await third.recover()
    await until(lambda: third.held == 0, "the adopted events to be delivered", 15)
    assert await logged(live) == [("stage.muted", 1), ("hand.raised", 2)]
    assert spooled(spool) == []
    await second.close()
    await third.close()


@dataclass
class NoIngest:
    connections: dict[SpeakerId, object] = field(default_factory=dict)


class StopsRedisAfterWriting:
    """Records whose next member update is followed, once committed, by Redis going down: the
    window between a command's check and its append, made to happen every time."""

    def __init__(self, records: Records, redis_server: FlakyRedis) -> None:
        self._records = records
        self._redis = redis_server

    def __getattr__(self, name: str) -> object:
        return getattr(self._records, name)

    async def update_stage_member(self, member: StageMember) -> None:
        await self._records.update_stage_member(member)
        await asyncio.to_thread(self._redis.stop)


@pytest.fixture
async def records(tmp_path: Path) -> AsyncIterator[Records]:
    opened = await open_records(f"sqlite+aiosqlite:///{tmp_path / 'townhall.db'}")
    yield opened
    await opened.close()


async def test_a_self_mute_while_redis_is_down_is_refused_and_not_recorded(
    flaky_redis: FlakyRedis, live: RedisLiveState, records: Records
) -> None:
    flaky_redis.start()
    control = SpaceControl(records, live)
    space = await control.create(HOST, NewSpace("Outage"))
    flaky_redis.stop()
    with pytest.raises(redis.exceptions.ConnectionError):
        await control.mute(HOST, space.id, HOST.user_id)
    member = await records.stage_member(space.id, HOST.user_id)
    assert member is not None
    assert not member.self_muted, "refused, so nothing changed"

    flaky_redis.start()
    await control.mute(HOST, space.id, HOST.user_id)  # the same call succeeds once Redis is back
    member = await records.stage_member(space.id, HOST.user_id)
    assert member is not None
    assert member.self_muted


async def test_a_self_mute_committed_as_redis_dies_reaches_the_log_and_the_media_director(
    flaky_redis: FlakyRedis, live: RedisLiveState, records: Records
) -> None:
    flaky_redis.start()
    control = SpaceControl(records, live, events=EventOutbox(live, retry_s=0.05))
    space = await control.create(HOST, NewSpace("Outage"))
    media = SpaceMedia(space.id, MediaConfig(), on_air=False)
    director = SpaceDirector(
        space.id,
        live,
        media,
        NoIngest(),
        start_after_seq=await live.latest_seq(space.id),
        on_end=media.stop,
        resync=lambda: asyncio.sleep(0, []),
        config=FAST,
    )
    await director.start()
    try:
        flaky = SpaceControl(
            StopsRedisAfterWriting(records, flaky_redis),  # type: ignore[arg-type]
            live,
            events=control.events,
        )
        await flaky.mute(HOST, space.id, HOST.user_id)  # committed; Redis died before the append
        member = await records.stage_member(space.id, HOST.user_id)
        assert member is not None
        assert member.self_muted
        assert control.events.held == 1
        assert SpeakerId(HOST.user_id) not in director.muted

        flaky_redis.start()
        await until(lambda: control.events.held == 0, "the held mute to be delivered", 15)
        types = [e.type for e in await live.events_since(space.id, 0) or []]
        assert types[-1] == "stage.muted"
        await until(
            lambda: director.muted.get(SpeakerId(HOST.user_id)) is True,
            "the media director to apply the mute",
            15,
        )
    finally:
        await director.stop()
        await media.stop()
        await control.events.close()

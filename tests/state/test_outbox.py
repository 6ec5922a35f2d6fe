"""The event outbox: a command's change and its event commit together, and the event reaches the
live log — once the change is committed, whatever happens to Redis or to the process after the
commit, and in the order the changes committed, whichever process delivers it.

Real parts: a redis-server that goes away and comes back on the same port, SQLite and a real
PostgreSQL server. Nothing sleeps: every wait is on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

import pytest
import redis.exceptions
import sqlalchemy as sa

from tests.conftest import FlakyRedis
from tests.media.test_director import FAST, until
from townhall.config import MediaConfig
from townhall.media.audio import SpeakerId
from townhall.media.director import SpaceDirector
from townhall.media.pipeline import SpaceMedia
from townhall.spaces.control import Actor, NewSpace, SpaceControl
from townhall.spaces.model import Role, SpaceId, StageLimits, StageMember, UserId
from townhall.state.embedded_live import EmbeddedLiveState
from townhall.state.errors import StageFull
from townhall.state.event_outbox import QueuedEvent
from townhall.state.outbox import EventOutbox
from townhall.state.records import LogEvent, Records, open_records
from townhall.state.redis_live import RedisLiveState

HOST = Actor(UserId("u-host00000000"), "Hana Host")
GUEST = UserId("u-guest0000000")
T = TypeVar("T")


@pytest.fixture
async def live(flaky_redis: FlakyRedis) -> AsyncIterator[RedisLiveState]:
    state = RedisLiveState.from_url(flaky_redis.url, pool_timeout=1.0)
    yield state
    await state.close()


async def logged_mutes(live: RedisLiveState | EmbeddedLiveState, space_id: str) -> list[bool]:
    """The host's mute flag in each `stage.muted` event of the Space's log, in log order."""
    events = await live.events_since(space_id, 0)
    assert events is not None
    return [e.data["member"]["muted"] for e in events if e.type == "stage.muted"]


async def host_muted(records: Records, space_id: str) -> bool:
    member = await records.stage_member(SpaceId(space_id), HOST.user_id)
    assert member is not None
    return member.self_muted


# -- the records' queue ---------------------------------------------------------------------------


async def test_a_write_queues_its_event_only_if_it_commits(records: Records) -> None:
    control = SpaceControl(records, EmbeddedLiveState())
    space = await control.create(HOST, NewSpace("Queue", limits=StageLimits(0, 0)))
    assert await records.queued_events() == 0, "the create's own event was delivered"

    speaker = StageMember(space.id, GUEST, Role.SPEAKER, "Gus", 1.0)
    with pytest.raises(StageFull):
        await records.put_stage_member(
            speaker, space.limits, event=LogEvent("stage.joined", {"n": 1}, 1.0)
        )
    assert await records.queued_events() == 0, "a refused seat queues no event"

    host = await records.stage_member(space.id, HOST.user_id)
    assert host is not None
    await records.update_stage_member(
        replace(host, self_muted=True), event=LogEvent("stage.muted", {"n": 2}, 2.0)
    )
    await records.log_event(space.id, LogEvent("delay.dumped", {"n": 3}, 3.0))
    assert await records.queued_events() == 2
    assert await records.spaces_with_events(queued_before=2.5) == [space.id]
    assert await records.spaces_with_events(queued_before=1.5) == []


async def test_events_stay_queued_when_appending_fails_part_way(records: Records) -> None:
    control = SpaceControl(records, EmbeddedLiveState())
    space = await control.create(HOST, NewSpace("Part way"))
    for n in (1, 2, 3):
        await records.log_event(space.id, LogEvent("delay.dumped", {"n": n}, float(n)))
    handed: list[object] = []

    async def fails_on_the_second(event: QueuedEvent) -> None:
        if len(handed) == 1:
            raise ConnectionError("the live store went away")
        handed.append(event.data["n"])

    with pytest.raises(ConnectionError):
        await records.deliver_events(space.id, fails_on_the_second)
    assert await records.queued_events() == 3, "nothing dropped that may not have arrived"

    got: list[object] = []

    async def takes(event: QueuedEvent) -> None:
        got.append(event.data["n"])

    assert await records.deliver_events(space.id, takes) == 3
    assert got == [1, 2, 3], "in the order they were queued"
    assert await records.queued_events() == 0


# -- Redis going away ---------------------------------------------------------------------------


async def test_a_self_mute_while_redis_is_down_is_refused_and_not_recorded(
    flaky_redis: FlakyRedis, live: RedisLiveState, records: Records
) -> None:
    flaky_redis.start()
    control = SpaceControl(records, live)
    space = await control.create(HOST, NewSpace("Outage"))
    flaky_redis.stop()
    with pytest.raises(redis.exceptions.ConnectionError):
        await control.mute(HOST, space.id, HOST.user_id)
    assert not await host_muted(records, space.id), "refused, so nothing changed"
    assert await records.queued_events() == 0

    flaky_redis.start()
    await control.mute(HOST, space.id, HOST.user_id)  # the same call succeeds once Redis is back
    assert await host_muted(records, space.id)
    assert await logged_mutes(live, space.id) == [True]


@dataclass
class NoIngest:
    connections: dict[SpeakerId, object] = field(default_factory=dict)


class StopsRedisAfterWriting:
    """Records whose next member update is followed, once committed, by Redis going down: the
    window between a command's check and its delivery, made to happen every time."""

    def __init__(self, records: Records, redis_server: FlakyRedis) -> None:
        self._records = records
        self._redis = redis_server

    def __getattr__(self, name: str) -> object:
        return getattr(self._records, name)

    async def update_stage_member(
        self, member: StageMember, *, event: LogEvent | None = None
    ) -> StageMember:
        written = await self._records.update_stage_member(member, event=event)
        await asyncio.to_thread(self._redis.stop)
        return written


async def test_a_self_mute_committed_as_redis_dies_reaches_the_log_and_the_media_director(
    flaky_redis: FlakyRedis, live: RedisLiveState, records: Records
) -> None:
    flaky_redis.start()
    control = SpaceControl(records, live)
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
    sweeper = EventOutbox(records, live, sweep_every_s=0.05, stale_after_s=60)
    flaky = SpaceControl(
        StopsRedisAfterWriting(records, flaky_redis),  # type: ignore[arg-type]
        live,
        events=sweeper,
    )
    try:
        await flaky.mute(HOST, space.id, HOST.user_id)  # committed; Redis died before delivery
        assert await host_muted(records, space.id)
        assert await records.queued_events() == 1
        assert SpeakerId(HOST.user_id) not in director.muted

        sweeper.start()  # what failed here is swept without waiting for it to grow stale
        flaky_redis.start()
        await until(
            lambda: director.muted.get(SpeakerId(HOST.user_id)) is True,
            "the media director to apply the mute",
            15,
        )
        assert await logged_mutes(live, space.id) == [True]
        assert await records.queued_events() == 0
    finally:
        await sweeper.close()
        await director.stop()
        await media.stop()


# -- a process dying after its commit -------------------------------------------------------------


async def test_an_event_a_dead_process_left_queued_is_delivered_by_another_process(
    flaky_redis: FlakyRedis, live: RedisLiveState, records: Records, other_process: Records
) -> None:
    flaky_redis.start()
    control = SpaceControl(records, live)
    space = await control.create(HOST, NewSpace("Crash"))
    await mute_without_delivering(records, space.id, at=0.0)  # long enough ago for any sweep
    await records.close()
    assert await logged_mutes(live, space.id) == []

    survivor = EventOutbox(other_process, live, sweep_every_s=0.05)
    survivor.start()
    try:
        await eventually(lambda: logged_mutes(live, space.id), [True], "the survivor's sweep")
        assert await other_process.queued_events() == 0
    finally:
        await survivor.close()


async def mute_without_delivering(records: Records, space_id: SpaceId, *, at: float) -> None:
    """What a process killed between its commit and its delivery leaves: the host's self-mute
    committed, its event queued."""
    host = await records.stage_member(space_id, HOST.user_id)
    assert host is not None
    await records.update_stage_member(
        replace(host, self_muted=True),
        event=LogEvent(
            "stage.muted",
            {"space_id": space_id, "member": {"user_id": HOST.user_id, "muted": True}},
            at,
        ),
    )


async def eventually(
    read: Callable[[], Awaitable[T]], expected: T, what: str, within: float = 15.0
) -> None:
    """Poll `read` until it returns `expected`; fail after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while (got := await read()) != expected:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: still {got!r}, not {expected!r}")
        await asyncio.sleep(0.02)


# -- order across processes ---------------------------------------------------------------------


async def test_events_reach_the_log_in_commit_order_when_two_processes_deliver_at_once(
    postgres_url: str,
) -> None:
    """Process A commits a mute and is slow to deliver it; process B commits the unmute and
    delivers at once. B must wait for A: a log that ended with A's mute would leave the media node
    muting a speaker the records say is unmuted."""
    live = EmbeddedLiveState()  # one log both processes reach; the order is the records' work
    a_records = await open_records(postgres_url)
    b_records = await open_records(postgres_url)
    try:
        a = SpaceControl(a_records, live)
        b = SpaceControl(b_records, live)
        space = await a.create(HOST, NewSpace("Order"))
        await mute_without_delivering(a_records, space.id, at=1.0)
        holding, gate = asyncio.Event(), asyncio.Event()

        async def slow_append(event: QueuedEvent) -> None:
            holding.set()
            await gate.wait()
            await live.append(event.space_id, event.type, event.data, event.at)

        a_delivers = asyncio.create_task(a_records.deliver_events(space.id, slow_append))
        await asyncio.wait_for(holding.wait(), 15)
        b_unmutes = asyncio.create_task(b.unmute(HOST, space.id, HOST.user_id))
        # B's delivery queues behind A's.
        await eventually(lambda: backends_waiting_on_a_lock(a_records), True, "B to wait on A")
        assert await logged_mutes(live, space.id) == []
        gate.set()
        await asyncio.wait_for(asyncio.gather(a_delivers, b_unmutes), 15)

        assert await logged_mutes(live, space.id) == [True, False]
        assert not await host_muted(b_records, space.id)
    finally:
        await a_records.close()
        await b_records.close()


async def backends_waiting_on_a_lock(records: Records) -> bool:
    query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
    async with records.engine.connect() as connection:
        return bool(await connection.scalar(query))

"""The control plane's commands against real records (SQLite and PostgreSQL) and the embedded live
state."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from townhall.ratelimit.table import HAND, REACT, Limited
from townhall.spaces.control import Actor, ControlError, NewSpace, SpaceControl, space_json
from townhall.spaces.model import Role, SpaceState, StageLimits, UserId, Visibility
from townhall.state.embedded_live import EmbeddedLiveState
from townhall.state.records import Records, open_records
from townhall.state.redis_live import RedisLiveState

HOST = Actor(UserId("u-host00000000"), "Hana Host")
COHOST = Actor(UserId("u-cohost000000"), "Cole Cohost")
SPEAKER = Actor(UserId("u-speaker00000"), "Sam Speaker")
LISTENER = Actor(UserId("g-listener0000"), "Lee Listener", is_guest=True)
TROLL = Actor(UserId("g-troll0000000"), "Troll", is_guest=True)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def control(database_url: str) -> AsyncIterator[SpaceControl]:
    """The control plane on each database the records run on (SQLite, PostgreSQL)."""
    records = await open_records(database_url)
    live = EmbeddedLiveState()
    yield SpaceControl(records, live, clock=Clock())
    await live.close()
    await records.close()


async def events(control: SpaceControl, space_id: str) -> list[str]:
    found = await control.live.events_since(space_id, 0)
    assert found is not None
    return [e.type for e in found]


async def refused(code: str, awaitable: object) -> ControlError:
    with pytest.raises(ControlError) as caught:
        await awaitable  # type: ignore[misc]
    assert caught.value.code == code, caught.value.message
    return caught.value


async def test_a_new_space_opens_in_the_green_room_with_its_host_on_stage(
    control: SpaceControl,
) -> None:
    space = await control.create(HOST, NewSpace("Morning show"))
    assert space.state is SpaceState.GREEN_ROOM
    assert [(m.user_id, m.role) for m in await control.stage(space.id)] == [
        (HOST.user_id, Role.HOST)
    ]
    assert await events(control, space.id) == ["space.created"]


async def test_a_listener_asks_to_speak_and_the_host_brings_them_up(control: SpaceControl) -> None:
    space = await control.create(HOST, NewSpace("Q&A"))
    assert await control.raise_hand(LISTENER, space.id) is True
    assert await control.raise_hand(LISTENER, space.id) is False  # no duplicates in the queue
    await refused("not_moderator", control.accept_request(SPEAKER, space.id, LISTENER.user_id))
    member = await control.accept_request(HOST, space.id, LISTENER.user_id)
    assert member.role is Role.SPEAKER
    assert await control.hands(space.id) == []
    assert "stage.joined" in await events(control, space.id)


async def test_only_the_speaker_can_unmute_themselves(control: SpaceControl) -> None:
    space = await control.create(HOST, NewSpace("Mutes"))
    await control.records.put_invitation(space.id, SPEAKER.user_id, Role.SPEAKER, HOST.user_id, 0.0)
    await control.accept_invitation(SPEAKER, space.id)
    muted = await control.mute(HOST, space.id, SPEAKER.user_id)
    assert muted.muted_by_host
    await refused("only_self_can_unmute", control.unmute(HOST, space.id, SPEAKER.user_id))
    unmuted = await control.unmute(SPEAKER, space.id, SPEAKER.user_id)
    assert not unmuted.muted_by_host
    assert not unmuted.self_muted


async def test_the_stage_limit_holds(control: SpaceControl) -> None:
    space = await control.create(
        HOST, NewSpace("Tiny", limits=StageLimits(max_cohosts=1, max_speakers=1))
    )
    for actor in (SPEAKER, LISTENER):
        await control.raise_hand(actor, space.id)
    await control.accept_request(HOST, space.id, SPEAKER.user_id)
    await refused("stage_full", control.accept_request(HOST, space.id, LISTENER.user_id))
    await control.add_cohost(HOST, space.id, COHOST.user_id, "Cole")
    await refused("cohosts_full", control.add_cohost(HOST, space.id, LISTENER.user_id, "Lee"))


async def test_a_banned_listener_can_do_nothing_in_the_space(control: SpaceControl) -> None:
    space = await control.create(HOST, NewSpace("Bans"))
    link = await control.create_invite_link(HOST, space.id, Role.SPEAKER, max_uses=5)
    await control.raise_hand(TROLL, space.id)
    await control.ban(HOST, space.id, TROLL.user_id)
    assert await control.hands(space.id) == []
    await refused("banned", control.raise_hand(TROLL, space.id))
    await refused("banned", control.react(TROLL, space.id, "👏"))
    await refused("banned", control.can_listen(TROLL, space.id))
    await refused("banned", control.join_with_invite_link(TROLL, space.id, link.id))
    await refused("banned", control.accept_invitation(TROLL, space.id))


async def test_nobody_can_ban_or_mute_the_host(control: SpaceControl) -> None:
    space = await control.create(HOST, NewSpace("Host"))
    await control.add_cohost(HOST, space.id, COHOST.user_id, "Cole")
    await refused("cannot_target_host", control.ban(COHOST, space.id, HOST.user_id))
    await refused("cannot_target_host", control.mute(COHOST, space.id, HOST.user_id))


async def test_go_live_delay_dump_and_end(control: SpaceControl) -> None:
    await control.records.add_webhook("http://127.0.0.1:9/hooks", "secret-for-tests", ["*"])
    space = await control.create(HOST, NewSpace("Show"))
    await control.add_cohost(HOST, space.id, COHOST.user_id, "Cole")
    await refused("not_host", control.go_live(COHOST, space.id))
    live = await control.go_live(HOST, space.id)
    assert live.state is SpaceState.LIVE
    assert live.started_at is not None
    assert (await control.set_delay(COHOST, space.id, 7.5)).delay_s == 7.5
    await refused("bad_delay", control.set_delay(HOST, space.id, 31))
    await control.dump(COHOST, space.id)
    ended = await control.end(HOST, space.id)
    assert ended.state is SpaceState.ENDED
    await refused("space_ended", control.end(HOST, space.id))
    assert await events(control, space.id) == [
        "space.created",
        "stage.joined",
        "space.state",
        "delay.set",
        "delay.dumped",
        "space.state",
    ]
    kinds = sorted(json.loads(d.payload)["type"] for d in await control.records.deliveries())
    assert kinds == ["space.ended", "space.started", "stage.changed"]


async def test_ending_a_space_that_never_went_live_cancels_it(control: SpaceControl) -> None:
    space = await control.create(HOST, NewSpace("Never mind"))
    assert (await control.end(HOST, space.id)).state is SpaceState.CANCELLED


async def test_a_scheduled_space_validates_its_time(control: SpaceControl) -> None:
    now = control._clock()
    await refused(
        "start_in_past", control.create(HOST, NewSpace("Late", scheduled_start=now - 3600))
    )
    space = await control.create(HOST, NewSpace("Soon", scheduled_start=now + 600))
    assert space.state is SpaceState.SCHEDULED
    opened = await control.open(HOST, space.id)
    assert opened.state is SpaceState.GREEN_ROOM


async def test_a_private_space_does_not_exist_without_its_invite_code(
    control: SpaceControl,
) -> None:
    space = await control.create(HOST, NewSpace("Secret", visibility=Visibility.PRIVATE))
    await refused("space_not_found", control.can_listen(LISTENER, space.id))
    assert (await control.can_listen(LISTENER, space.id, space.invite_code)).space.id == space.id
    assert (await control.can_listen(HOST, space.id)).space.id == space.id


async def test_a_private_space_takes_no_hand_or_reaction_without_its_code_but_from_its_stage(
    control: SpaceControl,
) -> None:
    space = await control.create(HOST, NewSpace("Secret", visibility=Visibility.PRIVATE))
    await refused("space_not_found", control.raise_hand(LISTENER, space.id))
    await refused("space_not_found", control.lower_hand(LISTENER, space.id, "wrong"))
    await refused("space_not_found", control.react(LISTENER, space.id, "👏"))
    assert await control.raise_hand(LISTENER, space.id, space.invite_code) is True
    await control.react(LISTENER, space.id, "👏", space.invite_code)
    await control.react(HOST, space.id, "👏")  # on its stage: no code needed
    ended = await control.end(HOST, space.id)
    # Over, and still nobody learns from the answer that it exists.
    await refused("space_not_found", control.react(LISTENER, ended.id, "👏"))


async def test_a_stranger_learns_nothing_of_a_private_space_from_a_refused_command(
    control: SpaceControl,
) -> None:
    space = await control.create(HOST, NewSpace("Secret", visibility=Visibility.PRIVATE))
    await refused("space_not_found", control.ban(TROLL, space.id, HOST.user_id))
    await refused("space_not_found", control.end(TROLL, space.id))
    await refused("space_not_found", control.leave_stage(TROLL, space.id))
    await control.add_cohost(HOST, space.id, COHOST.user_id)
    await refused("not_host", control.end(COHOST, space.id))  # on its stage: the real reason
    await control.ban(HOST, space.id, TROLL.user_id)
    # A banned listener who has the link is told they are banned, not that it does not exist.
    await refused("banned", control.react(TROLL, space.id, "👏", space.invite_code))
    await control.end(HOST, space.id)
    await refused("space_not_found", control.end(TROLL, space.id))  # not "it ended"
    await refused("space_cancelled", control.end(HOST, space.id))  # never went live


async def test_only_the_host_gives_a_private_space_a_new_invite_code_and_the_old_one_stops(
    control: SpaceControl,
) -> None:
    space = await control.create(HOST, NewSpace("Secret", visibility=Visibility.PRIVATE))
    await control.add_cohost(HOST, space.id, COHOST.user_id)
    await refused("not_host", control.rotate_invite(COHOST, space.id))
    await refused("space_not_found", control.rotate_invite(LISTENER, space.id))
    rotated = await control.rotate_invite(HOST, space.id)
    assert rotated.invite_code
    assert rotated.invite_code != space.invite_code
    await refused("space_not_found", control.can_listen(LISTENER, space.id, space.invite_code))
    assert (await control.can_listen(LISTENER, space.id, rotated.invite_code)).space == rotated
    found = await control.live.events_since(space.id, 0)
    assert found is not None
    assert found[-1].type == "space.invite_rotated"
    assert space.invite_code not in json.dumps([dict(e.data) for e in found])  # never in the log
    await control.end(HOST, space.id)
    again = await control.rotate_invite(HOST, space.id)  # its replay and clips are still served
    assert again.invite_code != rotated.invite_code
    public = await control.create(HOST, NewSpace("Open"))
    await refused("not_private", control.rotate_invite(HOST, public.id))


async def test_reactions_are_a_fixed_set_and_rate_limited_per_person(control: SpaceControl) -> None:
    space = await control.create(HOST, NewSpace("Claps"))
    await refused("bad_reaction", control.react(LISTENER, space.id, "💩"))
    for _ in range(REACT.burst):
        await control.react(LISTENER, space.id, "👏")
    with pytest.raises(Limited) as limited:
        await control.react(LISTENER, space.id, "👏")
    assert limited.value.limit is REACT
    assert limited.value.wait > 0
    await control.react(COHOST, space.id, "👏")  # everybody has their own bucket
    now = int(control._clock())
    totals = await control.live.reaction_totals(space.id, now - 1, now)
    assert totals == {"👏": REACT.burst + 1}


async def test_toggling_a_hand_too_fast_is_refused_and_changes_nothing(
    control: SpaceControl,
) -> None:
    space = await control.create(HOST, NewSpace("Hands"))
    for _ in range(HAND.burst // 2):
        assert await control.raise_hand(LISTENER, space.id)
        assert await control.lower_hand(LISTENER, space.id)
    with pytest.raises(Limited):
        await control.raise_hand(LISTENER, space.id)
    assert await control.hands(space.id) == []


async def test_the_host_can_hand_over_and_becomes_a_cohost(control: SpaceControl) -> None:
    space = await control.create(HOST, NewSpace("Hand-over"))
    await control.add_cohost(HOST, space.id, COHOST.user_id, "Cole")
    new = await control.transfer_host(HOST, space.id, COHOST.user_id)
    assert new.host_id == COHOST.user_id
    roles = {m.user_id: m.role for m in await control.stage(space.id)}
    assert roles == {COHOST.user_id: Role.HOST, HOST.user_id: Role.COHOST}


async def test_a_scheduled_space_nobody_opens_is_cancelled_a_day_later(
    control: SpaceControl,
) -> None:
    clock = control._clock
    assert isinstance(clock, Clock)
    space = await control.create(HOST, NewSpace("Ghost", scheduled_start=clock.now + 600))
    clock.now += 600 + 3600
    assert await control.cancel_no_shows(86400) == []
    clock.now += 86400
    [cancelled] = await control.cancel_no_shows(86400)
    assert (cancelled.id, cancelled.state) == (space.id, SpaceState.CANCELLED)


async def test_going_live_tells_integrators_who_asked_to_be_reminded(control: SpaceControl) -> None:
    await control.records.add_webhook(
        "http://127.0.0.1:9/hooks", "secret-for-tests", ["space.started"]
    )
    space = await control.create(HOST, NewSpace("Remind", scheduled_start=control._clock() + 60))
    await control.records.add_reminder(space.id, LISTENER.user_id)
    await control.open(HOST, space.id)
    await control.go_live(HOST, space.id)
    [delivery] = await control.records.deliveries()
    assert json.loads(delivery.payload)["remind"] == [LISTENER.user_id]


# -- a webhook commits with the change it announces, or neither does ----------------------------

# A trigger that makes the database itself refuse every webhook delivery: a command's transaction
# then fails after its own writes, at the moment it queues its webhook.
_REFUSE_DELIVERIES = {
    "sqlite": [
        "CREATE TRIGGER refuse_deliveries BEFORE INSERT ON webhook_deliveries"
        " BEGIN SELECT RAISE(ABORT, 'deliveries refused'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_deliveries() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RAISE EXCEPTION 'deliveries refused'; END $$",
        "CREATE TRIGGER refuse_deliveries BEFORE INSERT ON webhook_deliveries"
        " FOR EACH ROW EXECUTE FUNCTION refuse_deliveries()",
    ],
}
_ALLOW_DELIVERIES = {
    "sqlite": ["DROP TRIGGER refuse_deliveries"],
    "postgresql": [
        "DROP TRIGGER refuse_deliveries ON webhook_deliveries",
        "DROP FUNCTION refuse_deliveries()",
    ],
}


async def _run_sql(records: Records, statements: dict[str, list[str]]) -> None:
    async with records.engine.begin() as connection:
        for statement in statements[records.engine.dialect.name]:
            await connection.exec_driver_sql(statement)


@contextlib.asynccontextmanager
async def deliveries_refused(records: Records) -> AsyncIterator[None]:
    await _run_sql(records, _REFUSE_DELIVERIES)
    try:
        yield
    finally:
        await _run_sql(records, _ALLOW_DELIVERIES)


async def recorded(control: SpaceControl, space_id: str) -> tuple[Any, ...]:
    """Everything a command could have changed about a Space, its webhooks and its event log."""
    records = control.records
    space = await control.space(space_id)
    return (
        space,
        await records.stage(space.id),
        await records.bans(space.id),
        await control.hands(space.id),
        [(d.id, d.event_type) for d in await records.deliveries()],
        await events(control, space.id),
    )


Command = Callable[[SpaceControl, str], Awaitable[object]]


async def _with_speaker(control: SpaceControl, space_id: str) -> None:
    await control.raise_hand(SPEAKER, space_id)
    await control.accept_request(HOST, space_id, SPEAKER.user_id)


# (what the command does, set-up before it, the command, the webhook it announces)
ANNOUNCED: list[tuple[str, Command | None, Command, str]] = [
    ("going live", None, lambda c, s: c.go_live(HOST, s), "space.started"),
    (
        "ending",
        lambda c, s: c.go_live(HOST, s),
        lambda c, s: c.end(HOST, s),
        "space.ended",
    ),
    (
        "bringing a listener up",
        lambda c, s: c.raise_hand(LISTENER, s),
        lambda c, s: c.accept_request(HOST, s, LISTENER.user_id),
        "stage.changed",
    ),
    (
        "sending a speaker back to the audience",
        _with_speaker,
        lambda c, s: c.move_to_audience(HOST, s, SPEAKER.user_id),
        "stage.changed",
    ),
    (
        "removing a speaker",
        _with_speaker,
        lambda c, s: c.remove(HOST, s, SPEAKER.user_id),
        "stage.changed",
    ),
    (
        "banning a speaker",
        _with_speaker,
        lambda c, s: c.ban(HOST, s, SPEAKER.user_id),
        "stage.changed",
    ),
    (
        "handing the host role over",
        lambda c, s: c.add_cohost(HOST, s, COHOST.user_id, "Cole"),
        lambda c, s: c.transfer_host(HOST, s, COHOST.user_id),
        "stage.changed",
    ),
]


@pytest.mark.parametrize(
    ("setup", "command", "webhook"),
    [case[1:] for case in ANNOUNCED],
    ids=[case[0] for case in ANNOUNCED],
)
async def test_a_change_whose_webhook_cannot_be_queued_does_not_happen(
    control: SpaceControl, setup: Command | None, command: Command, webhook: str
) -> None:
    await control.records.add_webhook("http://127.0.0.1:9/hooks", "secret-for-tests", ["*"])
    space = await control.create(HOST, NewSpace("All or nothing"))
    if setup is not None:
        await setup(control, space.id)
    before = await recorded(control, space.id)
    async with deliveries_refused(control.records):
        with pytest.raises(sa.exc.DBAPIError, match="deliveries refused"):
            await command(control, space.id)
    assert await recorded(control, space.id) == before  # no change, no webhook, no event

    await command(control, space.id)  # the same command, the database willing: both stand
    after = await recorded(control, space.id)
    assert after[:4] != before[:4]
    [new] = [d for d in await control.records.deliveries() if (d.id, d.event_type) not in before[4]]
    assert new.event_type == webhook
    # Built from what the transaction wrote: the Space as it is now stored.
    assert json.loads(new.payload)["space"] == space_json(await control.space(space.id))


async def test_a_scheduled_space_whose_webhook_cannot_be_queued_is_not_created(
    control: SpaceControl,
) -> None:
    await control.records.add_webhook("http://127.0.0.1:9/hooks", "secret-for-tests", ["*"])
    start = control._clock() + 600
    async with deliveries_refused(control.records):
        with pytest.raises(sa.exc.DBAPIError, match="deliveries refused"):
            await control.create(HOST, NewSpace("Later", scheduled_start=start))
    assert await control.records.spaces_due(start) == []
    assert await control.records.deliveries() == []

    space = await control.create(HOST, NewSpace("Later", scheduled_start=start))
    assert await control.records.spaces_due(start) == [space]
    [delivery] = await control.records.deliveries()
    assert json.loads(delivery.payload) == {
        "type": "space.scheduled",
        "at": control._clock(),
        "space": space_json(space),
    }


class Counting:
    """An object (the records, the live state) counting the calls of its one method `name`."""

    def __init__(self, inner: Any, name: str) -> None:
        self._inner = inner
        self._name = name
        self.calls = 0

    def __getattr__(self, attr: str) -> Any:
        found = getattr(self._inner, attr)
        if attr != self._name:
            return found

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await found(*args, **kwargs)

        return counted


class CountingRecords(Counting):
    """The records, counting how often a Space's roster is read from them."""

    def __init__(self, records: Records) -> None:
        super().__init__(records, "roster")


class CountingLive(Counting):
    """The live state, counting how often a Space's log is read back."""

    def __init__(self, live: EmbeddedLiveState) -> None:
        super().__init__(live, "events_since")


async def test_a_roster_is_read_from_the_records_once_until_the_space_changes(
    control: SpaceControl,
) -> None:
    counting = CountingRecords(control.records)
    cached = SpaceControl(counting, control.live)  # type: ignore[arg-type]
    space = await control.create(HOST, NewSpace("Cached"))
    for _ in range(5):
        await cached.react(LISTENER, space.id, "👏")
        await cached.react(TROLL, space.id, "👏")
    assert (await cached.standing(space.id, HOST.user_id)).role is Role.HOST
    assert counting.calls == 1, "reactions change nothing a roster holds"

    await control.ban(HOST, space.id, TROLL.user_id)  # another process: the log moves
    await refused("banned", cached.react(TROLL, space.id, "👏"))
    assert (await cached.standing(space.id, TROLL.user_id)).banned
    assert not (await cached.standing(space.id, LISTENER.user_id)).banned
    await control.raise_hand(LISTENER, space.id)
    assert (await cached.standing(space.id, LISTENER.user_id)).hand_raised
    assert counting.calls == 1, "the ban and the hand followed from the log"


async def test_hands_raised_through_one_process_keep_its_roster_current_without_reading_the_log(
    control: SpaceControl,
) -> None:
    counting = CountingLive(control.live)
    here = SpaceControl(control.records, counting)  # type: ignore[arg-type]
    space = await control.create(HOST, NewSpace("Own hands"))
    await here.roster(space.id)
    for person in (LISTENER, TROLL):
        assert await here.raise_hand(person, space.id) is True
        assert (await here.standing(space.id, person.user_id)).hand_raised
    assert await here.lower_hand(LISTENER, space.id) is True
    assert not (await here.standing(space.id, LISTENER.user_id)).hand_raised
    assert counting.calls == 0, "its own events moved its roster"

    await control.raise_hand(SPEAKER, space.id)  # another process's: read from the log
    assert (await here.standing(space.id, SPEAKER.user_id)).hand_raised
    assert counting.calls == 1
    await here.raise_hand(LISTENER, space.id)
    fresh = await SpaceControl(control.records, control.live).roster(space.id)  # nothing kept
    assert await here.roster(space.id) == fresh
    assert set(fresh.hands) == {TROLL.user_id, SPEAKER.user_id, LISTENER.user_id}


class Overtaken(CountingLive):
    """A live state whose position answers what it was before: the round trip another call
    overtook."""

    def __init__(self, live: EmbeddedLiveState, position: tuple[str, int]) -> None:
        super().__init__(live)
        self.stale = position

    async def position(self, space_id: str) -> tuple[str, int]:
        return self.stale


async def test_a_roster_that_moved_on_while_its_position_was_read_is_not_read_again(
    control: SpaceControl,
) -> None:
    """On Redis the position is a round trip: meanwhile another call may have moved the kept
    roster past it (its own hand raised). That roster is newer, not stale."""
    space = await control.create(HOST, NewSpace("Overtaken"))
    records = CountingRecords(control.records)
    live = Overtaken(control.live, await control.live.position(space.id))
    here = SpaceControl(records, control.live)  # type: ignore[arg-type]
    await here.raise_hand(LISTENER, space.id)  # its roster: read once, then past its own event
    here.live = live  # type: ignore[assignment]
    assert (await here.standing(space.id, LISTENER.user_id)).hand_raised
    assert (records.calls, live.calls) == (1, 0)


async def test_hands_raised_at_once_through_two_processes_on_redis_show_in_both(
    tmp_path: Path, redis_url: str
) -> None:
    """Each process moves its roster past its own events and follows the other's from the log;
    calls overtaking each other on the round trips never leave a roster missing a hand."""
    records = await open_records(f"sqlite+aiosqlite:///{tmp_path / 'townhall.db'}")
    stores = [RedisLiveState.from_url(redis_url) for _ in range(2)]
    one, two = (SpaceControl(records, store) for store in stores)
    try:
        space = await one.create(HOST, NewSpace("Two processes"))
        fans = [Actor(UserId(f"g-fan{n:010d}"), f"Fan {n}", is_guest=True) for n in range(12)]
        await asyncio.gather(*(ctl.raise_hand(fan, space.id) for fan in fans for ctl in (one, two)))
        await asyncio.gather(*(one.lower_hand(fan, space.id) for fan in fans[:4]))
        up = {fan.user_id for fan in fans[4:]}
        for ctl in (one, two):
            assert set((await ctl.roster(space.id)).hands) == up
            assert (await ctl.standing(space.id, fans[5].user_id)).hand_raised
            assert not (await ctl.standing(space.id, fans[0].user_id)).hand_raised
        assert {UserId(h.user_id) for h in await one.hands(space.id)} == up
    finally:
        for store in stores:
            await store.close()
        await records.close()


async def test_a_kept_roster_follows_the_log_and_always_equals_a_fresh_read(
    control: SpaceControl,
) -> None:
    """Another process's roster, kept across a whole session of commands, is brought up to date
    from the events alone and never differs from what the records say."""
    counting = CountingRecords(control.records)
    reader = SpaceControl(counting, control.live)  # type: ignore[arg-type]
    space = await control.create(HOST, NewSpace("Followed"))
    await reader.roster(space.id)
    steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("hand", lambda: control.raise_hand(SPEAKER, space.id)),
        ("hand", lambda: control.raise_hand(LISTENER, space.id)),
        ("hand", lambda: control.raise_hand(TROLL, space.id)),
        ("accept", lambda: control.accept_request(HOST, space.id, SPEAKER.user_id)),
        ("decline", lambda: control.decline_request(HOST, space.id, LISTENER.user_id)),
        ("mute", lambda: control.mute(HOST, space.id, SPEAKER.user_id)),
        ("self-mute", lambda: control.mute(SPEAKER, space.id, SPEAKER.user_id)),
        ("co-host", lambda: control.add_cohost(HOST, space.id, SPEAKER.user_id)),
        ("unmute", lambda: control.unmute(SPEAKER, space.id, SPEAKER.user_id)),
        ("delay", lambda: control.set_delay(HOST, space.id, 5)),
        ("pin", lambda: control.pin_link(HOST, space.id, "https://example.org/a")),
        ("edit", lambda: control.edit(HOST, space.id, title="Followed still")),
        ("ban", lambda: control.ban(HOST, space.id, TROLL.user_id)),
        ("to audience", lambda: control.move_to_audience(HOST, space.id, SPEAKER.user_id)),
        ("hand", lambda: control.raise_hand(LISTENER, space.id)),
        ("remove", lambda: control.remove(HOST, space.id, LISTENER.user_id)),
    ]
    for name, step in steps:
        await step()
        kept = await reader.roster(space.id)
        fresh = await SpaceControl(control.records, control.live).roster(space.id)  # nothing kept
        assert kept == fresh, f"after {name}"
    assert counting.calls == 1, "every one of these followed from the log"

    await control.go_live(HOST, space.id)  # a state change: read afresh, and still equal
    fresh = await SpaceControl(control.records, control.live).roster(space.id)
    assert await reader.roster(space.id) == fresh
    assert counting.calls == 2

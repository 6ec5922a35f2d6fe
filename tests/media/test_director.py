"""The media director: control events in, media commands out, applied to a real SpaceMedia.

The mapping and the speaking-flag timing are pure and tested as tables. The adapter runs against the
embedded LiveState and a real SpaceMedia whose clock is not started (tests call `tick()` when they
need audio); the ingest is a fake holding fake connections that record `close()`, because what is
under test is the mapping and the adapter, not WebRTC. Nothing sleeps to synchronise: tests wait
for a condition with a deadline (`until`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from townhall.config import MediaConfig
from townhall.media.audio import FRAME_SAMPLES, SAMPLE_RATE, PcmFrame, SpeakerId
from townhall.media.director import (
    DirectorConfig,
    Disconnect,
    Dump,
    EndStream,
    Malformed,
    MediaCommand,
    SetDelay,
    SetMuted,
    SetOnAir,
    SpaceDirector,
    SpeakingFlags,
    media_commands,
    state_commands,
    translate,
)
from townhall.media.pipeline import SpaceMedia
from townhall.media.roomstate import Audience, Seat
from townhall.spaces.control import Actor, NewSpace, SpaceControl
from townhall.spaces.counts import REACTION_WINDOW_S
from townhall.spaces.model import (
    Role,
    Space,
    SpaceId,
    SpaceState,
    StageMember,
    UserId,
)
from townhall.state.embedded_live import EmbeddedLiveState
from townhall.state.live import EVENT_LOG_LIMIT, Event
from townhall.state.records import open_records

SPACE = "spdirector1"
ANA, BEN = SpeakerId("u-ana000000000"), SpeakerId("u-ben000000000")
T0 = 1_800_000_000.0
FAST = DirectorConfig(speaking_interval_s=0.01, audience_interval_s=0.05)  # not 250 ms, 1 s


async def until(condition: Callable[[], bool], what: str, within: float = 5.0) -> None:
    """Wait for `condition` with a deadline (never a fixed sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.002)


def event(type: str, data: Any, seq: int = 1) -> Event:
    return Event(seq=seq, type=type, at=T0, data=data)


def tone(index: int, frequency: float = 440.0) -> PcmFrame:
    n = np.arange(index * FRAME_SAMPLES, (index + 1) * FRAME_SAMPLES)
    return (np.sin(2 * np.pi * frequency * n / SAMPLE_RATE) * 0.3 * 32767).astype(np.int16)


# -- the mapping ------------------------------------------------------------------------------

MEMBER = {"user_id": ANA, "display_name": "Ana", "role": "speaker", "muted_by_host": True}

MAPPING: list[tuple[str, dict[str, Any], list[MediaCommand]]] = [
    ("space.state", {"state": "live", "on_air": True}, [SetOnAir(True)]),
    ("space.state", {"state": "green_room"}, [SetOnAir(False)]),
    ("space.state", {"state": "scheduled"}, [SetOnAir(False)]),
    ("space.state", {"state": "ended", "on_air": False}, [EndStream()]),
    ("space.state", {"state": "cancelled", "on_air": False}, [EndStream()]),
    ("delay.set", {"delay_s": 7.5}, [SetDelay(7.5)]),
    ("delay.set", {"delay_s": 0}, [SetDelay(0.0)]),
    ("delay.set", {"delay_s": 30}, [SetDelay(30.0)]),
    ("delay.dumped", {"by": "u-host00000000"}, [Dump()]),
    ("stage.muted", {"member": {**MEMBER, "muted": True}}, [SetMuted(ANA, True)]),
    ("stage.muted", {"member": {**MEMBER, "muted": False}}, [SetMuted(ANA, False)]),
    ("stage.left", {"user_id": ANA, "by": ANA}, [Disconnect(ANA)]),
    ("user.removed", {"user_id": ANA, "by": BEN}, [Disconnect(ANA)]),
    ("user.banned", {"user_id": ANA, "by": BEN}, [Disconnect(ANA)]),
    # Everything else is none of the media's business.
    ("space.created", {"space": {"id": SPACE}}, []),
    ("space.edited", {"title": "t", "description": ""}, []),
    ("space.pinned", {"url": None}, []),
    ("stage.joined", {"member": {**MEMBER, "muted": False}}, []),
    ("stage.role", {"member": {**MEMBER, "muted": True}}, []),
    ("stage.invited", {"user_id": ANA, "by": BEN}, []),
    ("hand.raised", {"user_id": ANA, "display_name": "Ana"}, []),
    ("hand.lowered", {"user_id": ANA}, []),
    ("hand.declined", {"user_id": ANA}, []),
    ("host.transferred", {"from": BEN, "to": ANA}, []),
    ("something.new", {"whatever": 1}, []),
]


@pytest.mark.parametrize(("type", "data", "expected"), MAPPING)
def test_each_control_event_maps_to_its_media_commands(
    type: str, data: dict[str, Any], expected: list[MediaCommand]
) -> None:
    # Through JSON, as the log hands events back in every implementation.
    assert media_commands(event(type, json.loads(json.dumps(data)))) == expected


MALFORMED: list[tuple[str, Any]] = [
    ("space.state", {}),
    ("space.state", {"state": "exploded"}),
    ("space.state", {"state": 3}),
    ("delay.set", {}),
    ("delay.set", {"delay_s": -1}),
    ("delay.set", {"delay_s": 31}),
    ("delay.set", {"delay_s": "5"}),
    ("delay.set", {"delay_s": True}),
    ("delay.set", {"delay_s": float("nan")}),
    ("delay.set", {"delay_s": float("inf")}),
    ("stage.muted", {}),
    ("stage.muted", {"member": "u-ana000000000"}),
    ("stage.muted", {"member": {"user_id": ANA}}),
    ("stage.muted", {"member": {"user_id": ANA, "muted": "yes"}}),
    ("stage.muted", {"member": {"user_id": "", "muted": True}}),
    ("stage.left", {}),
    ("user.removed", {"user_id": 42}),
    ("user.banned", {"user_id": None}),
    ("space.state", ["live"]),
    ("delay.dumped", None),
]


@pytest.mark.parametrize(("type", "data"), MALFORMED)
def test_a_malformed_event_yields_no_command_and_says_why(type: str, data: Any) -> None:
    found = translate(event(type, data))
    assert isinstance(found, Malformed)
    assert found.reason
    assert media_commands(event(type, data)) == []


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
TYPES = st.sampled_from([t for t, _, _ in MAPPING] + ["", "stage.muted"])


@settings(max_examples=300, deadline=None)
@given(
    type=TYPES,
    data=JSON | st.dictionaries(st.sampled_from(["state", "delay_s", "member", "user_id"]), JSON),
)
def test_no_event_data_whatsoever_makes_the_mapping_raise(type: str, data: Any) -> None:
    found = translate(event(type, data))
    assert isinstance(found, Malformed | list)


def test_the_records_state_becomes_commands_that_converge_media() -> None:
    space = Space(SpaceId(SPACE), "t", UserId(ANA), T0, state=SpaceState.LIVE, delay_s=4.0)
    stage = [
        StageMember(space.id, UserId(ANA), Role.HOST, "Ana", T0),
        StageMember(space.id, UserId(BEN), Role.SPEAKER, "Ben", T0, self_muted=True),
    ]
    gone = SpeakerId("u-gone00000000")
    assert state_commands(space, stage, connected=[ANA, gone]) == [
        SetOnAir(True),
        SetDelay(4.0),
        SetMuted(ANA, False),
        SetMuted(BEN, True),
        Disconnect(gone),
    ]
    green = Space(SpaceId(SPACE), "t", UserId(ANA), T0, state=SpaceState.GREEN_ROOM)
    assert state_commands(green, [])[:2] == [SetOnAir(False), SetDelay(0.0)]
    over = Space(SpaceId(SPACE), "t", UserId(ANA), T0, state=SpaceState.ENDED)
    assert state_commands(over, stage, connected=[ANA]) == [EndStream()]


# -- when speaking flags are published --------------------------------------------------------


def test_speaking_flags_are_published_first_to_clear_stale_ones_then_on_change() -> None:
    flags = SpeakingFlags(refresh_s=2.0)
    assert flags.due({}, 0.0), "the first look publishes, even nobody, to clear a previous node's"
    flags.published({}, 0.0)
    assert not flags.due({}, 0.25)
    assert not flags.due({}, 60.0), "silence is not re-published"
    assert flags.due({ANA: -20.0}, 60.25)
    flags.published({ANA: -20.0}, 60.25)
    assert not flags.due({ANA: -12.0}, 60.5), "a level change alone is not news"
    assert flags.due({ANA: -12.0, BEN: -30.0}, 60.75)
    flags.published({ANA: -12.0, BEN: -30.0}, 60.75)
    assert flags.due({BEN: -30.0}, 61.0)
    flags.published({BEN: -30.0}, 61.0)
    assert flags.due({}, 61.25)


def test_speaking_flags_are_refreshed_every_two_seconds_while_anyone_speaks() -> None:
    flags = SpeakingFlags(refresh_s=2.0)
    flags.published({ANA: -20.0}, 10.0)
    assert not flags.due({ANA: -20.0}, 11.99)
    assert flags.due({ANA: -20.0}, 12.0)
    assert flags.due({ANA: -20.0}, 12.5), "due until published"
    flags.published({ANA: -20.0}, 12.0)
    assert not flags.due({ANA: -20.0}, 13.0)


# -- the adapter ------------------------------------------------------------------------------


@dataclass
class FakeConnection:
    closes: int = 0

    async def close(self) -> None:
        self.closes += 1


@dataclass
class FakeIngest:
    connections: dict[SpeakerId, FakeConnection] = field(default_factory=dict)


class Rig:
    """A director on the embedded LiveState, a real SpaceMedia (clock not started), a fake ingest."""

    def __init__(self, live: EmbeddedLiveState, media: SpaceMedia) -> None:
        self.live = live
        self.media = media
        self.ingest = FakeIngest()
        self.ended = 0
        self.resyncs = 0
        self.resync_commands: list[MediaCommand] = []
        self.director: SpaceDirector | None = None

    async def on_end(self) -> None:
        self.ended += 1
        assert self.director is not None
        await self.director.stop()  # as an owner would: safe from inside on_end

    async def resync(self) -> Sequence[MediaCommand]:
        self.resyncs += 1
        return self.resync_commands

    async def start(
        self,
        *,
        after: int = 0,
        initial: Sequence[MediaCommand] = (),
        config: DirectorConfig = FAST,
        live: Any = None,
        read_stage: Any = None,
    ) -> SpaceDirector:
        self.director = SpaceDirector(
            SPACE,
            live or self.live,
            self.media,
            self.ingest,
            start_after_seq=after,
            on_end=self.on_end,
            resync=self.resync,
            initial=initial,
            config=config,
            clock=lambda: T0,
            read_stage=read_stage,
        )
        await self.director.start()
        return self.director

    async def emit(self, type: str, data: Mapping[str, Any]) -> Event:
        return await self.live.append(SPACE, type, {"space_id": SPACE, **data}, T0)

    async def applied(self, sent: Event) -> None:
        director = self.director
        assert director is not None
        await until(lambda: director.after_seq >= sent.seq, f"event {sent.seq} ({sent.type})")

    def connect(self, user: SpeakerId) -> FakeConnection:
        self.media.add_speaker(user)
        connection = self.ingest.connections[user] = FakeConnection()
        if self.director is not None:
            self.director.speaker_connected(user)
        return connection


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    live = EmbeddedLiveState()
    media = SpaceMedia(SPACE, MediaConfig(), on_air=False)
    rig = Rig(live, media)
    yield rig
    if rig.director is not None:
        await rig.director.stop()
    await media.stop()
    await live.close()


async def test_go_live_puts_the_media_on_air(rig: Rig) -> None:
    await rig.start()
    assert not rig.media.on_air
    await rig.applied(await rig.emit("space.state", {"state": "live", "on_air": True}))
    assert rig.media.on_air


async def test_setting_the_delay_reaches_the_listener_program(rig: Rig) -> None:
    await rig.start()
    await rig.applied(await rig.emit("delay.set", {"delay_s": 12.5}))
    assert rig.media.delay_s == 12.5


async def test_the_dump_button_dumps_the_delay_buffer(rig: Rig) -> None:
    await rig.start()
    await rig.applied(await rig.emit("delay.set", {"delay_s": 5}))
    assert rig.media.program_stats.dumps == 0
    await rig.applied(await rig.emit("delay.dumped", {"by": "u-host00000000"}))
    assert rig.media.program_stats.dumps == 1


async def test_a_host_mutes_a_speaker_and_the_speaker_unmutes(rig: Rig) -> None:
    rig.connect(ANA)
    await rig.start()
    await rig.applied(await rig.emit("stage.muted", {"member": {"user_id": ANA, "muted": True}}))
    assert rig.media.mixer.is_muted(ANA)
    await rig.applied(await rig.emit("stage.muted", {"member": {"user_id": ANA, "muted": False}}))
    assert not rig.media.mixer.is_muted(ANA)


async def test_a_speaker_muted_before_connecting_joins_the_mix_muted(rig: Rig) -> None:
    await rig.start()
    await rig.applied(await rig.emit("stage.muted", {"member": {"user_id": ANA, "muted": True}}))
    rig.connect(ANA)
    assert rig.media.mixer.is_muted(ANA)


async def test_a_connect_path_that_forgets_to_tell_the_director_is_corrected(rig: Rig) -> None:
    director = await rig.start(initial=[SetMuted(ANA, True)])
    rig.media.add_speaker(ANA)  # joins the mixer unmuted, nobody calls speaker_connected
    await until(lambda: rig.media.mixer.is_muted(ANA), "the known mute to be re-applied")
    assert director.stats.mutes_reconciled == 1


@pytest.mark.parametrize(
    ("type", "by"),
    [("stage.left", "u-host00000000"), ("user.removed", "u-host00000000"), ("user.banned", "u-x")],
)
async def test_moved_removed_or_banned_speakers_are_cut_off(rig: Rig, type: str, by: str) -> None:
    ana = rig.connect(ANA)
    ben = rig.connect(BEN)
    await rig.start()
    await rig.applied(await rig.emit(type, {"user_id": ANA, "by": by}))
    assert ana.closes == 1
    assert ANA not in rig.media.mixer.speakers
    assert ben.closes == 0
    assert BEN in rig.media.mixer.speakers


async def test_a_disconnected_speaker_back_on_stage_starts_unmuted(rig: Rig) -> None:
    rig.connect(ANA)
    director = await rig.start(initial=[SetMuted(ANA, True)])
    await rig.applied(await rig.emit("stage.left", {"user_id": ANA, "by": ANA}))
    assert ANA not in director.muted
    rig.connect(ANA)
    assert not rig.media.mixer.is_muted(ANA)


async def test_ending_the_space_calls_on_end_once_and_applies_nothing_after(rig: Rig) -> None:
    await rig.live.set_speaking(SPACE, {ANA: -20.0}, T0)
    # One batch: the director reads all three together.
    await rig.emit("space.state", {"state": "ended", "on_air": False})
    await rig.emit("space.state", {"state": "ended", "on_air": False})
    await rig.emit("delay.set", {"delay_s": 9})
    director = await rig.start()
    await until(lambda: rig.ended == 1, "on_end")
    assert director.ended
    assert director.after_seq == 1
    assert await rig.live.speaking(SPACE) == {}, "nobody is speaking in an ended Space"
    assert rig.media.delay_s == 0.0, "nothing after the end is applied"


async def test_a_director_started_after_the_end_just_ends(rig: Rig) -> None:
    director = await rig.start(initial=[EndStream()])
    assert rig.ended == 1
    assert director.ended


async def test_initial_state_is_applied_before_start_returns(rig: Rig) -> None:
    rig.connect(BEN)
    await rig.start(initial=[SetOnAir(True), SetDelay(3.0), SetMuted(BEN, True)], after=7)
    assert rig.media.on_air
    assert rig.media.delay_s == 3.0
    assert rig.media.mixer.is_muted(BEN)


async def test_a_malformed_event_is_counted_and_the_director_keeps_going(rig: Rig) -> None:
    director = await rig.start()
    await rig.emit("delay.set", {"delay_s": "a lot"})
    await rig.emit("space.state", {"state": "exploded"})
    await rig.applied(await rig.emit("delay.set", {"delay_s": 2}))
    assert rig.media.delay_s == 2.0
    assert director.stats.events_malformed == 2
    assert director.stats.events_seen == 3


async def test_a_command_the_media_refuses_is_counted_and_the_next_still_applies(rig: Rig) -> None:
    director = await rig.start(initial=[SetDelay(99.0), SetOnAir(True)])  # 99 s is out of range
    assert rig.media.on_air
    assert director.stats.commands_failed == 1


async def test_history_lost_in_an_overflowing_log_resyncs_then_follows_on(rig: Rig) -> None:
    rig.resync_commands = [SetOnAir(True), SetDelay(6.0)]
    for n in range(EVENT_LOG_LIMIT + 1):
        await rig.emit("hand.raised", {"user_id": f"g-{n:012d}"})
    director = await rig.start(after=0)  # the first event it needs is gone
    await until(lambda: rig.resyncs == 1, "resync")
    assert rig.media.on_air
    assert rig.media.delay_s == 6.0
    assert director.after_seq == EVENT_LOG_LIMIT + 1
    await rig.applied(await rig.emit("delay.set", {"delay_s": 1}))
    assert rig.media.delay_s == 1.0
    assert rig.resyncs == 1


async def test_a_log_that_restarted_behind_the_director_is_noticed_without_new_events(
    rig: Rig,
) -> None:
    # The store restarted: the director had applied up to 40, the log now holds 2 events.
    await rig.emit("space.created", {})
    await rig.emit("delay.set", {"delay_s": 4})
    rig.resync_commands = [SetDelay(4.0)]
    director = await rig.start(after=40, config=DirectorConfig(wait_timeout_s=0.02))
    await until(lambda: rig.resyncs == 1, "resync after the wait times out")
    assert director.after_seq == 2
    assert rig.media.delay_s == 4.0
    await rig.applied(await rig.emit("delay.dumped", {}))
    assert rig.media.program_stats.dumps == 1


async def test_a_log_that_restarted_and_already_passed_the_director_is_not_read_from_its_middle(
    rig: Rig,
) -> None:
    # Redis came back empty and took three commands before the director looked: the new log's
    # seq 3 is past the director's 2, so only the log's id tells that 1 and 2 are not old news.
    await rig.emit("space.created", {})
    director = await rig.start()
    await rig.applied(await rig.emit("delay.set", {"delay_s": 4}))
    await rig.live.forget_space(SPACE)
    rig.resync_commands = [SetDelay(9.0)]  # what the records say now
    await rig.emit("delay.set", {"delay_s": 9})  # 1: missed if the log were read from 2 on
    await rig.emit("hand.raised", {"user_id": "g-000000000001"})
    third = await rig.emit("hand.raised", {"user_id": "g-000000000002"})
    await until(lambda: rig.resyncs == 1, "a resync on the new log")
    assert rig.media.delay_s == 9.0
    await until(lambda: director.after_seq >= third.seq, "the director to catch up")


class FlakyLive:
    """The embedded store, but `events_since` fails the first `failures` times (Redis down)."""

    def __init__(self, live: EmbeddedLiveState, failures: int) -> None:
        self._live = live
        self.failures = failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self._live, name)

    async def events_since(self, space_id: str, after_seq: int, limit: int = 500) -> Any:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the store is down")
        return await self._live.events_since(space_id, after_seq, limit)


async def test_a_store_outage_is_retried_and_nothing_is_lost(rig: Rig) -> None:
    flaky = FlakyLive(rig.live, failures=2)
    director = await rig.start(live=flaky, config=DirectorConfig(retry_s=0.01))
    await rig.applied(await rig.emit("space.state", {"state": "live"}))
    assert rig.media.on_air
    assert director.stats.store_errors == 2


async def test_speaking_is_published_while_a_speaker_talks_and_cleared_after(rig: Rig) -> None:
    rig.connect(ANA)
    rig.connect(BEN)
    await rig.live.set_speaking(SPACE, {BEN: -30.0}, T0)  # stale, from a node that died
    director = await rig.start()
    await until(lambda: director.stats.speaking_published == 1, "the first look")
    assert await rig.live.speaking(SPACE) == {}, "the first look clears stale flags"
    for index in range(5):
        rig.media.push(ANA, tone(index), index * FRAME_SAMPLES)
        await rig.media.tick()
    assert set(rig.media.speaking_levels()) == {ANA}
    await until(lambda: director.stats.speaking_published >= 2, "Ana speaking to be published")
    speaking = await rig.live.speaking(SPACE)
    assert set(speaking) == {ANA}
    assert -20.0 < speaking[ANA] < 0.0
    hold_ticks = 20  # past the mixer's 0.3 s hold
    for _ in range(hold_ticks):
        await rig.media.tick()
    assert rig.media.speaking_levels() == {}
    await until(lambda: director.stats.speaking_published >= 3, "silence to be published")
    assert await rig.live.speaking(SPACE) == {}


class SlowSpeakingLive:
    """The embedded store whose `set_speaking` blocks until released, counting overlaps."""

    def __init__(self, live: EmbeddedLiveState) -> None:
        self._live = live
        self.release = asyncio.Event()
        self.in_flight = 0
        self.most_in_flight = 0
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._live, name)

    async def set_speaking(self, space_id: str, speaking: Mapping[str, float], now: float) -> None:
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.release.wait()
            await self._live.set_speaking(space_id, speaking, now)
        finally:
            self.in_flight -= 1


async def test_a_slow_store_never_has_more_than_one_speaking_publish_outstanding(
    rig: Rig,
) -> None:
    slow = SlowSpeakingLive(rig.live)
    rig.connect(ANA)
    director = await rig.start(live=slow)
    await until(lambda: slow.calls == 1, "the first publish")
    for index in range(5):  # Ana starts talking while the first publish hangs
        rig.media.push(ANA, tone(index), index * FRAME_SAMPLES)
        await rig.media.tick()
    assert rig.media.speaking_levels() != {}
    # Not synchronisation: time passes (20 speaking intervals) to give a second publish a chance.
    await asyncio.sleep(0.2)
    assert slow.calls == 1
    slow.release.set()
    await until(lambda: director.stats.speaking_published >= 2, "Ana published once released")
    assert slow.most_in_flight == 1
    assert set(await rig.live.speaking(SPACE)) == {ANA}


async def test_stop_cancels_both_tasks_cleanly(rig: Rig) -> None:
    director = await rig.start()
    await director.stop()
    await director.stop()
    await rig.emit("space.state", {"state": "live"})
    assert rig.live.waiting(SPACE) == 0
    assert not rig.media.on_air


# -- with the real control plane --------------------------------------------------------------

HOST = Actor(UserId("u-host00000000"), "Hana Host")
SPEAKER = Actor(UserId("u-speaker00000"), "Sam Speaker")
GUEST = Actor(UserId("u-guest0000000"), "Gil Guest")


async def test_the_director_follows_a_whole_space_driven_by_the_control_plane(
    tmp_path: Path,
) -> None:
    records = await open_records(f"sqlite+aiosqlite:///{tmp_path / 'townhall.db'}")
    live = EmbeddedLiveState()
    control = SpaceControl(records, live)
    space = await control.create(HOST, NewSpace("Launch"))
    for actor in (SPEAKER, GUEST):
        await records.put_invitation(space.id, actor.user_id, Role.SPEAKER, HOST.user_id, 0.0)
        await control.accept_invitation(actor, space.id)
    await control.mute(SPEAKER, space.id, SPEAKER.user_id)  # muted in the green room

    media = SpaceMedia(space.id, MediaConfig(), on_air=False)
    ingest = FakeIngest()
    ended: list[str] = []

    async def on_end() -> None:
        ended.append(space.id)

    async def resync() -> list[MediaCommand]:
        fresh = await control.space(space.id)
        return state_commands(fresh, await control.stage(space.id), ingest.connections)

    start = await live.latest_seq(space.id)
    director = SpaceDirector(
        space.id,
        live,
        media,
        ingest,
        start_after_seq=start,
        on_end=on_end,
        resync=resync,
        initial=await resync(),
        config=DirectorConfig(speaking_interval_s=0.01),
    )
    await director.start()
    connections: dict[UserId, FakeConnection] = {}
    for actor in (HOST, SPEAKER, GUEST):
        user = SpeakerId(actor.user_id)
        media.add_speaker(user)
        connections[actor.user_id] = ingest.connections[user] = FakeConnection()
        director.speaker_connected(user)

    async def caught_up() -> None:
        latest = await live.latest_seq(space.id)
        await until(lambda: director.after_seq >= latest, f"the director to reach {latest}")

    try:
        assert not media.on_air
        assert media.mixer.is_muted(SpeakerId(SPEAKER.user_id))
        await control.go_live(HOST, space.id)
        await control.set_delay(HOST, space.id, 10)
        await caught_up()
        assert media.on_air
        assert media.delay_s == 10.0

        await control.dump(HOST, space.id)
        await control.unmute(SPEAKER, space.id, SPEAKER.user_id)
        await control.mute(HOST, space.id, GUEST.user_id)
        await caught_up()
        assert media.program_stats.dumps == 1
        assert not media.mixer.is_muted(SpeakerId(SPEAKER.user_id))
        assert media.mixer.is_muted(SpeakerId(GUEST.user_id))

        await control.move_to_audience(HOST, space.id, SPEAKER.user_id)
        await control.ban(HOST, space.id, GUEST.user_id)
        await caught_up()
        assert connections[SPEAKER.user_id].closes == 1
        assert connections[GUEST.user_id].closes == 1
        assert media.speakers == [SpeakerId(HOST.user_id)]

        await control.end(HOST, space.id)
        await until(lambda: ended == [space.id], "on_end")
        assert director.stats.events_malformed == 0
    finally:
        await director.stop()
        await media.stop()
        await live.close()
        await records.close()


# -- room state for the stream ---------------------------------------------------------------------


def member(user: str, name: str, role: Role = Role.SPEAKER, muted: bool = False) -> StageMember:
    return StageMember(SpaceId(SPACE), UserId(user), role, name, T0, muted_by_host=muted)


async def test_the_stream_gets_the_stage_at_start_and_after_every_stage_change(rig: Rig) -> None:
    stage = [member(ANA, "Ana", Role.HOST)]

    async def read_stage() -> list[StageMember]:
        return list(stage)

    await rig.start(read_stage=read_stage)
    assert rig.media.stage == (Seat(ANA, "Ana", "host", False),)
    stage.append(member(BEN, "Ben", muted=True))
    await rig.applied(await rig.emit("stage.joined", {"member": {"user_id": BEN}}))
    assert rig.media.stage == (Seat(ANA, "Ana", "host", False), Seat(BEN, "Ben", "speaker", True))
    stage.pop()
    await rig.applied(await rig.emit("user.banned", {"user_id": BEN, "by": ANA}))
    assert rig.media.stage == (Seat(ANA, "Ana", "host", False),)


async def test_the_stream_gets_reactions_the_count_and_recent_bans_as_the_snapshot_has_them(
    rig: Rig,
) -> None:
    await rig.live.add_reaction(SPACE, "👏", int(T0), 3)
    await rig.live.mark_listener(SPACE, "k" * 20, T0)
    director = await rig.start()
    await until(lambda: rig.media.audience is not None, "the first audience")
    assert rig.media.audience == Audience((("👏", 3),), 1, REACTION_WINDOW_S, (), 1.0, 0)
    await rig.applied(await rig.emit("user.removed", {"user_id": BEN, "by": ANA}))
    await until(
        lambda: rig.media.audience is not None and bool(rig.media.audience.moderation),
        "the removal in the audience",
        within=10,
    )
    assert rig.media.audience is not None
    assert rig.media.audience.moderation == ((BEN, "removed", T0),)
    assert director.stats.audience_reads_failed == 0
    pinned = await rig.emit("space.pinned", {"url": "https://example.org/"})
    await until(
        lambda: rig.media.audience is not None and rig.media.audience.revision == pinned.seq,
        "the pin to be announced in the stream",
        within=10,
    )

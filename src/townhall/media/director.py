"""The media director: the node that runs a Space's media follows that Space's event log.

API processes never touch media. A control-plane command (`spaces.control`) writes the records
and appends one event to the Space's ordered log in LiveState; the director on the media node wakes
on that append (in-process for the embedded store, pub/sub for Redis), turns the event into media
commands and applies them between two mixer ticks. So a Go live, mute, ban or dump issued on any
process reaches the audio within milliseconds, and the media node needs no API of its own.

Theory of operation
-------------------
*Sans-I/O core.* `translate(event)` maps one control event to the media commands it implies, a
pure function over the event's JSON data (`media_commands` is the same without the reason).
`state_commands(space, stage, connected)` gives the commands that bring media to the state the
records describe; callers use it for `initial` and `resync`. `SpeakingFlags` decides, from the
levels and the time it is given, when speaking indicators must be published. None of them reads a
clock, touches media or awaits.

| event         | data                                    | commands                     |
| ------------- | --------------------------------------- | ---------------------------- |
| space.state   | {"state": "live"}                       | SetOnAir(True)               |
| space.state   | {"state": "green_room" / "scheduled"}   | SetOnAir(False)              |
| space.state   | {"state": "ended" / "cancelled"}        | EndStream()                  |
| delay.set     | {"delay_s": 0–30}                       | SetDelay(delay_s)            |
| delay.dumped  | (anything)                              | Dump()                       |
| stage.muted   | {"member": {"user_id", "muted"}}        | SetMuted(user_id, muted)     |
| stage.left    | {"user_id"} (moved to audience / left)  | Disconnect(user_id)          |
| user.removed  | {"user_id"}                             | Disconnect(user_id)          |
| user.banned   | {"user_id"}                             | Disconnect(user_id)          |
| anything else |                                         | none                         |

An event of a listed type whose data is not as shown is *malformed*: it yields no command and is
counted, never raised. A bad event must not stop the audio, and the ones after it still apply.

*The adapter* (`SpaceDirector`) is two tasks. The follower loops `wait_for_events(after, ~5 s)` →
`events_since(after)` → apply each event's commands in order → `after = event.seq`. It asks
`events_since` after a timeout too, so a log that was lost and started again (a restarted embedded
store, `forget_space`) is noticed even when no new event would wake it; and it compares the log's
id (`LiveState.log_id`) whenever events arrive, so a log that started again and has already
passed `after` (Redis restarted empty, then a few commands) is noticed too rather than read from
its middle. When `events_since` answers `None`, or the log id changed, the history it needed is gone: it reads `latest_seq` *first*, then awaits the caller's
`resync()`, which re-reads the Space and its stage from the records and returns `state_commands`
for them; it applies those and continues after that `latest_seq`. Events appended while the
records were read are applied again, which is harmless: every command but Dump sets a state
(idempotent) and a dump is never in the records, so it is applied exactly once. Errors of the
store (Redis down) are counted and retried after `retry_s`; an error applying one command is
counted and the next command still runs.

The speaking task wakes every `speaking_interval_s` (its own timer, not the 20 ms tick), reads the
last tick's `SpaceMedia.speaking_levels()` and publishes them with `LiveState.set_speaking` when
`SpeakingFlags` says so: when the set of speakers changed, or every `speaking_refresh_s` while
anyone speaks (the Redis store lets flags lapse after `SPEAKING_TTL_S`). It awaits each publish
before the next, so there is never more than one outstanding, however slow the store.

*Room state for the stream* (see `roomstate`). The director also gives the media what listeners
are shown beside the audio: the stage as the records have it (`read_stage`), read again after
`initial`, after a resync and after every event that changes the stage (`STAGE_EVENTS`: one
records read per stage change, not per listener or per second); and, from the speaking task every
`audience_interval_s`, the audience as the snapshot computes it (reaction totals of the last
REACTION_WINDOW_S, the approximate listener count) with the removals and bans of the last
MODERATION_WINDOW_S seen in the log, so a removed person's page learns it from the stream, and the
seq of the last event that changed what only the snapshot says (`SNAPSHOT_EVENTS`).

*Mutes outlive connections.* The director keeps the mute state the log (and `initial`/`resync`)
gave it for every stage member, connected or not, because a speaker who connects later joins the
mixer unmuted. The connect path calls `speaker_connected(user)` right after `Ingest.connect`
returns (before ICE completes, so before any of their audio arrives); the speaking task also
re-applies the known state to every speaker in the mixer each round, a net for a caller that
forgot. An entry is dropped when the member leaves the stage, so the table is bounded by the stage.

*Ending.* EndStream publishes an empty speaking set and calls `on_end` once; the owner stops media
and ingest there (and may call `stop()`, which is safe from inside `on_end`). The follower then
returns: an ended Space has nothing more to follow.

Speaker ids in the mixer are the control plane's user ids: the stage's connect path must connect a
member as `SpeakerId(user_id)` for mutes and removals to find them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from townhall.media.audio import SpeakerId
from townhall.media.delay import MAX_DELAY_S
from townhall.media.pipeline import SpaceMedia
from townhall.media.roomstate import Audience, Seat
from townhall.spaces.counts import (
    MODERATION_EVENTS,
    MODERATION_KEPT,
    MODERATION_WINDOW_S,
    REACTION_WINDOW_S,
    estimate_listeners,
    presence_sample,
)
from townhall.spaces.model import Space, SpaceState, StageMember
from townhall.state.live import Event, LiveState
from townhall.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# -- commands ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetOnAir:
    on_air: bool


@dataclass(frozen=True)
class SetDelay:
    seconds: float


@dataclass(frozen=True)
class Dump:
    pass


@dataclass(frozen=True)
class SetMuted:
    user: SpeakerId
    muted: bool


@dataclass(frozen=True)
class Disconnect:
    """Off the stage (moved to the audience, left, removed, banned): close their connection."""

    user: SpeakerId


@dataclass(frozen=True)
class EndStream:
    pass


MediaCommand = SetOnAir | SetDelay | Dump | SetMuted | Disconnect | EndStream


@dataclass(frozen=True)
class Malformed:
    """An event of a type the director acts on, with data it cannot use; `reason` says why."""

    reason: str


# -- the sans-I/O core ---------------------------------------------------------------------------

_STATE_COMMANDS: Mapping[str, MediaCommand] = {
    SpaceState.LIVE.value: SetOnAir(True),
    SpaceState.GREEN_ROOM.value: SetOnAir(False),
    SpaceState.SCHEDULED.value: SetOnAir(False),
    SpaceState.ENDED.value: EndStream(),
    SpaceState.CANCELLED.value: EndStream(),
}
_DISCONNECTING = frozenset({"stage.left", "user.removed", "user.banned"})
_ACTED_ON = frozenset({"space.state", "delay.set", "delay.dumped", "stage.muted"}) | _DISCONNECTING
# Events after which the stage listeners are shown is read again (`read_stage`).
STAGE_EVENTS = frozenset({"stage.joined", "stage.role", "stage.muted", "host.transferred"}) | (
    _DISCONNECTING
)
# Events that change what only the snapshot carries (title, pinned link): the stream says when one
# happened (`Audience.revision`), so a page that reads the snapshot rarely reads it again at once.
SNAPSHOT_EVENTS = frozenset({"space.pinned", "space.edited"})


def seat(member: StageMember) -> Seat:
    """A stage member as listeners see them (the snapshot's `member_json`, less the details)."""
    return Seat(
        member.user_id,
        member.display_name,
        member.role.value,
        member.muted_by_host or member.self_muted,
    )


def _user_id(data: object) -> SpeakerId | None:
    user = data.get("user_id") if isinstance(data, Mapping) else None
    return SpeakerId(user) if isinstance(user, str) and user else None


def translate(event: Event) -> list[MediaCommand] | Malformed:
    """The media commands one control event implies (see the table above); never raises."""
    kind = event.type
    data: object = event.data  # JSON from the log: typed as an object, checked, never trusted
    if not isinstance(data, Mapping):
        return Malformed("data is not an object") if kind in _ACTED_ON else []
    if kind == "space.state":
        state = data.get("state")
        command = _STATE_COMMANDS.get(state) if isinstance(state, str) else None
        return [command] if command is not None else Malformed(f"unknown state {state!r}")
    if kind == "delay.set":
        seconds = data.get("delay_s")
        if (
            isinstance(seconds, int | float)
            and not isinstance(seconds, bool)
            and math.isfinite(seconds)
            and 0.0 <= seconds <= MAX_DELAY_S
        ):
            return [SetDelay(float(seconds))]
        return Malformed(f"delay_s {seconds!r} is not 0–{MAX_DELAY_S:g} s")
    if kind == "delay.dumped":
        return [Dump()]
    if kind == "stage.muted":
        member = data.get("member")
        user = _user_id(member)
        muted = member.get("muted") if isinstance(member, Mapping) else None
        if user is None or not isinstance(muted, bool):
            return Malformed("member needs a user_id and a boolean muted")
        return [SetMuted(user, muted)]
    if kind in _DISCONNECTING:
        user = _user_id(data)
        return [Disconnect(user)] if user is not None else Malformed("no user_id")
    return []


def media_commands(event: Event) -> list[MediaCommand]:
    """`translate` without the reason: a malformed event implies no command."""
    found = translate(event)
    return [] if isinstance(found, Malformed) else found


def state_commands(
    space: Space, stage: Iterable[StageMember], connected: Iterable[SpeakerId] = ()
) -> list[MediaCommand]:
    """The commands that bring media to what the records say: on air, delay, every member's mute,
    and a Disconnect for anyone `connected` who is no longer on the stage. For `initial` and
    `resync`; an ended or cancelled Space yields just EndStream."""
    if space.state.is_over:
        return [EndStream()]
    members = list(stage)
    on_stage = {SpeakerId(m.user_id) for m in members}
    commands: list[MediaCommand] = [
        SetOnAir(space.state is SpaceState.LIVE),
        SetDelay(space.delay_s),
    ]
    commands += [SetMuted(SpeakerId(m.user_id), m.muted_by_host or m.self_muted) for m in members]
    commands += [Disconnect(user) for user in connected if user not in on_stage]
    return commands


class SpeakingFlags:
    """When to publish speaking indicators: on a change of who speaks, and every `refresh_s` while
    anyone does (so flags with a TTL never lapse mid-sentence). `now` is any monotonic clock."""

    def __init__(self, refresh_s: float) -> None:
        self.refresh_s = refresh_s
        self._published: frozenset[str] | None = None  # None: nothing yet; stale flags may exist
        self._published_at = -math.inf

    def due(self, levels: Mapping[str, float], now: float) -> bool:
        speakers = frozenset(levels)
        if speakers != self._published:
            return True
        return bool(speakers) and now - self._published_at >= self.refresh_s

    def published(self, levels: Mapping[str, float], now: float) -> None:
        self._published = frozenset(levels)
        self._published_at = now


# -- the asyncio adapter -------------------------------------------------------------------------


class StageConnection(Protocol):
    async def close(self) -> None: ...


class StageConnections(Protocol):
    """What the director needs of `Ingest`: the live connection of each speaker."""

    @property
    def connections(self) -> Mapping[SpeakerId, StageConnection]: ...


if TYPE_CHECKING:
    from townhall.media.ingest import Ingest

    def _ingest_fits(ingest: Ingest) -> StageConnections:  # checked by mypy, never called
        return ingest


@dataclass(frozen=True)
class DirectorConfig:
    wait_timeout_s: float = 5.0  # longest wait for an event before asking the log anyway
    speaking_interval_s: float = 0.25  # how often the speaking set is looked at
    speaking_refresh_s: float = 2.0  # republish at least this often while anyone speaks
    retry_s: float = 1.0  # pause after the live state failed before asking again
    audience_interval_s: float = 1.0  # how often reactions and the count are read for the stream


@dataclass
class DirectorStats:
    events_seen: int = 0
    events_malformed: int = 0
    commands_applied: int = 0
    commands_failed: int = 0
    resyncs: int = 0
    resyncs_failed: int = 0
    store_errors: int = 0
    speaking_published: int = 0
    speaking_failed: int = 0
    mutes_reconciled: int = 0  # mixer found out of step with the known mute state and corrected
    stage_reads_failed: int = 0  # the stage for the stream could not be read (kept as it was)
    audience_reads_failed: int = 0  # reactions or the count could not be read (kept as they were)


class SpaceDirector:
    """Follows one Space's event log and applies it to that Space's media (module docstring).

    `start_after_seq`: the last event already reflected in `initial` (read `latest_seq` *before*
    reading the records `initial` comes from). `initial`: `state_commands` for the Space as the
    records have it, applied by `start()` before it returns, so a director started late or after
    a restart converges. `resync`: awaited when the log no longer holds the events the director
    needs; it re-reads the Space and its stage from the records and returns `state_commands` for
    them (pass the ingest's connected speakers, so people taken off the stage meanwhile are cut
    off). `on_end`: called at most once, when the Space ends or is cancelled; the owner stops media
    and ingest there and must tolerate having ended the Space by another path as well.
    """

    def __init__(
        self,
        space_id: str,
        live: LiveState,
        media: SpaceMedia,
        ingest: StageConnections,
        *,
        start_after_seq: int,
        on_end: Callable[[], Awaitable[None]],
        resync: Callable[[], Awaitable[Sequence[MediaCommand]]],
        initial: Sequence[MediaCommand] = (),
        config: DirectorConfig = DirectorConfig(),
        clock: Callable[[], float] = time.time,
        read_stage: Callable[[], Awaitable[Sequence[StageMember]]] | None = None,
    ) -> None:
        self.space_id = space_id
        self.live = live
        self.media = media
        self.ingest = ingest
        self.config = config
        self.stats = DirectorStats()
        self._after = start_after_seq
        self._log_id = ""  # the log incarnation `_after` counts in ("" before it is known)
        self._on_end = on_end
        self._resync = resync
        self._initial = list(initial)
        self._clock = clock
        self._muted: dict[SpeakerId, bool] = {}
        self._flags = SpeakingFlags(config.speaking_refresh_s)
        self._started = False
        self._stopped = False
        self._ended = False
        self._follower: asyncio.Task[None] | None = None
        self._speaking: asyncio.Task[None] | None = None
        self._read_stage = read_stage
        self._listeners: int | None = None  # the last estimate shown (sets the beacon rate)
        self._audience_at = -math.inf
        self._moderation: deque[tuple[str, str, float]] = deque(maxlen=MODERATION_KEPT)
        self._revision = 0

    @property
    def after_seq(self) -> int:
        """The last event applied: the director resumes after it."""
        return self._after

    @property
    def ended(self) -> bool:
        return self._ended

    def _over(self) -> bool:
        # A call, not the attribute: type checkers would keep `_ended` narrowed across awaits.
        return self._ended

    @property
    def muted(self) -> Mapping[SpeakerId, bool]:
        """The mute state the log gave for each stage member, connected or not."""
        return dict(self._muted)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Apply `initial` (the state the records describe), then follow the log from
        `start_after_seq`. Returns once `initial` is applied."""
        if self._started:
            return
        self._started = True
        with contextlib.suppress(Exception):  # unknown stays "": the first events set it
            self._log_id = await self.live.log_id(self.space_id)
        await self._apply_all(self._initial)
        self._initial = []
        await self._refresh_stage()
        if self._over() or self._stopped:  # already over (on_end has run) or stopped meanwhile
            return
        self._follower = asyncio.create_task(self._follow(), name=f"director-{self.space_id}")
        self._speaking = asyncio.create_task(
            self._publish_speaking(), name=f"director-speaking-{self.space_id}"
        )

    async def stop(self) -> None:
        """Stop following and publishing. Safe from inside `on_end` (it runs on the follower)."""
        self._stopped = True
        await self._stop_speaking()
        follower, self._follower = self._follower, None
        if follower is not None:
            await cancel_and_wait(follower)  # never the caller itself (on_end runs on it)

    async def _stop_speaking(self) -> None:
        task, self._speaking = self._speaking, None
        if task is not None:
            await cancel_and_wait(task)

    def speaker_connected(self, user: SpeakerId) -> None:
        """The connect path calls this right after `Ingest.connect`: a member muted before they
        connected joins the mixer muted."""
        muted = self._muted.get(user)
        if muted is not None and user in self.media.mixer.speakers:
            self.media.mixer.set_muted(user, muted)

    # -- following the log ----------------------------------------------------------------------
    async def _follow(self) -> None:
        while not self._over():
            try:
                await self.live.wait_for_events(
                    self.space_id, self._after, self.config.wait_timeout_s
                )
                events = await self.live.events_since(self.space_id, self._after)
                log_id = await self.live.log_id(self.space_id) if events else self._log_id
            except Exception:
                self.stats.store_errors += 1
                log.warning("space %s: reading the event log failed", self.space_id, exc_info=True)
                await asyncio.sleep(self.config.retry_s)
                continue
            if events is None or (self._log_id and log_id != self._log_id):
                if not await self._resync_now():
                    await asyncio.sleep(self.config.retry_s)
                continue
            self._log_id = log_id
            for event in events:
                if self._over():
                    break
                self.stats.events_seen += 1
                try:
                    found = translate(event)
                except Exception as exc:  # translate never raises; a bug must not stop the audio
                    found = Malformed(f"translate failed: {exc!r}")
                if isinstance(found, Malformed):
                    self.stats.events_malformed += 1
                    log.warning(
                        "space %s: ignored malformed %r event %d: %s",
                        self.space_id,
                        event.type,
                        event.seq,
                        found.reason,
                    )
                else:
                    await self._apply_all(found)
                self._note_moderation(event)
                if event.type in STAGE_EVENTS and not self._over():
                    await self._refresh_stage()
                self._after = event.seq

    async def _resync_now(self) -> bool:
        """History lost: re-read the state from the caller, continue after the log's latest."""
        self.stats.resyncs += 1
        try:
            latest = await self.live.latest_seq(self.space_id)
            log_id = await self.live.log_id(self.space_id)
            commands = await self._resync()
        except Exception:
            self.stats.resyncs_failed += 1
            log.warning("space %s: resync failed", self.space_id, exc_info=True)
            return False
        log.info("space %s: event history lost after %d; resynced", self.space_id, self._after)
        await self._apply_all(commands)
        await self._refresh_stage()
        self._after, self._log_id = latest, log_id
        return True

    async def _apply_all(self, commands: Iterable[MediaCommand]) -> None:
        for command in commands:
            if self._over():
                return
            try:
                await self._apply(command)
            except Exception:
                self.stats.commands_failed += 1
                log.exception("space %s: applying %r failed", self.space_id, command)
            else:
                self.stats.commands_applied += 1

    async def _apply(self, command: MediaCommand) -> None:
        media = self.media
        match command:
            case SetOnAir(on_air):
                media.set_on_air(on_air)
            case SetDelay(seconds):
                media.set_delay(seconds)
            case Dump():
                media.dump()
            case SetMuted(user, muted):
                self._muted[user] = muted
                if user in media.mixer.speakers:
                    media.mixer.set_muted(user, muted)
            case Disconnect(user):
                self._muted.pop(user, None)  # off the stage: back on it, they start unmuted
                connection = self.ingest.connections.get(user)
                try:
                    if connection is not None:
                        await connection.close()
                finally:  # out of the mix even if closing failed, or without a connection at all
                    media.remove_speaker(user)
            case EndStream():
                await self._end()

    # -- room state for the stream ----------------------------------------------------------------
    async def _refresh_stage(self) -> None:
        """Read the stage from the records and hand it to the media (what listeners are shown)."""
        if self._read_stage is None:
            return
        try:
            members = await self._read_stage()
        except Exception:
            self.stats.stage_reads_failed += 1
            log.warning("space %s: reading the stage failed", self.space_id, exc_info=True)
            return
        self.media.set_stage(tuple(seat(m) for m in members))

    def _note_moderation(self, event: Event) -> None:
        if event.type in SNAPSHOT_EVENTS:
            self._revision = event.seq
        action = MODERATION_EVENTS.get(event.type)
        user = _user_id(event.data) if action is not None else None
        if action is not None and user is not None:
            self._moderation.append((user, action, event.at))

    async def _refresh_audience(self, now: float) -> None:
        """Reactions, the listener count and recent moderation, as the snapshot shows them."""
        second = int(now)
        try:
            totals = await self.live.reaction_totals(
                self.space_id, second - REACTION_WINDOW_S, second
            )
            sampled = await self.live.listener_count(self.space_id, now)
        except Exception:
            self.stats.audience_reads_failed += 1
            log.warning("space %s: reading the audience failed", self.space_id, exc_info=True)
            return
        self._listeners = estimate_listeners(sampled, self._listeners)
        while self._moderation and self._moderation[0][2] < now - MODERATION_WINDOW_S:
            self._moderation.popleft()
        self.media.set_audience(
            Audience(
                tuple(sorted(totals.items())),
                self._listeners,
                REACTION_WINDOW_S,
                tuple(self._moderation),
                presence_sample(self._listeners),
                self._revision,
            )
        )

    async def _end(self) -> None:
        self._ended = True
        await self._stop_speaking()
        try:
            await self.live.set_speaking(self.space_id, {}, self._clock())
        except Exception:
            self.stats.speaking_failed += 1
            log.warning("space %s: clearing speaking flags failed", self.space_id, exc_info=True)
        await self._on_end()

    # -- speaking indicators --------------------------------------------------------------------
    async def _publish_speaking(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.config.speaking_interval_s)
            self._reconcile_mutes()
            levels = {str(user): level for user, level in self.media.speaking_levels().items()}
            now = loop.time()
            if now - self._audience_at >= self.config.audience_interval_s:
                self._audience_at = now
                await self._refresh_audience(self._clock())
            if not self._flags.due(levels, now):
                continue
            try:  # awaited here: never more than one publish outstanding
                await self.live.set_speaking(self.space_id, levels, self._clock())
            except Exception:
                self.stats.speaking_failed += 1
                log.warning("space %s: publishing speaking failed", self.space_id, exc_info=True)
            else:
                self.stats.speaking_published += 1
                self._flags.published(levels, now)

    def _reconcile_mutes(self) -> None:
        mixer = self.media.mixer
        for user in mixer.speakers:
            muted = self._muted.get(user)
            if muted is not None and mixer.is_muted(user) != muted:
                mixer.set_muted(user, muted)
                self.stats.mutes_reconciled += 1

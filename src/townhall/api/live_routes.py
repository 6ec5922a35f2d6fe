"""What changes every second: the listeners' cacheable snapshot, presence beacons, and the stage's
ordered event stream over WebSocket.

Listeners never get a push from the origin: they fetch `/snapshot`, a plain GET that is the same
for everyone (Cache-Control: public, max-age=1), so any HTTP cache answers for the whole audience
and the origin builds it at most once per second per Space. The listener page reads it once a
second only until the room state in the stream reaches it (`media.roomstate`: stage, speaking,
on air, reactions, count and moderation in step with the audio, delay and dump included), then
every 15 s for what the stream does not carry (title, pinned link, recording), and at once when
the stream says the title or the link changed. Their own hand state
comes from the private `/me` call. Stage members (host, co-hosts, speakers) get `/events`: every
event of the Space's log, in order, with sequence numbers, resumable after a reconnect.

A removal, a ban or an invitation to speak reaches the person's listener page the same way: the
snapshot lists who was removed, banned or invited in the last MODERATION_WINDOW_S seconds (user
ids only, as the stage list does), read from the Space's event log once per build, so their page
says so within a second without a private call per listener. (The stage's pages get the same
events on their WebSocket.)

The listener count is approximate by design: a sample of listeners (the snapshot tells each client
the current `presence_sample` rate; a client beacons only if its own random draw is below it) send a
presence beacon every 30 s, and the count is the distinct beacons in the last minute divided by
the rate. At a million listeners the origin sees a few thousand beacons a minute. A beacon from a
listener with an identity (the session cookie or a bearer token, verified as every request's is:
a signature and one revocation lookup) also marks them present by name, for the host's audience
list (api/audience_routes.py); one more bounded write per sampled beacon, nothing per listener on
the audio path.
"""

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field

from townhall.api.auth import COOKIE, Sessions, client_address, identity_from, presented_token
from townhall.api.errors import NotFound
from townhall.api.params import InviteCodeQ
from townhall.api.tokens import TokenError
from townhall.delivery.capability import MediaKeys, matches
from townhall.ratelimit.table import PRESENCE, take
from townhall.spaces.control import ControlError, SpaceControl, member_json
from townhall.spaces.counts import (
    MODERATION_EVENTS,
    MODERATION_KEPT,
    MODERATION_WINDOW_S,
    REACTION_WINDOW_S,
    presence_sample,
)
from townhall.spaces.model import SpaceId, SpaceState, UserId, Visibility, is_space_id
from townhall.state.live import LiveState

PING_INTERVAL_S = 15.0
SNAPSHOT_CACHE = "public, max-age=1"  # what a public Space's snapshot may be cached for


class PresenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


@dataclass
class _Moderation:
    """What one process has read of a Space's event log for the snapshot's moderation list."""

    log_id: str
    after: int  # the last event read
    recent: deque[dict[str, Any]]  # {"user_id", "action", "at"}, oldest first


@dataclass(frozen=True)
class _Snapshot:
    second: int
    body: bytes
    invite_code: str | None  # private Spaces: only requests carrying it get the snapshot


class Snapshots:
    """The snapshot built this second per Space (at most one build per Space per second).

    Shared with the fast path (api/fastpath.py), which answers a public Space's current one
    without the framework: at most an audience's polling, it is the most frequent API call."""

    KEPT = 10_000  # Spaces remembered (the oldest is forgotten first)
    STALE_WHILE_BUILDING = 5  # seconds a snapshot may be given while a newer one is built

    def __init__(self) -> None:
        self._memo: dict[str, _Snapshot] = {}
        # The build of each Space's snapshot under way, if any (one per Space at a time).
        self.building: dict[str, asyncio.Future[_Snapshot]] = {}

    def get(self, space_id: str) -> _Snapshot | None:
        return self._memo.get(space_id)

    def put(self, space_id: str, snapshot: _Snapshot) -> None:
        self._memo[space_id] = snapshot
        if len(self._memo) > self.KEPT:
            self._memo.pop(next(iter(self._memo)))

    def public(self, space_id: str, second: int) -> bytes | None:
        """The body of `space_id`'s snapshot of `second` if it is built and anyone may read it
        (not a private Space's): what every listener gets, with or without an identity.

        While a newer one is being built, the last one built, up to `STALE_WHILE_BUILDING`
        seconds old (as a cache does with `stale-while-revalidate`): a build awaits the stores
        several times, and on a loaded origin took long enough, up to a second and more, that
        every request of the audience meanwhile went through the framework only to wait for it
        (a sixth of the origin's CPU at 4,000 listeners, profiled). Its `at` says which second
        it describes."""
        cached = self._memo.get(space_id)
        if cached is None or cached.invite_code is not None:
            return None
        if cached.second == second or (
            second - cached.second <= self.STALE_WHILE_BUILDING and space_id in self.building
        ):
            return cached.body
        return None


async def _until_disconnected(websocket: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return


def _ends_membership(type: str, data: Mapping[str, Any], user_id: str) -> bool:
    return type in ("stage.left", "user.removed", "user.banned") and data.get("user_id") == user_id


class PresenceRates:
    """The presence sampling rate this process last told each Space's listeners (its snapshot's
    `presence_sample`), so that beacons turn into the same listener count wherever it is read:
    the snapshot, and the node's `/metrics`. A Space this process has not built a snapshot for
    is taken at 1.0, exact up to PRESENCE_TARGET beacons a minute."""

    KEPT = 10_000  # Spaces remembered (the oldest is forgotten first)

    def __init__(self) -> None:
        self._rates: dict[str, float] = {}

    def told(self, space_id: str, rate: float) -> None:
        self._rates.pop(space_id, None)
        self._rates[space_id] = rate
        if len(self._rates) > self.KEPT:
            self._rates.pop(next(iter(self._rates)))

    async def listeners(self, live: LiveState, space_id: str, now: float) -> int:
        """Approximate listeners: distinct beacons in the last minute ÷ the rate in force."""
        sampled = await live.listener_count(space_id, now)
        return round(sampled / self._rates.get(space_id, 1.0))


def build_live_router(
    control: Callable[[], SpaceControl],
    sessions: Sessions,
    keys: MediaKeys,
    clock: Callable[[], float] = time.time,
    rates: PresenceRates | None = None,
    snapshots: Snapshots | None = None,
) -> APIRouter:
    """`rates`: where the snapshot keeps the presence sampling rate it tells listeners (shared
    with `/metrics`); a private one if None. `snapshots`: where the snapshots built are kept
    (shared with the fast path); a private one if None."""
    rates = rates if rates is not None else PresenceRates()
    memo = snapshots if snapshots is not None else Snapshots()
    router = APIRouter(prefix="/api/spaces", tags=["live"])
    moderation: dict[str, _Moderation] = {}  # space → the removals and bans read so far

    def checked(space_id: str) -> str:
        if not is_space_id(space_id):
            raise NotFound("no such Space", code="space_not_found")
        return space_id

    async def recent_moderation(space_id: SpaceId, now: float) -> list[dict[str, Any]]:
        """Who was removed or banned in the last MODERATION_WINDOW_S seconds, oldest first.

        Reads only the events appended since the last build (one cheap call when nothing
        happened); a log that started again (restart, flushed Redis) is read afresh."""
        live = control().live
        log_id = await live.log_id(space_id)
        latest = await live.latest_seq(space_id)
        seen = moderation.get(space_id)
        if seen is None or seen.log_id != log_id or seen.after > latest:
            # First look at this Space here: only the log's tail can fall inside the window.
            seen = _Moderation(
                log_id, max(0, latest - MODERATION_KEPT), deque(maxlen=MODERATION_KEPT)
            )
            moderation[space_id] = seen
            if len(moderation) > 10_000:
                moderation.pop(next(iter(moderation)))
        while seen.after < latest:
            found = await live.events_since(space_id, seen.after)
            if not found:  # older events already dropped: the tail is all there is
                seen.after = latest
                break
            for event in found:
                action = MODERATION_EVENTS.get(event.type)
                if action is not None:
                    user = event.data.get("user_id")
                    seen.recent.append({"user_id": user, "action": action, "at": event.at})
            seen.after = found[-1].seq
        while seen.recent and seen.recent[0]["at"] < now - MODERATION_WINDOW_S:
            seen.recent.popleft()
        return list(seen.recent)

    async def build_snapshot(space_id: str, now: float) -> bytes:
        ctl = control()
        space = await ctl.space(space_id)  # no such Space: 404 through the error seam
        second = int(now)
        stage = await ctl.stage(space.id)
        # Published in the green room too: the stage's pages use it; the listener page shows it
        # only on air, when listeners actually hear the stage.
        speaking = await ctl.live.speaking(space.id)
        reactions = await ctl.live.reaction_totals(space.id, second - REACTION_WINDOW_S, second)
        listeners = await rates.listeners(ctl.live, space.id, now)
        rates.told(space.id, presence_sample(listeners))
        body = {
            "space": {
                "id": space.id,
                "title": space.title,
                "state": space.state.value,
                "on_air": space.state is SpaceState.LIVE,
                "starting_soon": space.state in (SpaceState.SCHEDULED, SpaceState.GREEN_ROOM),
                "scheduled_start": space.scheduled_start,
                "pinned_link": space.pinned_link,
                # Everyone hears whether they are recorded, from the body they already poll.
                "record": space.record,
                "captions": space.captions,
                # Where its audio is: a private Space's capability path, which only those who
                # showed its code get to read here (the listener page plays from it).
                "media": keys.media_path(space),
                # The stage's speaking flags below are live: with a delay they run ahead of what
                # listeners hear (and show what a dump then discards), so listener pages show
                # them only without one; the stream carries delayed ones (`media.roomstate`).
                "delay_s": space.delay_s,
            },
            "stage": [
                {
                    **member_json(m),
                    "speaking": m.user_id in speaking,
                    "level": speaking.get(m.user_id),
                }
                for m in stage
            ],
            "reactions": {"window_s": REACTION_WINDOW_S, "totals": reactions},
            "moderation": await recent_moderation(space.id, now),
            "listeners": {"approx": listeners, "presence_sample": presence_sample(listeners)},
            "at": second,
        }
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    async def build(space_id: str, now: float) -> _Snapshot:
        space = await control().records.space(SpaceId(space_id))
        if space is None:
            raise NotFound("no such Space", code="space_not_found")
        private = space.invite_code if space.visibility is Visibility.PRIVATE else None
        snapshot = _Snapshot(int(now), await build_snapshot(space_id, now), private)
        memo.put(space_id, snapshot)
        return snapshot

    @router.get(
        "/{space_id}/snapshot",
        summary="The listener view, refreshed about once a second (cacheable)",
    )
    async def snapshot(
        space_id: Annotated[str, Path()], request: Request, code: InviteCodeQ = None
    ) -> Response:
        checked(space_id)
        now = clock()
        second = int(now)
        cached = memo.get(space_id)
        if cached is None or cached.second != second:
            # One build per Space per second however many ask at once (single flight).
            building = memo.building.get(space_id)
            if building is None:
                building = asyncio.ensure_future(build(space_id, now))
                memo.building[space_id] = building
                building.add_done_callback(lambda _: memo.building.pop(space_id, None))
            cached = await asyncio.shield(building)
        cache = SNAPSHOT_CACHE
        if cached.invite_code is not None and not matches(code, cached.invite_code):
            # Without the code, only the stage (signed in) may read it, and never from a cache:
            # a speaker's console shows who is speaking, and only the host holds the code.
            # Checked only here, so the audience's requests never pay for an identity.
            who = await identity_from(request)
            await control().admit(UserId(who.user_id) if who else None, space_id, None)
            cache = "private, no-store"
        return Response(
            cached.body,
            media_type="application/json",
            headers={"Cache-Control": cache, "Access-Control-Allow-Origin": "*"},
        )

    @router.post(
        "/{space_id}/presence",
        status_code=204,
        summary="A sampled listener's heartbeat (approximate count)",
    )
    async def presence(
        space_id: Annotated[str, Path()],
        body: PresenceIn,
        request: Request,
        code: InviteCodeQ = None,
    ) -> Response:
        checked(space_id)
        now = clock()
        live = control().live
        await take(live, PRESENCE, client_address(request), now)
        await control().admit(None, space_id, code)  # a private Space's audience shows its code
        await live.mark_listener(space_id, body.key, now)
        raw = presented_token(request)
        if raw:
            try:
                who = await sessions.verify(raw)
            except TokenError:
                who = None  # counted, but not named: a stale cookie must not fail a beacon
            if who is not None:
                # Only for a Space that exists (the kept roster: no database read when current),
                # so names are never held for made-up ids.
                space = (await control().roster(space_id)).space
                await live.mark_present(space.id, who.user_id, who.display_name, now)
        return Response(status_code=204)

    @router.websocket("/{space_id}/events")
    async def events(
        websocket: WebSocket,
        space_id: str,
        after: int = 0,
        token: str | None = None,
        log: str | None = None,
    ) -> None:
        """Stage members only. Sends {"type": "hello", "latest_seq", "log"}, then every event as
        {"seq", "type", "at", "data"} in order from `after`; {"type": "reset"} means events were
        missed beyond recall: re-read the Space and continue from the given latest_seq. A client
        resuming passes the `log` id its hello carried: if the log has started again since (a
        restart), its `after` means nothing here and it gets a reset instead of a silent gap."""
        ctl = control()
        raw = token or websocket.cookies.get(COOKIE)
        try:
            who = await sessions.verify(raw or "")
            space = await ctl.space(space_id) if is_space_id(space_id) else None
        except (TokenError, ControlError):
            await websocket.close(code=4401)
            return
        if (
            space is None
            or not (await ctl.role_of(space, UserId(who.user_id))).on_stage
            or after < 0
        ):
            await websocket.close(code=4403)
            return
        await websocket.accept()
        latest = await ctl.live.latest_seq(space.id)
        current_log = await ctl.live.log_id(space.id)
        await websocket.send_json({"type": "hello", "latest_seq": latest, "log": current_log})
        if log is not None and log != current_log and after > 0:
            await websocket.send_json({"type": "reset", "latest_seq": latest})
            after = latest
        # The client sends nothing we need, but reading is how a close is noticed at once rather
        # than at the next send (which may be a ping interval away).
        gone = asyncio.create_task(_until_disconnected(websocket))
        try:
            while not gone.done():
                found = await ctl.live.events_since(space.id, after)
                if found is None:
                    after = await ctl.live.latest_seq(space.id)
                    await websocket.send_json({"type": "reset", "latest_seq": after})
                    continue
                for event in found:
                    await websocket.send_json(
                        {
                            "seq": event.seq,
                            "type": event.type,
                            "at": event.at,
                            "data": dict(event.data),
                        }
                    )
                    after = event.seq
                if any(_ends_membership(e.type, e.data, who.user_id) for e in found):
                    await websocket.close(code=4403)
                    return
                waiter = asyncio.create_task(
                    ctl.live.wait_for_events(space.id, after, PING_INTERVAL_S)
                )
                done, _ = await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
                if waiter not in done:
                    waiter.cancel()
                    return
                if not waiter.result():
                    await websocket.send_json({"type": "ping"})
        except (WebSocketDisconnect, RuntimeError):  # the client went away mid-send
            return
        finally:
            gone.cancel()

    return router

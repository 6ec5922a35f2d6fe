"""Who may fetch a Space's listener objects: the gate in front of the LL-HLS origin.

A public or unlisted Space is served at `/live/{space}/…` as it always was. A private Space is
served only at its capability path `/live/{space}/{media key}/…` (see `delivery.capability`): the
gate checks the key, takes it out of the path and hands the request to the origin, which never
learns that keys exist. Any other request for a private Space — the plain path, an old key after
the host rotated the invite, a made-up key — gets exactly what a Space that does not exist gets:
the gate hands it to the same origin built with no Spaces at all (`nowhere`), so a stranger who
knows the id cannot even tell that the Space exists.

Hot path: what the gate needs of a Space (is it private, and its current key) is read from the
records at most once a second per Space per process (`SpaceAccess`, single flight: a join storm
at a new Space costs one read), then answered from memory. A rotation therefore reaches every
node within ACCESS_TTL_S, and an HTTP cache in front holds what it already has for the object's
own max-age (docs/architecture.md lists them). With the records out of reach the last answer
known is kept (listeners of a running Space keep hearing it); a Space never looked up answers
503 + Retry-After.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from townhall.delivery.capability import MediaKeys, matches
from townhall.spaces.model import Space, Visibility, is_space_id

ACCESS_TTL_S = 1.0  # how long a node answers from what it read of a Space
ACCESS_KEPT = 10_000  # Spaces remembered (oldest forgotten first)

SpaceLookup = Callable[[str], Awaitable[Space | None]]
OutageCheck = Callable[[BaseException], bool]  # the records are out of reach: try again later


@dataclass(frozen=True)
class Access:
    """What the gate needs of one Space: None for a Space served at its plain path (public,
    unlisted, or no such Space), else the media key its requests must carry."""

    media_key: str | None


class AccessUnknown(Exception):
    """The records are out of reach and this process has never looked the Space up."""


class SpaceAccess:
    """Each Space's `Access`, read through `find` at most once per ACCESS_TTL_S."""

    def __init__(
        self,
        find: SpaceLookup,
        keys: MediaKeys,
        is_outage: OutageCheck,
        *,
        ttl_s: float = ACCESS_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._find = find
        self._keys = keys
        self._is_outage = is_outage
        self._ttl_s = ttl_s
        self._clock = clock
        self._known: OrderedDict[str, tuple[float, Access]] = OrderedDict()
        self._reading: dict[str, asyncio.Future[Access]] = {}

    def fresh(self, space_id: str) -> Access | None:
        """What was read of the Space less than ACCESS_TTL_S ago, if anything: the hot path,
        without a coroutine."""
        known = self._known.get(space_id)
        if known is not None and self._clock() - known[0] < self._ttl_s:
            return known[1]
        return None

    async def of(self, space_id: str) -> Access:
        known = self._known.get(space_id)
        if known is not None and self._clock() - known[0] < self._ttl_s:
            return known[1]
        reading = self._reading.get(space_id)
        if reading is None:
            reading = asyncio.ensure_future(self._read(space_id))
            self._reading[space_id] = reading
            reading.add_done_callback(lambda _: self._reading.pop(space_id, None))
        try:
            return await asyncio.shield(reading)
        except Exception as exc:
            if not self._is_outage(exc):
                raise
            if known is not None:
                return known[1]  # what was true a moment ago beats an error to every listener
            raise AccessUnknown(space_id) from exc

    async def _read(self, space_id: str) -> Access:
        space = await self._find(space_id)
        if space is None or space.visibility is not Visibility.PRIVATE:
            access = Access(None)
        else:
            access = Access(self._keys.media_key(space.id, space.invite_code))
        self._known[space_id] = (self._clock(), access)
        self._known.move_to_end(space_id)
        while len(self._known) > ACCESS_KEPT:
            self._known.popitem(last=False)
        return access


def _unavailable() -> JSONResponse:
    return JSONResponse(
        {"error": {"code": "unavailable", "message": "the service is busy; try again shortly"}},
        503,
        headers={
            "Retry-After": "1",
            "Cache-Control": "no-store",
            "Access-Control-Allow-Origin": "*",
        },
    )


class PrivateGate:
    """ASGI in front of the origin (inside the `/live` mount): see the module docstring."""

    def __init__(self, origin: ASGIApp, nowhere: ASGIApp, access: SpaceAccess) -> None:
        self._origin = origin
        self._nowhere = nowhere
        self._access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") == "OPTIONS":
            await self._origin(scope, receive, send)
            return
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "")
        mounted = bool(root) and path.startswith(root)
        below = path[len(root) :] if mounted else path
        parts = below.lstrip("/").split("/", 2)
        space_id = parts[0]
        if not is_space_id(space_id):
            await self._origin(scope, receive, send)
            return
        access = self._access.fresh(space_id)
        if access is None:
            try:
                access = await self._access.of(space_id)
            except AccessUnknown:
                await _unavailable()(scope, receive, send)
                return
        if access.media_key is None:
            await self._origin(scope, receive, send)
            return
        if len(parts) < 3 or not parts[2] or not matches(parts[1], access.media_key):
            await self._nowhere(scope, receive, send)
            return
        # The key checked, the origin sees the plain path it knows.
        plain = f"/{space_id}/{parts[2]}"
        inner = dict(scope)
        inner["path"] = (root if mounted else "") + plain
        inner["raw_path"] = inner["path"].encode()
        await self._origin(inner, receive, send)

"""The listener path in front of the origin: `/live/{space}/…` is served here when the Space's
media runs here (or nothing runs it: a replay, an ended stream, a 404), and relayed to the Space's
owner otherwise (see `forward`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from townhall.node.forward import Forwarder
from townhall.spaces.model import is_space_id

OPEN_CACHE_S = 1.0


class LiveRouter:
    def __init__(
        self,
        origin: ASGIApp,
        forwarder: Callable[[], Forwarder | None],
        runs_here: Callable[[str], bool],
        is_open: Callable[[str], Awaitable[bool]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._origin = origin
        self._forwarder = forwarder
        self._runs_here = runs_here
        self._is_open = is_open
        self._clock = clock
        self._open: dict[str, tuple[float, bool]] = {}

    async def _open_now(self, space_id: str) -> bool:
        """Whether the records say the Space is open, looked up at most once a second."""
        now = self._clock()
        cached = self._open.get(space_id)
        if cached is not None and now - cached[0] < OPEN_CACHE_S:
            return cached[1]
        is_open = await self._is_open(space_id)
        if len(self._open) > 10_000:
            self._open.clear()
        self._open[space_id] = (now, is_open)
        return is_open

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        forwarder = self._forwarder()
        path: str = scope.get("path", "")
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):  # inside the /live mount: the path below it
            path = path[len(root) :]
        space_id = path.lstrip("/").split("/", 1)[0]
        if (
            scope["type"] != "http"
            or forwarder is None
            or scope.get("method") == "OPTIONS"
            or not is_space_id(space_id)
        ):
            await self._origin(scope, receive, send)
            return
        request = Request(scope, receive)
        answer = await forwarder.relay(
            request,
            space_id,
            lambda: self._runs_here(space_id),
            lambda: self._open_now(space_id),
        )
        if answer is None:
            await self._origin(scope, receive, send)
        else:
            await answer(scope, receive, send)

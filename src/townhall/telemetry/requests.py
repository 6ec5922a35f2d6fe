"""Every HTTP request, counted and timed by route template, and (on request) logged as one line.

Labels stay bounded whatever clients send: the route is the template the router matched
(`/api/spaces/{space_id}/snapshot`, `/live/{space}/media.m3u8`), never the raw path; a path no
route matched is `unmatched`; a method outside the standard ones is `other`. So the series are
at most routes × methods × the statuses the app answers.

This runs for every listener request (playlists and parts: most of a node's traffic), so it does
the least it can: one dict increment and one histogram observation on the event loop, no lock
(`telemetry.durations`); the request id and the log line only when the access log is on.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections import defaultdict
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from townhall.telemetry.durations import REQUEST_BUCKETS, Durations
from townhall.telemetry.jsonlog import REQUEST_ID

log = logging.getLogger("townhall.requests")

UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LIVE_PREFIX = "/live"
# The /live mount itself: a request it relayed to the Space's owner node (no inner route ran).
RELAYED = "/live/{relayed}"
_LIVE_PATHS = LIVE_PREFIX + "/"
# A request id a client or edge sent is kept if it looks like one; otherwise we make one.
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")


def route_template(scope: Scope) -> str:
    """The route the router matched for this request, as its template (bounded)."""
    template = getattr(scope.get("route"), "path", None)
    if not isinstance(template, str):
        return UNMATCHED
    path: str = scope.get("path", "")
    if path.startswith(_LIVE_PATHS):
        # The listener origin is its own app mounted at /live: its routes are relative to it.
        return RELAYED if template == LIVE_PREFIX else LIVE_PREFIX + template
    return template


class RequestStats:
    """Request counts by (route, method, status) and durations by route, for `/metrics`.

    Written on the event loop only."""

    def __init__(self) -> None:
        self.counts: defaultdict[tuple[str, str, int], int] = defaultdict(int)
        self.durations: dict[str, Durations] = {}

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        self.counts[route, method if method in METHODS else "other", status] += 1
        durations = self.durations.get(route)
        if durations is None:
            durations = self.durations[route] = Durations(REQUEST_BUCKETS)
        durations.observe(seconds)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id" and _REQUEST_ID.match(value):
            return str(value.decode("ascii"))
    return secrets.token_hex(8)


class RequestTelemetry:
    """Pure ASGI middleware: counts and times each HTTP request into `stats`; with `log_requests`
    logs one line per request (method, path, route, status, duration, request id) and answers
    the request id in `X-Request-Id` (the caller's own, if it sent a usable one).

    Outside admission control, so the 503s it sheds are counted like any other answer."""

    def __init__(self, app: ASGIApp, stats: RequestStats, *, log_requests: bool = False) -> None:
        self.app = app
        self.stats = stats
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope) if self.log_requests else None
        status = 500  # what the client gets if the app raises before answering

        async def answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if request_id is not None:
                    headers = list(message.get("headers", ()))
                    headers.append((b"x-request-id", request_id.encode()))
                    message = {**message, "headers": headers}
            await send(message)

        bound = REQUEST_ID.set(request_id) if request_id is not None else None
        try:
            await self.app(scope, receive, answer)
        finally:
            if bound is not None:
                REQUEST_ID.reset(bound)
            seconds = time.perf_counter() - started
            route = route_template(scope)
            method: str = scope["method"]
            self.stats.record(route, method, status, seconds)
            if request_id is not None:
                fields: dict[str, Any] = {
                    "method": method,
                    "path": scope.get("path", ""),
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "request_id": request_id,
                }
                log.info(
                    "%s %s %d %.1f ms (%s) id=%s",
                    method,
                    fields["path"],
                    status,
                    seconds * 1000,
                    route,
                    request_id,
                    extra=fields,
                )

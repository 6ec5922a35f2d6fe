"""Admission control: under overload, answer 503 + Retry-After at once instead of queueing.

Requests are sorted into classes by path, each with its own cap on requests in flight in this
process. The caps rank what is shed first (SPEC: "audio first under load"): reactions and hands
before listener joins and snapshots, those before the control API, and the listener media path
(playlists, parts — including blocking reloads held open for a part) last, with a cap high enough
that only memory protection ever trips it. A refused request costs one small response; clients
back off with jitter for Retry-After seconds.

Caps on requests in flight do not see a flood that has not reached the app yet: when the CPU is
saturated, requests wait in the accept queue and the event loop, and time out there. So the
process also watches its event loop's lag (how late a 50 ms timer fires): past `lag_shed_s` it
refuses everything but the media path, past `lag_shed_media_s` the media path too, until the lag
falls again. The lag is smoothed over about a second (one slow tick must not turn people away),
which is too slow for a storm that arrives within one: so a probe that is overdue counts at once —
if it should have fired 700 ms ago and has not, the loop is at least 700 ms behind, whatever the
smoothed figure says. Refusing is cheap, so shedding is what lets the loop catch up. A quiet process (no
request in flight, no lag) probes once a second instead of twenty times, and the first request
to arrive wakes the probe back to its 50 ms pace: an idle node should cost next to nothing. The operator's
`/metrics` is kept as long as the media path (an overload is when it is needed), with a small cap
of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import random
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from townhall.api.headers import JSON_ANSWER_HEADERS

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestClass(enum.StrEnum):
    MEDIA = "media"  # /live/…: what listeners hear
    LISTENER = "listener"  # joining and following a Space: GET space, snapshot, presence
    INTERACTION = "interaction"  # reactions, hands: first to go
    CONTROL = "control"  # everything else: the stage, identity, pages
    # GET /metrics: the operator's view of an overload is kept as long as the audio is (a few
    # scrapes a minute; a stranger's is refused by its token check at once).
    OPERATOR = "operator"


@dataclass(frozen=True)
class AdmissionLimits:
    media: int = 50_000
    listener: int = 2_000
    interaction: int = 500
    control: int = 1_000
    operator: int = 8
    lag_shed_s: float = (
        0.5  # sustained event-loop lag above which all but the media path is refused
    )
    lag_shed_media_s: float = 2.0  # … and above which the media path (and /metrics) is refused too

    def of(self, kind: RequestClass) -> int:
        limit: int = getattr(self, kind.value)
        return limit


def classify(method: str, path: str) -> RequestClass:
    if path.startswith("/live/"):
        return RequestClass.MEDIA
    if path == "/metrics":
        return RequestClass.OPERATOR
    if path.startswith("/api/spaces/"):
        tail = path.rsplit("/", 1)[-1]
        if tail in ("reactions", "hand"):
            return RequestClass.INTERACTION
        if tail in ("snapshot", "presence") or (method == "GET" and path.count("/") == 3):
            return RequestClass.LISTENER
    return RequestClass.CONTROL


_KEPT_LONGEST = (RequestClass.MEDIA, RequestClass.OPERATOR)

LAG_PROBE_S = 0.05
LAG_QUIET_PROBE_S = 1.0
LAG_QUIET_S = 0.01  # smoothed lag under which the loop counts as keeping time


@dataclass
class Admission:
    """Counts requests in flight per class; sans-I/O, one per process."""

    limits: AdmissionLimits = field(default_factory=AdmissionLimits)
    in_flight: dict[RequestClass, int] = field(
        default_factory=lambda: dict.fromkeys(RequestClass, 0)
    )
    refused: dict[RequestClass, int] = field(default_factory=lambda: dict.fromkeys(RequestClass, 0))

    lag_s: float = 0.0  # the event loop's current lag, kept up to date by `watch_loop_lag`
    # When the lag probe should next run (time.monotonic()); None before it first waits.
    probe_due: float | None = None
    # Called as a request enters while the lag probe idles (`watch_loop_lag` sets it): wakes it.
    on_enter: Callable[[], None] | None = None

    def quiet(self) -> bool:
        """No request in flight and the loop keeps time: the lag probe may idle."""
        return self.lag_s < LAG_QUIET_S and not any(self.in_flight.values())

    def lag_now(self, now: float) -> float:
        """The smoothed lag, or how overdue the probe is if that is more."""
        if self.probe_due is None:
            return self.lag_s
        return max(self.lag_s, now - self.probe_due)

    def enter(self, kind: RequestClass) -> bool:
        if self.on_enter is not None:
            self.on_enter()
        shed_at = self.limits.lag_shed_media_s if kind in _KEPT_LONGEST else self.limits.lag_shed_s
        if self.in_flight[kind] >= self.limits.of(kind) or self.lag_now(time.monotonic()) > shed_at:
            self.refused[kind] += 1
            return False
        self.in_flight[kind] += 1
        return True

    def leave(self, kind: RequestClass) -> None:
        self.in_flight[kind] -= 1


async def watch_loop_lag(admission: Admission) -> None:
    """Measure how late a short timer fires, smoothed: the event loop's queueing delay. Every
    `LAG_PROBE_S` while requests are in flight or the loop lags; every `LAG_QUIET_PROBE_S` while
    the process is quiet, until a request enters (`Admission.on_enter`)."""
    woken = asyncio.Event()

    def wake() -> None:
        admission.probe_due = time.monotonic()  # due now: late from here if it does not run
        woken.set()

    while True:
        period = LAG_PROBE_S
        start = time.monotonic()
        if admission.quiet():
            period = LAG_QUIET_PROBE_S
            admission.probe_due = start + period
            woken.clear()
            admission.on_enter = wake
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(period):
                        await woken.wait()
            finally:
                admission.on_enter = None
            if woken.is_set():
                continue  # cut short by a request: no measure of lateness; probe at pace now
        else:
            admission.probe_due = start + period
            await asyncio.sleep(period)
        lag = max(0.0, time.monotonic() - start - period)
        # Smoothed both ways (about a second of probes): one slow tick — a page fault, a garbage
        # collection, a browser starting on the same machine — must not turn people away; a
        # loop that stays late does.
        admission.lag_s = admission.lag_s * 0.8 + lag * 0.2


def retry_after(kind: RequestClass) -> str:
    """Seconds to come back: spread so that a refused crowd does not return in one wave."""
    base = 1 if kind is RequestClass.MEDIA else 2
    return str(base + random.randint(0, 2))


_OVERLOADED = json.dumps(
    {"error": {"code": "overloaded", "message": "the server is busy; try again shortly"}}
).encode()


def refusal(kind: RequestClass) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The 503 answer's headers and body for a request of class `kind` that `Admission.enter`
    refused."""
    headers = [
        (b"content-type", b"application/json"),
        (b"retry-after", retry_after(kind).encode()),
        (b"cache-control", b"no-store"),
        (b"access-control-allow-origin", b"*"),
        *JSON_ANSWER_HEADERS,
    ]
    return headers, _OVERLOADED


async def refuse(kind: RequestClass, send: Send) -> None:
    """Answer a request of class `kind` that `Admission.enter` refused: 503 + Retry-After."""
    headers, body = refusal(kind)
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class AdmissionMiddleware:
    """Pure ASGI, so it adds no per-request task or buffering to the hot path."""

    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        kind = classify(scope["method"], scope["path"])
        if not self.admission.enter(kind):
            await refuse(kind, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.admission.leave(kind)

"""The prebuilt answers (api/fastpath.py) given by the server's protocol itself when it parses the
request (api/listener_protocol.py): the same bytes the fast path sends through uvicorn's cycle,
no ASGI call, admitted and counted the same way; the connection goes on, or closes when asked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from functools import partial

from starlette.types import Receive, Scope, Send

from tests.delivery.test_segment_stream import serve_app
from townhall.api.admission import Admission, AdmissionLimits, RequestClass
from townhall.api.bounds import BoundedHttpProtocol
from townhall.api.fastpath import SNAPSHOT_ROUTE, FastPath
from townhall.api.listener_protocol import ListenerProtocol
from townhall.telemetry.requests import RequestStats

SPACE = "abcdefghij"
SNAPSHOT = f"/api/spaces/{SPACE}/snapshot"
BODY = b'{"space":"abcdefghij","on_air":true}'
WITHIN = 20.0


class Answers:
    """A fast path with a snapshot always built, behind an app that answers what it leaves 404
    and notes every request that reached it."""

    def __init__(self, limits: AdmissionLimits | None = None) -> None:
        self.admission = Admission(limits or AdmissionLimits())
        self.stats = RequestStats()
        self.front = FastPath(
            self.admission,
            self.stats,
            health=lambda: b'{"ok":true}',
            snapshot=lambda space, _second: BODY if space == SPACE else None,
        )
        self.seen: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.seen.append(scope["path"])
        if not await self.front(scope, send):
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [(b"content-length", b"0")],
                }
            )
            await send({"type": "http.response.body", "body": b""})


@asynccontextmanager
async def connection(
    app: Answers, here: bool = True
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A raw connection to `app`, served with the protocol answering (`here`) or without."""
    protocol = partial(ListenerProtocol, answers=app.front) if here else BoundedHttpProtocol
    served = serve_app(app, protocol)
    base = await anext(served)
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        yield reader, writer
    finally:
        writer.close()
        with suppress(StopAsyncIteration):
            await anext(served)


def get(path: str, *headers: str) -> bytes:
    return "\r\n".join([f"GET {path} HTTP/1.1", "Host: origin", *headers, "", ""]).encode()


async def response(reader: asyncio.StreamReader) -> bytes:
    """One whole response (its body has a content-length), less its Date line."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WITHIN)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    body = await asyncio.wait_for(reader.readexactly(length), WITHIN)
    lines = head.splitlines(True)
    return b"".join(line for line in lines if not line.lower().startswith(b"date:")) + body


async def answer(app: Answers, path: str, here: bool) -> bytes:
    async with connection(app, here) as (reader, writer):
        writer.write(get(path))
        return await response(reader)


async def test_the_same_bytes_as_through_the_cycle_and_no_asgi_call() -> None:
    app = Answers()
    for path in (SNAPSHOT, "/api/health"):
        through_cycle = await answer(app, path, here=False)
        assert app.seen == [path]
        app.seen.clear()
        here = await answer(app, path, here=True)
        assert app.seen == []  # answered by the protocol
        assert here == through_cycle
    assert b"200 OK" in here
    snapshot = await answer(app, SNAPSHOT, here=True)
    assert snapshot.endswith(BODY)
    assert b"cache-control: public, max-age=1" in snapshot


async def test_what_is_not_prebuilt_goes_to_the_app() -> None:
    app = Answers()
    async with connection(app) as (reader, writer):
        for path in ("/api/spaces/zzzzzzzzzz/snapshot", f"{SNAPSHOT}?code=x", "/api/other"):
            writer.write(get(path))
            assert b" 404 " in (await response(reader)).split(b"\r\n")[0]
    assert app.seen == ["/api/spaces/zzzzzzzzzz/snapshot", SNAPSHOT, "/api/other"]


async def test_pipelined_requests_are_each_answered_in_order() -> None:
    app = Answers()
    async with connection(app) as (reader, writer):
        writer.write(get(SNAPSHOT) + get("/api/health") + get(SNAPSHOT))
        answers = [await response(reader) for _ in range(3)]
    assert answers[0].endswith(BODY)
    assert answers[1].endswith(b'{"ok":true}')
    assert answers[2].endswith(BODY)


async def test_a_refusal_is_admissions_503_and_the_connection_goes_on() -> None:
    app = Answers()
    app.admission.in_flight[RequestClass.LISTENER] = app.admission.limits.listener  # full
    async with connection(app) as (reader, writer):
        writer.write(get(SNAPSHOT))
        refused = await response(reader)
        app.admission.in_flight[RequestClass.LISTENER] = 0
        writer.write(get(SNAPSHOT))
        served = await response(reader)
    assert refused.startswith(b"HTTP/1.1 503 ")
    assert b"retry-after: " in refused
    assert served.endswith(BODY)
    assert app.admission.in_flight[RequestClass.LISTENER] == 0  # its place given back
    counted = {(route, status) for (route, _method, status) in app.stats.counts}
    assert (SNAPSHOT_ROUTE, 503) in counted
    assert (SNAPSHOT_ROUTE, 200) in counted
    assert app.seen == []


async def test_a_request_asking_to_close_is_answered_then_closed() -> None:
    app = Answers()
    async with connection(app) as (reader, writer):
        writer.write(get(SNAPSHOT, "Connection: close"))
        closed = await response(reader)
        assert await asyncio.wait_for(reader.read(), WITHIN) == b""  # the server closed it
    assert b"connection: close" in closed
    assert closed.endswith(BODY)

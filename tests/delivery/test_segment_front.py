"""A listener's streamed segment answered before the framework (delivery/segment_front.py): over a
real connection, with the server's own protocol, it is the same bytes the origin's route sends,
counted and admitted like any media request; everything it does not claim (a private Space, a
range, a complete segment, a HEAD) is answered by the origin as before.

As in test_segment_stream, the test produces the parts itself (no media clock)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from tests.delivery.test_fanout import open_segment, raw_response
from tests.delivery.test_origin import SPACE, add_parts, media
from tests.delivery.test_segment_stream import produce_one, serve_app
from townhall.api.admission import Admission, AdmissionLimits, RequestClass
from townhall.api.fastpath import FastPath
from townhall.delivery.fanout import SegmentFanout
from townhall.delivery.origin import build_origin
from townhall.delivery.segment_front import SEGMENT_ROUTE, OpenSegmentFront
from townhall.harness import wait_until_async
from townhall.media.pipeline import SpaceMedia
from townhall.telemetry.requests import RequestStats

__all__ = ["media"]  # the fixture, shared with the origin's other tests

WITHIN = 20.0  # generous: the machine is shared


class Served:
    """The origin mounted at /live behind the fast path, as `townhall serve` composes them, with
    a note of which requests the fast path answered."""

    def __init__(self, media: SpaceMedia, limits: AdmissionLimits | None = None) -> None:
        self.fanout = SegmentFanout()
        self.public = True
        self.admission = Admission(limits or AdmissionLimits())
        self.stats = RequestStats()

        def lookup(space: str) -> SpaceMedia | None:
            return media if space == SPACE else None

        self.front = FastPath(
            self.admission,
            self.stats,
            lambda: None,
            lambda _space, _second: None,
            segments=OpenSegmentFront(lookup, self.fanout, lambda _space: self.public),
        )
        self.origin = Starlette(routes=[Mount("/live", build_origin(lookup, fanout=self.fanout))])
        self.answered: list[bool] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            answered = await self.front(scope, send)
            self.answered.append(answered)
            if answered:
                return
        await self.origin(scope, receive, send)


@asynccontextmanager
async def serving(app: Served) -> AsyncIterator[str]:
    served = serve_app(app)
    base = await anext(served)
    try:
        yield base
    finally:
        with suppress(StopAsyncIteration):
            await anext(served)


@asynccontextmanager
async def client(app: Served) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of `app`, served on loopback."""
    async with serving(app) as base, httpx.AsyncClient(base_url=base, timeout=WITHIN) as http:
        yield http


def dechunked(response: bytes) -> bytes:
    """The body of a chunked HTTP/1.1 response."""
    rest = response.split(b"\r\n\r\n", 1)[1]
    body = b""
    while True:
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line, 16)
        if size == 0:
            return body
        body, rest = body + rest[:size], rest[size + 2 :]


def path(media: SpaceMedia, name: str) -> str:
    return f"/live/{SPACE}/{media.packager.stream_id}/{name}"


async def produce_until_closed(media: SpaceMedia, msn: int) -> None:
    while media.packager.next_part[0] == msn:
        await asyncio.sleep(0.05)  # pacing only: the reader takes what it is sent meanwhile
        await produce_one(media)


async def test_the_open_segment_is_streamed_before_the_framework_with_the_origins_bytes(
    media: SpaceMedia,
) -> None:
    front, plain = Served(media), Served(media)
    plain.public = False  # declined by the fast path: the origin's own route answers
    async with AsyncExitStack() as stack:
        fast_base = await stack.enter_async_context(serving(front))
        plain_base = await stack.enter_async_context(serving(plain))
        msn = await open_segment(media)
        add_parts(media, 1)
        name = f"s{msn}.m4s"
        answers = asyncio.gather(
            raw_response(fast_base + path(media, "").rstrip("/"), name),
            raw_response(plain_base + path(media, "").rstrip("/"), name),
        )
        stack.callback(answers.cancel)
        await produce_until_closed(media, msn)
        fast_bytes, plain_bytes = await asyncio.wait_for(answers, WITHIN)
    assert front.answered == [True]
    assert plain.answered == [False]
    assert fast_bytes == plain_bytes
    assert b"transfer-encoding: chunked" in fast_bytes
    assert dechunked(fast_bytes) == media.packager.segment(msn)
    assert dict(front.stats.counts) == {(SEGMENT_ROUTE, "GET", 200): 1}
    assert front.admission.in_flight[RequestClass.MEDIA] == 0


async def test_the_next_segment_asked_before_its_first_part_waits_for_it_as_the_origin_does(
    media: SpaceMedia,
) -> None:
    front = Served(media)
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(client(front))
        msn = await open_segment(media)
        await produce_until_closed(media, msn)
        assert media.packager.segment_so_far(msn + 1) == ([], False)  # open, nothing written
        asked = asyncio.ensure_future(http.get(path(media, f"s{msn + 1}.m4s")))
        stack.callback(asked.cancel)
        # Admitted by the fast path and waiting for the first part before any exists.
        await wait_until_async(
            lambda: front.admission.in_flight[RequestClass.MEDIA] == 1, WITHIN, "the request held"
        )
        assert media.packager.segment_so_far(msn + 1) == ([], False)
        await produce_until_closed(media, msn + 1)
        response = await asyncio.wait_for(asked, WITHIN)
    assert response.status_code == 200
    assert response.content == media.packager.segment(msn + 1)
    assert front.answered == [True]


async def test_what_the_fast_path_does_not_claim_is_answered_by_the_origin(
    media: SpaceMedia,
) -> None:
    front = Served(media)
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(client(front))
        msn = await open_segment(media)
        add_parts(media, 1)
        ranged = await http.get(path(media, f"s{msn}.m4s"), headers={"Range": "bytes=0-9"})
        head = await http.head(path(media, f"s{msn}.m4s"))
        asked = asyncio.ensure_future(http.get(path(media, f"s{msn}.m4s") + "?x=1"))
        stack.callback(asked.cancel)
        await produce_until_closed(media, msn)  # that one streams until the segment closes
        query = await asyncio.wait_for(asked, WITHIN)
        complete = await http.get(path(media, f"s{msn}.m4s"))
        front.public = False
        add_parts(media, 1)
        private = asyncio.ensure_future(http.get(path(media, f"s{msn + 1}.m4s")))
        stack.callback(private.cancel)
        await produce_until_closed(media, msn + 1)
        hidden = await asyncio.wait_for(private, WITHIN)
    assert front.answered == [False] * 5
    assert ranged.status_code == 206
    assert ranged.content == media.packager.segment(msn)[:10]
    assert head.status_code == 200
    assert head.content == b""
    assert query.status_code == 200
    assert query.content == media.packager.segment(msn)
    assert complete.status_code == 200
    assert complete.content == media.packager.segment(msn)
    # Not the gate here (this test's origin has none): the origin's own answer, in full.
    assert hidden.status_code == 200
    assert hidden.content == media.packager.segment(msn + 1)
    assert front.stats.counts == {}  # the framework's telemetry counts those, not the fast path


async def test_a_full_media_class_is_refused_503_with_retry_after_by_the_fast_path(
    media: SpaceMedia,
) -> None:
    front = Served(media, AdmissionLimits(media=0))
    async with client(front) as http:
        msn = await open_segment(media)
        refused = await http.get(path(media, f"s{msn}.m4s"))
    assert front.answered == [True]
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "overloaded"
    assert dict(front.stats.counts) == {(SEGMENT_ROUTE, "GET", 503): 1}

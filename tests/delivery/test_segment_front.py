"""A listener's streamed segment answered by the server's protocol (delivery/segment_front.py,
api/listener_protocol.py): over a real connection it is the same bytes the origin's route sends,
counted and admitted like any media request, and the connection goes on to its next request;
everything it does not claim (a private Space, a range, a complete segment, a HEAD, a query) and
a request whose stream ends before its first part are answered by the origin as before.

As in test_segment_stream, the test produces the parts itself (no media clock)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import Receive, Scope, Send

from tests.delivery.test_fanout import open_segment, raw_response
from tests.delivery.test_origin import SPACE, add_parts, media
from tests.delivery.test_segment_stream import produce_one, serve_app
from townhall.api.admission import Admission, AdmissionLimits, RequestClass
from townhall.api.listener_protocol import ListenerProtocol
from townhall.delivery.fanout import SegmentFanout
from townhall.delivery.origin import build_origin
from townhall.delivery.segment_front import SEGMENT_ROUTE, OpenSegmentFront
from townhall.harness import wait_until_async
from townhall.media.pipeline import SpaceMedia
from townhall.telemetry.requests import RequestStats

__all__ = ["media"]  # the fixture, shared with the origin's other tests

WITHIN = 20.0  # generous: the machine is shared


class Served:
    """The origin mounted at /live, served by the server's protocol with the open-segment front
    (as `townhall serve` composes them), with a note of the requests the app itself saw."""

    def __init__(self, media: SpaceMedia, limits: AdmissionLimits | None = None) -> None:
        self.fanout = SegmentFanout()
        self.public = True
        self.admission = Admission(limits or AdmissionLimits())
        self.stats = RequestStats()

        def lookup(space: str) -> SpaceMedia | None:
            return media if space == SPACE else None

        self.front = OpenSegmentFront(
            lookup, self.fanout, lambda _space: self.public, self.admission, self.stats
        )
        self.protocols: list[ListenerProtocol] = []  # each connection's, as it was made

        def protocol(*args: Any, **kwargs: Any) -> ListenerProtocol:
            made = ListenerProtocol(*args, segments=self.front, **kwargs)
            self.protocols.append(made)
            return made

        self.protocol = protocol
        self.origin = Starlette(routes=[Mount("/live", build_origin(lookup, fanout=self.fanout))])
        self.seen: list[str] = []  # what the app answered (the front answered the rest)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append(scope["path"])
        await self.origin(scope, receive, send)


@asynccontextmanager
async def serving(app: Served, protocol: object = None) -> AsyncIterator[str]:
    """`app` on loopback, on its own protocol (the front) or on `protocol`; yields its URL."""
    served = serve_app(app, protocol or app.protocol)
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


@asynccontextmanager
async def connection(base: str) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """One kept-alive connection to `base`, for requests written by hand."""
    where = urlsplit(base)
    assert where.hostname is not None
    assert where.port is not None
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    try:
        yield reader, writer
    finally:
        writer.close()


def get(target: str, *headers: str, method: str = "GET") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: origin", *headers, "", ""]
    return "\r\n".join(lines).encode()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """The head of the next response off a kept-alive connection (one without a body: a HEAD)."""
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WITHIN)


async def read_chunked(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One chunked response off a kept-alive connection: its head and its body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WITHIN)
    body = b""
    while True:
        size = int((await asyncio.wait_for(reader.readuntil(b"\r\n"), WITHIN))[:-2], 16)
        data = await asyncio.wait_for(reader.readexactly(size + 2), WITHIN)
        if size == 0:
            return head, body
        body += data[:-2]


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


def held(front: Served) -> bool:
    return front.admission.in_flight[RequestClass.MEDIA] == 1


async def test_the_open_segment_is_streamed_by_the_protocol_with_the_origins_bytes(
    media: SpaceMedia,
) -> None:
    front = Served(media)
    async with AsyncExitStack() as stack:
        fast_base = await stack.enter_async_context(serving(front))
        # The same app on the server's protocol without the front: the origin's route answers.
        plain_base = await stack.enter_async_context(serving(front, "fanout"))
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
    assert front.seen == [path(media, name)]  # the plain server's request only
    assert fast_bytes == plain_bytes
    assert b"transfer-encoding: chunked" in fast_bytes
    assert dechunked(fast_bytes) == media.packager.segment(msn)
    assert dict(front.stats.counts) == {(SEGMENT_ROUTE, "GET", 200): 1}
    assert front.admission.in_flight[RequestClass.MEDIA] == 0


async def test_the_next_segment_waits_for_its_first_part_on_the_same_connection(
    media: SpaceMedia,
) -> None:
    front = Served(media)
    async with AsyncExitStack() as stack:
        base = await stack.enter_async_context(serving(front))
        reader, writer = await stack.enter_async_context(connection(base))
        msn = await open_segment(media)
        writer.write(get(path(media, f"s{msn}.m4s")))
        first = asyncio.ensure_future(read_chunked(reader))
        stack.callback(first.cancel)
        await wait_until_async(lambda: held(front), WITHIN, "the first request held")
        await produce_until_closed(media, msn)
        head, body = await first
        assert media.packager.segment_so_far(msn + 1) == ([], False)  # open, nothing written
        # The player asks for the next segment on the same connection before it has a part.
        writer.write(get(path(media, f"s{msn + 1}.m4s")))
        second = asyncio.ensure_future(read_chunked(reader))
        stack.callback(second.cancel)
        await wait_until_async(lambda: held(front), WITHIN, "the next request held")
        assert not second.done()
        await produce_until_closed(media, msn + 1)
        next_head, next_body = await second
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert next_head.startswith(b"HTTP/1.1 200 OK")
    assert body == media.packager.segment(msn)
    assert next_body == media.packager.segment(msn + 1)
    assert front.seen == []
    assert dict(front.stats.counts) == {(SEGMENT_ROUTE, "GET", 200): 2}
    assert front.admission.in_flight[RequestClass.MEDIA] == 0


async def test_what_the_front_does_not_claim_is_answered_by_the_origin(media: SpaceMedia) -> None:
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
    assert len(front.seen) == 5
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
    assert front.stats.counts == {}  # the framework's telemetry counts those, not the front


async def test_a_stream_that_ends_before_the_first_part_is_answered_by_the_origin(
    media: SpaceMedia,
) -> None:
    front = Served(media)
    async with client(front) as http:
        msn = await open_segment(media)
        await produce_until_closed(media, msn)
        waiting = asyncio.ensure_future(http.get(path(media, f"s{msn + 1}.m4s")))
        await wait_until_async(lambda: held(front), WITHIN, "the next segment held")
        media.packager.end()
        media._notify()
        answer = await asyncio.wait_for(waiting, WITHIN)
        again = await http.get(path(media, f"s{msn + 1}.m4s"))  # the connection goes on
    assert answer.status_code == 204  # what the origin says of the segment after the last
    assert again.status_code == 204
    assert front.seen == [path(media, f"s{msn + 1}.m4s")] * 2
    assert front.stats.counts == {}
    assert front.admission.in_flight[RequestClass.MEDIA] == 0


async def test_a_listener_that_leaves_while_waiting_gives_back_its_place(
    media: SpaceMedia,
) -> None:
    front = Served(media)
    async with AsyncExitStack() as stack:
        base = await stack.enter_async_context(serving(front))
        msn = await open_segment(media)
        await produce_until_closed(media, msn)
        async with connection(base) as (_reader, writer):
            writer.write(get(path(media, f"s{msn + 1}.m4s")))
            await wait_until_async(lambda: held(front), WITHIN, "the next segment held")
        await produce_one(media)  # its first part finds the connection gone
        await wait_until_async(
            lambda: front.admission.in_flight[RequestClass.MEDIA] == 0, WITHIN, "place given back"
        )
    assert front.fanout.streaming == 0


async def test_a_full_media_class_is_refused_503_with_retry_after_by_the_front(
    media: SpaceMedia,
) -> None:
    front = Served(media, AdmissionLimits(media=0))
    async with client(front) as http:
        msn = await open_segment(media)
        refused = await http.get(path(media, f"s{msn}.m4s"))
        after = await http.head(path(media, f"s{msn}.m4s"))  # the connection goes on
    assert front.seen == [path(media, f"s{msn}.m4s")]  # the HEAD only
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "overloaded"
    assert after.status_code == 200
    assert dict(front.stats.counts) == {(SEGMENT_ROUTE, "GET", 503): 1}


async def read_whole(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One response with a Content-Length (or none: an empty body) off a kept-alive connection."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WITHIN)
    length = 0
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head, await asyncio.wait_for(reader.readexactly(length), WITHIN)


async def test_a_segment_request_in_any_shape_or_in_pieces_gets_the_same_answer(
    media: SpaceMedia,
) -> None:
    """Most requests are taken before they are parsed (whole in one read, in the shape players
    send); one in pieces, or with other headers, is parsed first: the same answer either way."""
    front = Served(media)
    async with AsyncExitStack() as stack:
        base = await stack.enter_async_context(serving(front))
        msn = await open_segment(media)
        target = path(media, f"s{msn}.m4s")
        shapes = [
            get(target),
            get(target, "Connection: keep-alive", "User-Agent: player/1.0", "Accept: */*"),
            get(target, "X-Empty:", "Accept-Encoding: gzip,\tdeflate"),
        ]
        streams = []
        for request in shapes:
            reader, writer = await stack.enter_async_context(connection(base))
            writer.write(request)
            streams.append(asyncio.ensure_future(read_chunked(reader)))
            stack.callback(streams[-1].cancel)
        # In pieces: the parser has the request line before the rest comes.
        reader, writer = await stack.enter_async_context(connection(base))
        request = get(target)
        writer.write(request[:20])
        await wait_until_async(
            lambda: any(p._in_message for p in front.protocols), WITHIN, "the first piece parsed"
        )
        writer.write(request[20:])
        streams.append(asyncio.ensure_future(read_chunked(reader)))
        stack.callback(streams[-1].cancel)
        await wait_until_async(
            lambda: front.admission.in_flight[RequestClass.MEDIA] == 4, WITHIN, "all four held"
        )
        await produce_until_closed(media, msn)
        answers = await asyncio.wait_for(asyncio.gather(*streams), WITHIN)
    heads = {
        b"".join(line for line in h.splitlines(True) if not line.startswith(b"date:"))
        for h, _ in answers
    }
    assert len(heads) == 1
    assert next(iter(heads)).startswith(b"HTTP/1.1 200 OK")
    assert [body for _, body in answers] == [media.packager.segment(msn)] * 4
    assert front.seen == []
    assert dict(front.stats.counts) == {(SEGMENT_ROUTE, "GET", 200): 4}


async def test_a_body_that_reads_like_a_segment_request_is_not_taken_for_one(
    media: SpaceMedia,
) -> None:
    """A request's body is the parser's, whatever it looks like: a segment request sent as the
    body of a POST (in its own read) is not answered as a request."""
    front = Served(media)
    async with AsyncExitStack() as stack:
        base = await stack.enter_async_context(serving(front))
        reader, writer = await stack.enter_async_context(connection(base))
        msn = await open_segment(media)
        smuggled = get(path(media, f"s{msn}.m4s"))
        target = path(media, f"s{msn}.m4s")
        writer.write(
            f"POST {target} HTTP/1.1\r\nHost: origin\r\n"
            f"Content-Length: {len(smuggled)}\r\n\r\n".encode()
        )
        await wait_until_async(
            lambda: any(p._in_message for p in front.protocols), WITHIN, "the head parsed"
        )
        writer.write(smuggled)
        head, _ = await read_whole(reader)
        writer.write(get(target, method="HEAD"))
        after = await read_head(reader)
    assert head.startswith(b"HTTP/1.1 405")  # the origin's answer to the POST, and only that
    assert after.startswith(b"HTTP/1.1 200 OK")  # the next request's, not a segment's body
    assert b"transfer-encoding" not in after
    assert front.seen == [target, target]
    assert front.stats.counts == {}


async def test_a_request_behind_a_streamed_segment_is_answered_after_it(
    media: SpaceMedia,
) -> None:
    front = Served(media)
    async with AsyncExitStack() as stack:
        base = await stack.enter_async_context(serving(front))
        reader, writer = await stack.enter_async_context(connection(base))
        msn = await open_segment(media)
        target = path(media, f"s{msn}.m4s")
        writer.write(get(target))
        await wait_until_async(lambda: held(front), WITHIN, "the segment held")
        writer.write(get(target, method="HEAD"))
        await produce_until_closed(media, msn)
        head, body = await read_chunked(reader)
        behind = await read_head(reader)
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert body == media.packager.segment(msn)
    assert behind.startswith(b"HTTP/1.1 200 OK")
    assert b"content-length: %d" % len(body) in behind  # the HEAD of the complete segment
    assert front.seen == [target]


async def test_a_request_behind_a_stream_that_ends_unstarted_is_answered_after_it(
    media: SpaceMedia,
) -> None:
    front = Served(media)
    async with AsyncExitStack() as stack:
        base = await stack.enter_async_context(serving(front))
        reader, writer = await stack.enter_async_context(connection(base))
        msn = await open_segment(media)
        await produce_until_closed(media, msn)
        nxt = path(media, f"s{msn + 1}.m4s")
        writer.write(get(nxt))
        await wait_until_async(lambda: held(front), WITHIN, "the next segment held")
        done = path(media, f"s{msn}.m4s")
        writer.write(get(done, method="HEAD"))  # behind it
        await wait_until_async(  # the server holds it back (reading paused) until its turn
            lambda: any(p.flow.read_paused for p in front.protocols), WITHIN, "the HEAD read"
        )
        media.packager.end()
        media._notify()
        first, _ = await read_whole(reader)
        second = await read_head(reader)
    assert first.startswith(b"HTTP/1.1 204")  # the origin's word on the segment after the last
    assert second.startswith(b"HTTP/1.1 200 OK")  # then the HEAD's
    assert b"content-length: %d" % len(media.packager.segment(msn)) in second
    assert front.seen == [nxt, done]
    assert front.admission.in_flight[RequestClass.MEDIA] == 0

"""The segment fan-out, over real connections: every listener of a segment in production gets each
part once, whenever it arrived; the bytes are the ones the plain ASGI path sends; a listener that
stops reading is cut off and counted, and one that leaves is forgotten.

As in test_segment_stream, the test produces the parts itself (no media clock), so what is
written before what is a fact of the order of events.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from urllib.parse import urlsplit

import httpx
import pytest

from tests.delivery.test_origin import add_parts, media
from tests.delivery.test_segment_stream import produce_one, serve
from townhall.delivery import fanout as fanout_module
from townhall.delivery.fanout import LAST_CHUNK, Ending, SegmentFanout, chunk
from townhall.harness import wait_until_async
from townhall.media.packager import EncodedPart
from townhall.media.pipeline import SpaceMedia

__all__ = ["media"]  # the fixture, shared with the origin's other tests

WITHIN = 20.0  # generous: the machine is shared


async def open_segment(media: SpaceMedia) -> int:
    """Produce until a fresh segment has its first part; its msn."""
    await produce_one(media)
    while media.packager.next_part[1] != 1:
        await produce_one(media)
    return media.packager.next_part[0]


def written(media: SpaceMedia, msn: int) -> bytes:
    so_far = media.packager.segment_so_far(msn)
    assert so_far is not None
    return b"".join(so_far[0])


class Reader:
    """A listener reading one segment's response body into `received` until it ends."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.received = b""
        self.status = 0
        self.task = asyncio.create_task(self._read(http, url))

    async def _read(self, http: httpx.AsyncClient, url: str) -> None:
        async with http.stream("GET", url) as response:
            self.status = response.status_code
            async for data in response.aiter_raw():
                self.received += data


async def both_have(readers: list[Reader], media: SpaceMedia, msn: int) -> None:
    await wait_until_async(
        lambda: all(r.received == written(media, msn) for r in readers),
        WITHIN,
        "every listener has every part written so far",
    )


@asynccontextmanager
async def origin(
    media: SpaceMedia, protocol: str = "fanout", fanout: SegmentFanout | None = None
) -> AsyncIterator[str]:
    """The origin of `media` in uvicorn (see test_segment_stream.serve): its stream's base URL."""
    served = serve(media, protocol, fanout)
    base = await anext(served)
    try:
        yield base
    finally:
        # Run the generators to their end (not aclose: the server's own generator inside would
        # be left suspended, its socket open and its server running).
        with contextlib.suppress(StopAsyncIteration):
            await anext(served)


def request_line(base: str, name: str) -> tuple[tuple[str, int], bytes]:
    """Where to connect for object `name` under `base`, and the request asking for it."""
    url = urlsplit(f"{base}/{name}")
    assert url.hostname is not None
    assert url.port is not None
    return (url.hostname, url.port), f"GET {url.path} HTTP/1.1\r\nHost: origin\r\n\r\n".encode()


async def test_listeners_arriving_at_any_point_of_a_segment_each_get_it_whole_and_once(
    media: SpaceMedia,
) -> None:
    fanout = SegmentFanout()
    async with AsyncExitStack() as stack:
        base = await stack.enter_async_context(origin(media, fanout=fanout))
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=WITHIN))
        msn = await open_segment(media)
        url = f"{base}/s{msn}.m4s"
        first = Reader(http, url)
        await both_have([first], media, msn)
        assert fanout.streaming == 1  # the parts go through the fan-out, not ASGI
        # A part the packager holds but nobody was told of yet: a listener arriving now gets it
        # with the parts before it, and the one already there gets it too (not twice, later).
        add_parts(media, 1)
        second = Reader(http, url)
        await both_have([first, second], media, msn)
        readers = [first, second]
        while media.packager.next_part[0] == msn:
            await produce_one(media)
            readers.append(Reader(http, url))  # arrives just after a part was announced
            if media.packager.next_part[0] == msn:
                await both_have(readers, media, msn)
        await asyncio.wait_for(asyncio.gather(*(r.task for r in readers)), WITHIN)
    whole = media.packager.segment(msn)
    assert [r.status for r in readers] == [200] * len(readers)
    assert [r.received == whole for r in readers] == [True] * len(readers)
    assert fanout.streaming == 0


async def raw_response(base: str, name: str) -> bytes:
    """The whole response to a GET of `name`, as bytes off the socket, less its Date line."""
    (host, port), request = request_line(base, name)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    data = b""
    while not data.endswith(b"\r\n0\r\n\r\n"):
        more = await reader.read(65536)
        assert more, data
        data += more
    writer.close()
    return b"".join(line for line in data.splitlines(True) if not line.startswith(b"date:"))


async def test_the_bytes_on_the_wire_are_those_of_the_asgi_path(media: SpaceMedia) -> None:
    async with AsyncExitStack() as stack:
        fanned = await stack.enter_async_context(origin(media, "fanout"))
        plain = await stack.enter_async_context(origin(media, "asgi"))
        msn = await open_segment(media)
        add_parts(media, 1)  # joined two parts in: the catch-up is framed as the parts after it
        answers = asyncio.gather(
            raw_response(fanned, f"s{msn}.m4s"), raw_response(plain, f"s{msn}.m4s")
        )
        stack.callback(answers.cancel)
        while media.packager.next_part[0] == msn:
            await asyncio.sleep(0.05)  # pacing only: each side reads what it is sent meanwhile
            await produce_one(media)
        fanned_bytes, plain_bytes = await asyncio.wait_for(answers, WITHIN)
    assert fanned_bytes == plain_bytes
    assert b"transfer-encoding: chunked" in fanned_bytes


def not_reading(base: str, name: str) -> socket.socket:
    """A connection that asks for `name` and then never reads (a tiny receive buffer)."""
    address, request = request_line(base, name)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(address)
    sock.sendall(request)
    return sock


async def until(condition: Callable[[], bool], what: str) -> None:
    await wait_until_async(condition, WITHIN, what)


async def test_a_listener_that_stops_reading_is_cut_off_and_counted(media: SpaceMedia) -> None:
    fanout = SegmentFanout()
    async with AsyncExitStack() as stack:
        base = await stack.enter_async_context(origin(media, fanout=fanout))
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=WITHIN))
        msn = await open_segment(media)
        reading = Reader(http, f"{base}/s{msn}.m4s")
        stalled = not_reading(base, f"s{msn}.m4s")
        stack.callback(stalled.close)
        await until(lambda: fanout.streaming == 2, "both listeners streaming")
        # Parts as big as the largest socket send buffer (Linux: 4 MB): the stalled listener's
        # backlog then grows in the origin, past the bound, and it is dropped.
        big = EncodedPart(b"\0" * (4 << 20), media.packager.part_target)
        while fanout.cut_off == 0 and media.packager.next_part[0] == msn:
            media.packager.add_part(big)
            media._notify()
            await until(lambda: len(reading.received) == len(written(media, msn)), "a part read")
        assert fanout.cut_off == 1
        assert fanout.streaming == 1  # the reader, still served
        while media.packager.next_part[0] == msn:
            await produce_one(media)
        await asyncio.wait_for(reading.task, WITHIN)
    assert reading.received == media.packager.segment(msn)


async def test_a_listener_that_leaves_mid_segment_is_no_longer_fed(media: SpaceMedia) -> None:
    fanout = SegmentFanout()
    async with origin(media, fanout=fanout) as base:
        msn = await open_segment(media)
        leaving = not_reading(base, f"s{msn}.m4s")
        await until(lambda: fanout.streaming == 1, "the listener streaming")
        leaving.close()
        await until(lambda: fanout.streaming == 0, "the listener gone")
        await produce_one(media)  # written to nobody; the segment goes on
        assert media.packager.next_part[0] == msn
        assert fanout.cut_off == 0  # it left: not cut off


class FakeTransport(asyncio.Transport):
    """A connection that records what is written to it (the origin's side only)."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.writes: list[list[bytes]] = []  # what each call wrote
        self.aborted = False

    def is_closing(self) -> bool:
        return self.aborted

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))
        self.writes.append([bytes(data)])

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        together = [bytes(data) for data in list_of_data]
        for data in together:
            self.write(data)
        if together:
            self.writes[-len(together) :] = [together]  # one write call (one system call)

    def abort(self) -> None:
        self.aborted = True


class BrokenTransport(FakeTransport):
    """Writes fail after the first: stands for a bug in the pump's path."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.written:
            raise RuntimeError("broken")
        super().write(data)


async def test_a_part_published_before_the_pump_first_runs_is_not_held_back(
    media: SpaceMedia,
) -> None:
    fanout = SegmentFanout()
    msn = await open_segment(media)
    transport = FakeTransport()
    fanout.subscribe(media, msn, transport)
    await produce_one(media)  # no await in between: the pump has not run yet
    await until(lambda: len(transport.written) == 2, "the second part written")
    assert transport.written == [chunk(part) for part in media.packager.segment_so_far(msn)[0]]


async def test_a_failing_fan_out_cuts_its_listeners_off_rather_than_leave_them_waiting(
    media: SpaceMedia, caplog: pytest.LogCaptureFixture
) -> None:
    fanout = SegmentFanout()
    msn = await open_segment(media)
    transport = BrokenTransport()
    done = fanout.subscribe(media, msn, transport)
    await produce_one(media)
    assert await asyncio.wait_for(done, WITHIN) is False
    assert transport.aborted
    assert "segment fan-out failed" in caplog.text
    assert fanout.streaming == 0


async def test_a_head_waits_for_the_first_part_and_a_failing_owner_stops_no_one_else(
    media: SpaceMedia, caplog: pytest.LogCaptureFixture
) -> None:
    fanout = SegmentFanout()
    msn = await open_segment(media)
    while media.packager.next_part[0] == msn:
        await produce_one(media)
    waiting, failing = FakeTransport(), FakeTransport()
    ends: list[Ending] = []

    def fail(_how: Ending) -> None:
        raise RuntimeError("the owner's bug")

    # Both ask for the next segment before it has a part: nothing is written yet.
    fanout.stream(media, msn + 1, failing, b"HEAD ", fail)
    fanout.stream(media, msn + 1, waiting, b"HEAD ", ends.append)
    assert waiting.written == []
    await produce_one(media)
    await until(lambda: len(waiting.written) == 2, "the head, with the first part")
    while media.packager.next_part[0] == msn + 1:
        await produce_one(media)
    await until(lambda: ends == [Ending.COMPLETE], "the segment complete")
    parts = media.packager.segment_so_far(msn + 1)
    assert parts is not None
    # The final chunk goes out in the same write as the last part.
    assert waiting.written == [b"HEAD ", *(chunk(part) for part in parts[0]), LAST_CHUNK]
    assert waiting.writes[-1][-2:] == [chunk(parts[0][-1]), LAST_CHUNK]
    assert failing.written == waiting.written
    assert not failing.aborted  # a complete response, whatever its owner did with it
    assert "subscriber's end failed" in caplog.text
    assert fanout.streaming == 0


async def test_a_big_audience_is_fed_in_turns_each_listener_whole_and_once(
    media: SpaceMedia, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past `TURN` subscribers the pump writes a turn at a time and lets the loop run between:
    every listener still gets every part once and one end, other work runs between the turns,
    and a listener arriving mid-turn (here: while the pump writes to another) is fed too."""
    monkeypatch.setattr(fanout_module, "TURN", 2)
    fanout = SegmentFanout()
    msn = await open_segment(media)
    ends: list[tuple[int, Ending]] = []
    between: list[int] = []  # how many listeners had the newest part when another task ran
    newest = {"chunk": b""}  # the segment's newest part, framed

    def has_newest(transport: FakeTransport) -> bool:
        return bool(transport.written) and transport.written[-1] == newest["chunk"]

    def watch() -> None:
        between.append(sum(has_newest(t) for t in audience))
        if len(between) < 1000:
            asyncio.get_running_loop().call_soon(watch)

    class Inviting(FakeTransport):
        """Brings one more listener in the first time the pump writes a later part to it."""

        invited = False

        def write(self, data: bytes | bytearray | memoryview) -> None:
            super().write(data)
            if len(self.written) > 2 and not self.invited:
                self.invited = True
                late = FakeTransport()
                audience.append(late)
                fanout.stream(media, msn, late, b"HEAD ", lambda how: ends.append((99, how)))

    audience: list[FakeTransport] = [FakeTransport() for _ in range(6)]
    audience[3] = Inviting()
    for i, transport in enumerate(list(audience)):
        fanout.stream(media, msn, transport, b"HEAD ", lambda how, i=i: ends.append((i, how)))
    while media.packager.next_part[0] == msn:
        await produce_one(media)
        so_far = media.packager.segment_so_far(msn)
        if so_far is not None:
            newest["chunk"] = chunk(so_far[0][-1])
        if media.packager.next_part[0] == msn:
            between.clear()
            asyncio.get_running_loop().call_soon(watch)
            await until(
                lambda: all(has_newest(t) for t in audience),
                "every listener has the newest part",
            )
    await until(lambda: len(ends) == len(audience), "every listener's stream ended")
    so_far = media.packager.segment_so_far(msn)
    assert so_far is not None
    parts = [chunk(part) for part in so_far[0]]
    assert [t.written for t in audience] == [[b"HEAD ", *parts, LAST_CHUNK]] * len(audience)
    assert sorted(i for i, _ in ends) == [0, 1, 2, 3, 4, 5, 99]
    assert {how for _, how in ends} == {Ending.COMPLETE}
    # Some other task ran while only part of the audience had the newest part: the turns.
    assert any(0 < n < len(audience) for n in between)
    assert fanout.streaming == 0


async def test_a_pump_stopped_mid_turns_cuts_off_those_it_had_not_reached(
    media: SpaceMedia, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shutdown cancels the pump; if that comes between two turns, every listener still ends
    (cut off), not only those already written to."""
    monkeypatch.setattr(fanout_module, "TURN", 2)
    fanout = SegmentFanout()
    msn = await open_segment(media)
    ends: list[Ending] = []

    class Stopping(FakeTransport):
        """Stops the pump when it writes this listener a later part (the first turn)."""

        def write(self, data: bytes | bytearray | memoryview) -> None:
            super().write(data)
            if len(self.written) > 2:
                pump = fanout._streams[id(media)].pump
                assert pump is not None
                pump.cancel()

    audience = [Stopping(), *(FakeTransport() for _ in range(5))]
    for transport in audience:
        fanout.stream(media, msn, transport, b"HEAD ", ends.append)
    await until(lambda: all(len(t.written) == 2 for t in audience), "the first part for all")
    await produce_one(media)
    await until(lambda: len(ends) == len(audience), "every listener's stream ended")
    assert ends == [Ending.CUT] * len(audience)
    assert all(t.aborted for t in audience)
    assert len(audience[-1].written) == 2  # not reached before the pump stopped
    assert fanout.streaming == 0

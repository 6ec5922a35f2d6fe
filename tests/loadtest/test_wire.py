"""The lean HTTP client (loadtest/wire.py) against a real TCP server on loopback that answers in
the shapes an origin and an edge use, cut into pieces of every size: what a listener receives must
not depend on how the bytes were split."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from townhall.loadtest.http import HTTPFailure
from townhall.loadtest.wire import LeanClient

SEGMENT = [b"part-one:" * 40, b"part-two:" * 50, b"three"]
CHUNKED = (
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: video/mp4\r\n\r\n"
    + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in SEGMENT)
    + b"0\r\n\r\n"
)
LENGTH = b'HTTP/1.1 200 OK\r\ncontent-length: 11\r\nretry-after: 3\r\n\r\n{"a": true}'
NO_BODY = b"HTTP/1.1 204 No Content\r\n\r\n"

Server = Callable[[list[bytes], int], asyncio.Future[str]]


@pytest.fixture
async def answering() -> AsyncIterator[Callable[[list[bytes], int], str]]:
    """A server on 127.0.0.1 that answers each request it reads with the next of `answers`,
    written `piece` bytes at a time (each piece flushed on its own)."""
    servers: list[asyncio.Server] = []

    async def start(answers: list[bytes], piece: int) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for answer in answers:
                await reader.readuntil(b"\r\n\r\n")
                for i in range(0, len(answer), piece):
                    writer.write(answer[i : i + piece])
                    await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start  # type: ignore[misc]
    for server in servers:
        server.close()


@pytest.mark.parametrize("piece", [1, 7, 100, 100_000])
async def test_answers_are_the_same_however_their_bytes_are_cut(
    answering: Callable[[list[bytes], int], object], piece: int
) -> None:
    base = await answering([CHUNKED, LENGTH, NO_BODY, CHUNKED], piece)  # type: ignore[misc]
    client = LeanClient(base, timeout=10)
    streamed: list[bytes] = []
    first = await client.get("/live/x/s1.m4s", sink=streamed.append)
    assert (first.status, first.content, b"".join(streamed)) == (200, b"", b"".join(SEGMENT))
    second = await client.get("/api/x")
    assert (second.status, second.content, second.headers["retry-after"]) == (
        200,
        b'{"a": true}',
        "3",
    )
    assert (await client.get("/live/x/s2.m4s")).status == 204
    assert (await client.get("/live/x/s3.m4s")).content == b"".join(SEGMENT)
    assert len(client._free) == 1  # all four on one kept-alive connection
    client.close()


async def test_a_server_that_stops_answering_is_a_timeout_and_a_refused_port_a_connect_failure(
    answering: Callable[[list[bytes], int], object],
) -> None:
    base = await answering([CHUNKED[:60]], 100)  # type: ignore[misc]
    with pytest.raises(HTTPFailure) as failure:
        await LeanClient(base, timeout=0.5).get("/live/x/s1.m4s")
    assert failure.value.kind in ("timeout", "closed")
    with pytest.raises(HTTPFailure) as failure:
        await LeanClient("http://127.0.0.1:9", timeout=5).get("/")
    assert failure.value.kind == "connect"


async def test_a_head_too_long_is_a_protocol_failure(
    answering: Callable[[list[bytes], int], object],
) -> None:
    base = await answering([b"HTTP/1.1 200 OK\r\nx: " + b"y" * 40_000 + b"\r\n\r\n"], 4096)  # type: ignore[misc]
    with pytest.raises(HTTPFailure) as failure:
        await LeanClient(base, timeout=10).get("/")
    assert failure.value.kind == "protocol"

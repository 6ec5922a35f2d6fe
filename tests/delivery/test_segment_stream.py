"""A segment read while it is produced arrives part by part, over a real HTTP connection.

The origin runs in uvicorn on loopback, with the server's own protocol (the parts written by the
segment fan-out, as in production) and with uvicorn's plain one (each part through ASGI); the test itself produces the parts (the media clock is not
started), so "a part arrives before the next one exists" is a fact of the order of events, not a
timing.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from tests.delivery.test_origin import SPACE, add_parts, media
from townhall.api.bounds import BoundedHttpProtocol
from townhall.config import MediaConfig
from townhall.delivery.fanout import SegmentFanout
from townhall.delivery.origin import build_origin
from townhall.media.pipeline import SpaceMedia

__all__ = ["media"]  # the fixture, shared with the origin's other tests


# The server's protocol (what `townhall serve` runs: parts by the fan-out), or uvicorn's own.
PROTOCOLS = {"fanout": BoundedHttpProtocol, "asgi": "httptools"}


async def serve_app(app: ASGIApp, protocol: str | Any = "fanout") -> AsyncIterator[str]:
    """`app` in uvicorn on a loopback port, with `protocol` (a name in PROTOCOLS, or uvicorn's
    `http` setting itself); yields its base URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # bound before serving starts: a client may connect at once
    http = PROTOCOLS[protocol] if isinstance(protocol, str) else protocol
    config = uvicorn.Config(app, log_level="critical", lifespan="off", http=cast(Any, http))
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        listener.close()


async def serve(
    media: SpaceMedia, protocol: str = "fanout", fanout: SegmentFanout | None = None
) -> AsyncIterator[str]:
    """The origin of `media`; yields the base URL of its stream's objects."""
    app = build_origin(lambda space: media if space == SPACE else None, fanout=fanout)
    async for url in serve_app(app, protocol):
        yield f"{url}/{SPACE}/{media.packager.stream_id}"


@pytest.fixture(params=sorted(PROTOCOLS))
async def base(media: SpaceMedia, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    async for url in serve(media, request.param):
        yield url


async def produce_one(media: SpaceMedia) -> None:
    add_parts(media, 1)
    media._notify()


async def read_while_produced(media: SpaceMedia, base: str) -> None:
    """Ask `base` for a fresh segment with one part written; every part written reaches the
    reader before the next one is produced, and the response ends with the segment."""
    await produce_one(media)
    msn, index = media.packager.next_part
    while index != 1:
        await produce_one(media)
        msn, index = media.packager.next_part
    received = b""
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream("GET", f"{base}/s{msn}.m4s") as response,
    ):
        assert response.status_code == 200
        assert "content-length" not in response.headers  # chunked: the length is not known yet
        assert "immutable" in response.headers["cache-control"]
        chunks = response.aiter_raw()
        while True:
            so_far = media.packager.segment_so_far(msn)
            assert so_far is not None
            parts, complete = so_far
            written = b"".join(parts)
            while len(received) < len(written):
                received += await asyncio.wait_for(anext(chunks), 10)
            assert received == written
            if complete:
                break
            await produce_one(media)
        assert [c async for c in chunks] == []  # and then the response ends
    assert received == media.packager.segment(msn)


async def test_a_listener_gets_each_part_of_a_segment_as_it_is_written(
    media: SpaceMedia, base: str
) -> None:
    await read_while_produced(media, base)


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
async def test_a_segment_cut_short_by_a_stopped_stream_is_not_a_complete_response(
    protocol: str,
) -> None:
    # One-part segments of 0.107 s: a target duration of 1 s, so a 3 s blocking timeout.
    media = SpaceMedia(SPACE, MediaConfig(aac_frames_per_part=5, parts_per_segment=2))
    async for base in serve(media, protocol):
        await produce_one(media)
        while media.packager.next_part[1] != 1:
            await produce_one(media)
        msn = media.packager.next_part[0]
        async with (
            httpx.AsyncClient(timeout=30) as http,
            http.stream("GET", f"{base}/s{msn}.m4s") as response,
        ):
            assert response.status_code == 200
            # Nothing more is produced (the stream stopped): no final chunk, incomplete.
            with pytest.raises(httpx.RemoteProtocolError):
                await response.aread()

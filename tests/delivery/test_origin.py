"""The origin answers players and caches as RFC 8216bis and HTTP caching want, without sockets.

A real encoder and packager feed a SpaceMedia whose clock task is not started; the test adds parts
itself and drives the Starlette app through httpx's ASGI transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import numpy as np
import pytest

from townhall.config import MediaConfig
from townhall.delivery.origin import build_origin
from townhall.media.audio import FRAME_SAMPLES
from townhall.media.pipeline import SpaceMedia

SPACE = "abcdefghij"


def add_parts(media: SpaceMedia, count: int) -> None:
    """Feed the program encoder until `count` more parts have reached the packager."""
    produced = 0
    while produced < count:
        pcm = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        for part in media._encoder.encode(pcm):
            media.packager.add_part(part)
            produced += 1


@pytest.fixture
async def media() -> AsyncIterator[SpaceMedia]:
    m = SpaceMedia(SPACE, MediaConfig())
    yield m
    m._worker.shutdown(wait=False)


@pytest.fixture
async def client(media: SpaceMedia) -> AsyncIterator[httpx.AsyncClient]:
    app = build_origin(lambda space: media if space == SPACE else None)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://origin"
    ) as c:
        yield c


async def test_media_objects_are_immutable_and_cors_open(
    media: SpaceMedia, client: httpx.AsyncClient
) -> None:
    add_parts(media, 7)
    stream = media.packager.stream_id
    for path in (
        f"/{SPACE}/{stream}/init.mp4",
        f"/{SPACE}/{stream}/p1.0.m4s",
        f"/{SPACE}/{stream}/s1.m4s",
    ):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert "immutable" in response.headers["cache-control"]
        assert response.headers["access-control-allow-origin"] == "*"
        assert response.headers["content-type"] == "audio/mp4"
    assert (await client.get(f"/{SPACE}/{stream}/s1.m4s")).content == media.packager.segment(1)


async def test_playlists_are_fresh_for_less_than_a_part(
    media: SpaceMedia, client: httpx.AsyncClient
) -> None:
    add_parts(media, 2)
    live = await client.get(f"/{SPACE}/media.m3u8")
    assert live.status_code == 200
    assert live.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    assert "max-age=0" in live.headers["cache-control"]
    assert "#EXT-X-PRELOAD-HINT" in live.text
    multivariant = await client.get(f"/{SPACE}/index.m3u8")
    assert 'CODECS="mp4a.40.2"' in multivariant.text


async def test_a_blocking_reload_is_held_until_its_part_exists(
    media: SpaceMedia, client: httpx.AsyncClient
) -> None:
    add_parts(media, 2)
    msn, index = media.packager.next_part
    request = asyncio.create_task(
        client.get(f"/{SPACE}/media.m3u8", params={"_HLS_msn": msn, "_HLS_part": index})
    )
    await asyncio.sleep(0)  # let the request reach its wait (ordering only, not timing)
    for _ in range(20):
        await asyncio.sleep(0)
    assert not request.done(), "the origin answered before the part existed"
    add_parts(media, 1)
    await media._notify()
    response = await asyncio.wait_for(request, 5)
    assert response.status_code == 200
    assert f"p{msn}.{index}.m4s" in response.text
    assert "max-age=0" not in response.headers["cache-control"]


async def test_the_preload_hinted_part_is_served_when_it_is_produced(
    media: SpaceMedia, client: httpx.AsyncClient
) -> None:
    add_parts(media, 1)
    msn, index = media.packager.next_part
    path = f"/{SPACE}/{media.packager.stream_id}/p{msn}.{index}.m4s"
    request = asyncio.create_task(client.get(path))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not request.done()
    add_parts(media, 1)
    await media._notify()
    response = await asyncio.wait_for(request, 5)
    assert response.status_code == 200
    assert response.content == media.packager.part(msn, index)


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({"_HLS_part": "0"}, 400),  # part without msn
        ({"_HLS_msn": "-1"}, 400),
        ({"_HLS_msn": "x"}, 400),
        ({"_HLS_msn": "99999"}, 400),  # far future
        ({"_HLS_msn": "1", "_HLS_part": "0"}, 200),  # already there
    ],
)
async def test_blocking_reload_directives_are_validated(
    media: SpaceMedia, client: httpx.AsyncClient, query: dict[str, str], status: int
) -> None:
    add_parts(media, 3)
    response = await client.get(f"/{SPACE}/media.m3u8", params=query)
    assert response.status_code == status
    if status == 400:
        assert response.json()["error"]["code"] == "bad_request"


async def test_unknown_spaces_streams_and_objects_are_404(
    media: SpaceMedia, client: httpx.AsyncClient
) -> None:
    add_parts(media, 1)
    stream = media.packager.stream_id
    for path in (
        "/zzzzzzzzzz/media.m3u8",
        f"/{SPACE}/deadbeef/init.mp4",
        f"/{SPACE}/{stream}/p999.0.m4s",
        f"/{SPACE}/{stream}/../../etc/passwd",
        f"/{SPACE}/{stream}/s2.m4s",  # not complete yet
    ):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"

"""The origin answers players and caches as RFC 8216bis and HTTP caching want, without sockets.

A real encoder and packager feed a SpaceMedia whose clock task is not started; the test adds parts
itself and drives the Starlette app through httpx's ASGI transport.
"""

from __future__ import annotations

import asyncio
import re
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


def part_tag(media: SpaceMedia, msn: int, index: int) -> str:
    """How the playlist names part (msn, index): a byte range of its segment."""
    offset = sum(len(media.packager.part(msn, i) or b"") for i in range(index))
    length = len(media.packager.part(msn, index) or b"")
    return f'URI="{media.packager.stream_id}/s{msn}.m4s",BYTERANGE="{length}@{offset}"'


@pytest.fixture
async def media() -> SpaceMedia:
    return SpaceMedia(SPACE, MediaConfig())  # never started: its clock has no task or thread


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


async def still_held(request: asyncio.Task[httpx.Response], why: str) -> None:
    """The request has had every chance to run (ordering, not timing) and is still waiting."""
    for _ in range(20):
        await asyncio.sleep(0)
    assert not request.done(), why


async def answered_once_produced(
    media: SpaceMedia,
    client: httpx.AsyncClient,
    path: str,
    headers: dict[str, str] | None = None,
    params: dict[str, int] | None = None,
) -> httpx.Response:
    """Ask for the next part (or a playlist with it) before it exists: held until it is produced."""
    request = asyncio.create_task(client.get(path, headers=headers, params=params))
    await still_held(request, "the origin answered before the part existed")
    add_parts(media, 1)
    media._notify()
    return await asyncio.wait_for(request, 5)


async def test_a_blocking_reload_is_held_until_its_part_exists(
    media: SpaceMedia, client: httpx.AsyncClient
) -> None:
    add_parts(media, 2)
    msn, index = media.packager.next_part
    query = {"_HLS_msn": msn, "_HLS_part": index}
    response = await answered_once_produced(media, client, f"/{SPACE}/media.m3u8", params=query)
    assert response.status_code == 200
    assert part_tag(media, msn, index) in response.text
    assert "max-age=0" not in response.headers["cache-control"]


async def test_the_next_part_by_its_own_name_is_served_when_it_is_produced(
    media: SpaceMedia, client: httpx.AsyncClient
) -> None:
    """Parts keep their own names (p{msn}.{index}.m4s) for players holding older playlists."""
    add_parts(media, 1)
    msn, index = media.packager.next_part
    path = f"/{SPACE}/{media.packager.stream_id}/p{msn}.{index}.m4s"
    response = await answered_once_produced(media, client, path)
    assert response.status_code == 200
    assert response.content == media.packager.part(msn, index)


async def test_a_listed_part_is_its_byte_range_of_the_segment_open_or_complete(
    media: SpaceMedia, client: httpx.AsyncClient
) -> None:
    add_parts(media, 8)  # a complete segment, and the open one with two parts
    stream = media.packager.stream_id
    open_msn = media.packager.next_part[0]
    playlist = (await client.get(f"/{SPACE}/media.m3u8")).text
    for msn, index in ((open_msn - 1, 2), (open_msn, 1)):
        assert part_tag(media, msn, index) in playlist
        part = media.packager.part(msn, index)
        assert part is not None
        offset = sum(len(media.packager.part(msn, i) or b"") for i in range(index))
        last = offset + len(part) - 1
        response = await client.get(
            f"/{SPACE}/{stream}/s{msn}.m4s", headers={"Range": f"bytes={offset}-{last}"}
        )
        assert response.status_code == 206
        assert response.content == part
        total = "*" if msn == open_msn else str(len(media.packager.segment(msn) or b""))
        assert response.headers["content-range"] == f"bytes {offset}-{last}/{total}"
        assert "immutable" in response.headers["cache-control"]


async def test_the_preload_hint_is_answered_with_the_part_when_it_is_written(
    media: SpaceMedia, client: httpx.AsyncClient
) -> None:
    add_parts(media, 2)
    playlist = (await client.get(f"/{SPACE}/media.m3u8")).text
    hint = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)",BYTERANGE-START=(\d+)', playlist)
    assert hint is not None, playlist
    uri, start = hint.group(1), int(hint.group(2))
    msn, index = media.packager.next_part
    path = f"/{SPACE}/{uri}"
    response = await answered_once_produced(media, client, path, {"Range": f"bytes={start}-"})
    assert response.status_code == 206
    assert response.content == media.packager.part(msn, index)


async def test_a_whole_segment_asked_for_while_produced_is_its_final_bytes(
    media: SpaceMedia, client: httpx.AsyncClient
) -> None:
    add_parts(media, 7)
    while media.packager.next_part[1] != 1:  # the open segment has one part
        add_parts(media, 1)
    stream = media.packager.stream_id
    msn = media.packager.next_part[0]
    request = asyncio.create_task(client.get(f"/{SPACE}/{stream}/s{msn}.m4s"))
    for _ in range(5):
        await still_held(request, "the segment ended before its last part was written")
        add_parts(media, 1)
        media._notify()
    response = await asyncio.wait_for(request, 5)
    assert response.status_code == 200
    assert response.content == media.packager.segment(msn)
    assert "immutable" in response.headers["cache-control"]


async def test_ranges_beyond_a_complete_segment_are_refused(
    media: SpaceMedia, client: httpx.AsyncClient
) -> None:
    add_parts(media, 7)
    msn = media.packager.next_part[0] - 1
    segment = media.packager.segment(msn) or b""
    assert segment
    path = f"/{SPACE}/{media.packager.stream_id}/s{msn}.m4s"
    response = await client.get(path, headers={"Range": f"bytes={len(segment)}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(segment)}"
    assert response.json()["error"]["code"] == "range_not_satisfiable"
    tail = await client.get(path, headers={"Range": "bytes=-10"})
    assert (tail.status_code, tail.content) == (206, segment[-10:])
    several = await client.get(path, headers={"Range": "bytes=0-1,5-9"})
    assert (several.status_code, several.content) == (200, segment)  # not understood: all of it


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


async def test_the_segment_after_an_ended_streams_last_is_no_content(
    media: SpaceMedia, client: httpx.AsyncClient
) -> None:
    """A player asking for the next segment (held: nothing written yet) learns of the end from a
    204, not an error; so does one asking later."""
    add_parts(media, 6)
    while media.packager.next_part[1] != 0:  # a segment just closed: the next has no part yet
        add_parts(media, 1)
    msn = media.packager.next_part[0]
    path = f"/{SPACE}/{media.packager.stream_id}/s{msn}.m4s"
    waiting = asyncio.create_task(client.get(path))
    await still_held(waiting, "the next segment was answered before it had a part")
    media.packager.end()
    media._notify()
    for answer in (await asyncio.wait_for(waiting, 5), await client.get(path)):
        assert answer.status_code == 204
        assert answer.headers["cache-control"] == "no-store"

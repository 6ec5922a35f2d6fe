"""A private Space's media only at its capability path, and the same 404 as for no Space anywhere
else, checked without sockets: the gate in front of a real origin fed by a real packager."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from tests.delivery.test_origin import add_parts
from townhall.config import MediaConfig
from townhall.delivery.access import PrivateGate, SpaceAccess
from townhall.delivery.capability import MediaKeys, clip_open
from townhall.delivery.origin import build_origin
from townhall.media.pipeline import SpaceMedia
from townhall.spaces.model import Space, SpaceId, UserId, Visibility
from townhall.state.unavailable import is_unavailable

PRIVATE = SpaceId("privatesp1")
PUBLIC = SpaceId("publicspa1")
KEYS = MediaKeys("s" * 40)


def space(space_id: SpaceId, visibility: Visibility, code: str = "") -> Space:
    return Space(
        space_id, "A Space", UserId("u-aaaaaaaaaaaa"), 0.0, visibility=visibility, invite_code=code
    )


class Records:
    """What the gate reads of the records: one Space per id, changed by the test; can fail."""

    def __init__(self) -> None:
        self.spaces = {
            PRIVATE: space(PRIVATE, Visibility.PRIVATE, "first-code"),
            PUBLIC: space(PUBLIC, Visibility.PUBLIC),
        }
        self.reads = 0
        self.down = False

    async def find(self, space_id: str) -> Space | None:
        self.reads += 1
        if self.down:
            raise OperationalError("SELECT", {}, ConnectionRefusedError())
        return self.spaces.get(SpaceId(space_id))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def streams() -> dict[str, SpaceMedia]:
    # Never started: their clocks have no task or thread to release.
    made = {sid: SpaceMedia(sid, MediaConfig()) for sid in (PRIVATE, PUBLIC)}
    for media in made.values():
        add_parts(media, 7)
    return made


@pytest.fixture
def records() -> Records:
    return Records()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client(
    streams: dict[str, SpaceMedia], records: Records, clock: Clock
) -> AsyncIterator[httpx.AsyncClient]:
    gate = PrivateGate(
        build_origin(streams.get),
        build_origin(lambda _: None),
        SpaceAccess(records.find, KEYS, is_unavailable, clock=clock),
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gate), base_url="http://origin"
    ) as c:
        yield c


def key(records: Records) -> str:
    private = records.spaces[PRIVATE]
    return KEYS.media_key(private.id, private.invite_code)


def paths(media: SpaceMedia) -> list[str]:
    stream = media.packager.stream_id
    return [
        "index.m3u8",
        "media.m3u8",
        "dvr.m3u8",
        f"{stream}/init.mp4",
        f"{stream}/s1.m4s",
        f"{stream}/p1.0.m4s",
    ]


async def test_a_public_space_is_served_at_its_plain_path_as_before(
    client: httpx.AsyncClient, streams: dict[str, SpaceMedia]
) -> None:
    for path in paths(streams[PUBLIC])[:2] + paths(streams[PUBLIC])[3:]:
        response = await client.get(f"/{PUBLIC}/{path}")
        assert response.status_code == 200, (path, response.text)


async def test_a_stranger_who_knows_the_id_gets_what_a_space_that_does_not_exist_gets(
    client: httpx.AsyncClient, streams: dict[str, SpaceMedia]
) -> None:
    for path in paths(streams[PRIVATE]):
        stranger = await client.get(f"/{PRIVATE}/{path}")
        nobody = await client.get(f"/zzzzzzzzzz/{path}")
        assert stranger.status_code == 404, path
        assert (stranger.status_code, stranger.content) == (nobody.status_code, nobody.content)
        guessed = await client.get(f"/{PRIVATE}/{'A' * 22}/{path}")
        nobody = await client.get(f"/zzzzzzzzzz/{'A' * 22}/{path}")
        assert guessed.status_code == 404, path
        assert (guessed.status_code, guessed.content) == (nobody.status_code, nobody.content)


async def test_the_capability_path_serves_everything_cacheable_like_the_public_path(
    client: httpx.AsyncClient, streams: dict[str, SpaceMedia], records: Records
) -> None:
    media = streams[PRIVATE]
    base = f"/{PRIVATE}/{key(records)}"
    for path in paths(media)[:2] + paths(media)[3:]:
        response = await client.get(f"{base}/{path}")
        assert response.status_code == 200, (path, response.text)
        assert response.headers["cache-control"].startswith("public"), path
    segment = await client.get(f"{base}/{media.packager.stream_id}/s1.m4s")
    assert segment.content == media.packager.segment(1)
    # The playlists name their objects relative to themselves: a player stays on the key's path.
    playlist = (await client.get(f"{base}/media.m3u8")).text
    assert f"/{PRIVATE}/" not in playlist
    assert "/live/" not in playlist


async def test_a_new_invite_code_ends_the_old_media_urls_within_a_second(
    client: httpx.AsyncClient, records: Records, clock: Clock
) -> None:
    old = f"/{PRIVATE}/{key(records)}/media.m3u8"
    assert (await client.get(old)).status_code == 200
    records.spaces[PRIVATE] = replace(records.spaces[PRIVATE], invite_code="second-code")
    clock.now += 1.0
    assert (await client.get(old)).status_code == 404
    new = f"/{PRIVATE}/{key(records)}/media.m3u8"
    assert new != old
    assert (await client.get(new)).status_code == 200


async def test_the_records_are_read_once_a_second_per_space_not_per_request(
    client: httpx.AsyncClient, records: Records, clock: Clock
) -> None:
    url = f"/{PRIVATE}/{key(records)}/media.m3u8"
    for _ in range(20):
        assert (await client.get(url)).status_code == 200
    assert records.reads == 1
    clock.now += 1.0
    assert (await client.get(url)).status_code == 200
    assert records.reads == 2


async def test_with_the_records_away_a_known_space_keeps_playing_and_an_unknown_one_is_503(
    client: httpx.AsyncClient, records: Records, clock: Clock
) -> None:
    url = f"/{PRIVATE}/{key(records)}/media.m3u8"
    assert (await client.get(url)).status_code == 200
    records.down = True
    clock.now += 5.0
    assert (await client.get(url)).status_code == 200
    assert (await client.get(f"/{PRIVATE}/media.m3u8")).status_code == 404  # still private
    unknown = await client.get(f"/{PUBLIC}/media.m3u8")
    assert unknown.status_code == 503
    assert unknown.headers["retry-after"] == "1"
    assert unknown.json()["error"]["code"] == "unavailable"


def test_keys_belong_to_one_space_and_one_invite_code() -> None:
    one = KEYS.media_key("aaaaaaaaaa", "code-1")
    assert one == MediaKeys("s" * 40).media_key("aaaaaaaaaa", "code-1")  # every node agrees
    assert one != KEYS.media_key("aaaaaaaaab", "code-1")
    assert one != KEYS.media_key("aaaaaaaaaa", "code-2")
    assert one != MediaKeys("t" * 40).media_key("aaaaaaaaaa", "code-1")
    assert one != KEYS.clip_key("aaaaaaaaaa", "code-1")  # a clip key opens no stream
    assert len(one) == 22
    assert one.replace("-", "").replace("_", "").isalnum()


def test_public_paths_and_clip_links_stay_as_they_were() -> None:
    public = space(PUBLIC, Visibility.PUBLIC)
    unlisted = space(PUBLIC, Visibility.UNLISTED)
    assert KEYS.media_path(public) == f"/live/{PUBLIC}"
    assert KEYS.media_path(unlisted) == f"/live/{PUBLIC}"
    assert KEYS.clip_query(public, "x") == ""
    assert clip_open(KEYS, public, f"{PUBLIC}-abcdefghijkl", None)


def test_a_private_clip_opens_with_its_current_key_only() -> None:
    private = space(PRIVATE, Visibility.PRIVATE, "first-code")
    clip = f"{PRIVATE}-abcdefghijkl"
    query = KEYS.clip_query(private, clip)
    assert query.startswith("?key=")
    assert clip_open(KEYS, private, clip, query.removeprefix("?key="))
    assert not clip_open(KEYS, private, clip, None)
    assert not clip_open(KEYS, private, f"{PRIVATE}-bbbbbbbbbbbb", query.removeprefix("?key="))
    rotated = replace(private, invite_code="second-code")
    assert not clip_open(KEYS, rotated, clip, query.removeprefix("?key="))

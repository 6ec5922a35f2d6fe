"""The origin serves a captioned Space's subtitle rendition beside its audio, and an uncaptioned
Space's playlists exactly as before."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from townhall.captions.track import CaptionTrack, TrackShape
from townhall.captions.vtt import Cue
from townhall.config import MediaConfig
from townhall.delivery.origin import build_origin
from townhall.media.pipeline import SpaceMedia

CAPTIONED, PLAIN = "captioned1", "plainspace"


@pytest.fixture
async def track() -> CaptionTrack:
    return CaptionTrack(
        TrackShape("abcd1234", 1, 2.0, 1.92, 1_800_000_000.0, 2, window=6, retained=64)
    )


@pytest.fixture
async def client(track: CaptionTrack) -> AsyncIterator[httpx.AsyncClient]:
    media = {
        CAPTIONED: SpaceMedia(CAPTIONED, MediaConfig()),
        PLAIN: SpaceMedia(PLAIN, MediaConfig()),
    }
    app = build_origin(media.get, captions=lambda space: track if space == CAPTIONED else None)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://origin"
    ) as c:
        yield c


async def test_only_a_captioned_space_names_a_subtitle_rendition(client: httpx.AsyncClient) -> None:
    captioned = (await client.get(f"/{CAPTIONED}/index.m3u8")).text
    assert "#EXT-X-MEDIA:TYPE=SUBTITLES" in captioned
    assert 'URI="captions.m3u8"' in captioned
    plain = (await client.get(f"/{PLAIN}/index.m3u8")).text
    assert "SUBTITLES" not in plain
    missing = await client.get(f"/{PLAIN}/captions.m3u8")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


async def test_published_caption_segments_are_served_as_immutable_webvtt(
    client: httpx.AsyncClient, track: CaptionTrack
) -> None:
    track.add(Cue(2.5, 3.5, "hello listeners"))
    track.advance(4.0)  # segment 1 (2.0 → 3.92) is final, segment 2 not yet
    playlist = await client.get(f"/{CAPTIONED}/captions.m3u8")
    assert playlist.status_code == 200
    assert "abcd1234/c1.vtt" in playlist.text
    assert "abcd1234/c2.vtt" not in playlist.text
    segment = await client.get(f"/{CAPTIONED}/abcd1234/c1.vtt")
    assert segment.status_code == 200
    assert segment.headers["content-type"].startswith("text/vtt")
    assert "immutable" in segment.headers["cache-control"]
    assert "hello listeners" in segment.text
    assert (await client.get(f"/{CAPTIONED}/abcd1234/c2.vtt")).status_code == 404
    assert (await client.get(f"/{CAPTIONED}/otherrun/c1.vtt")).status_code == 404
    download = await client.get(f"/{CAPTIONED}/captions.vtt")  # nothing kept: not recorded
    assert download.status_code == 404

"""Rewind a live recorded Space: the DVR playlist plays from the start while the Space goes on,
older segments come from the recording, and what a live listener fetches does not grow with age."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.audio_analysis import decode_mono, tone_strength
from tests.conftest import Proc, Server, wait_until
from tests.e2e.test_audio_path import on_stage
from tests.e2e.test_recording import decode
from townhall.delivery.origin import DVR_REFRESH_S

pytestmark = pytest.mark.e2e

SEGMENT_S = 1.92


def test_a_listener_can_rewind_to_the_start_of_a_live_space(
    server: Server, speakers: Callable[..., Proc], tmp_path: Path
) -> None:
    space = server.create_space("Rewindable", record=True)
    on_stage(speakers(*space.host_bot_args(), "--tone", "440"))
    live_url = f"{server.url}/live/{space.id}/media.m3u8"
    dvr_url = f"{server.url}/live/{space.id}/dvr.m3u8"
    went_live = float(server.call("GET", f"/api/spaces/{space.id}")["space"]["started_at"])

    def media_sequence() -> int:
        listed = re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", httpx.get(live_url, timeout=10).text)
        return int(listed.group(1)) if listed is not None else -1

    # Numbers start where the Space's timeline is (see media.timeline), not at 1.
    start = media_sequence()

    def first_segment_left_the_window() -> bool:
        return media_sequence() > start + 2

    # Wait until the start of the Space has slid out of the live playlist (its window is ~12 s).
    wait_until(
        first_segment_left_the_window, 60, "the live window to slide past the start", interval=0.5
    )
    live_segments = httpx.get(live_url, timeout=10).text.count("#EXTINF:")

    dvr = httpx.get(dvr_url, timeout=10)
    assert dvr.status_code == 200
    assert "#EXT-X-ENDLIST" in dvr.text
    recorded = sum(float(d) for d in re.findall(r"#EXTINF:([\d.]+),", dvr.text))
    # Everything since going live, give or take: the playlist may be up to DVR_REFRESH_S old (an
    # earlier request in this window may have built it), a starved machine's media clock skips
    # what it could not produce in time, and the open segment is not listed.
    elapsed = time.time() - went_live
    assert elapsed - DVR_REFRESH_S - 2 * SEGMENT_S - 1.0 <= recorded <= elapsed + 1.0

    # The rewound start is served from the recording although the live stream no longer holds it.
    first = re.search(r"^(\S+/s\d+\.m4s)$", dvr.text, re.MULTILINE)
    assert first is not None
    assert (
        httpx.get(f"{server.url}/live/{space.id}/{first.group(1)}", timeout=10).status_code == 200
    )
    audio = decode_mono(decode(dvr_url, tmp_path / "rewound.wav"))
    assert len(audio) / 48_000 == pytest.approx(recorded, abs=0.5)
    assert tone_strength(audio[: 3 * 48_000], 440) > 0.5  # the very start, not the live edge

    # A live listener's playlist stays the size of its window, however long the Space has run:
    # the same number of segments, give or take the one being closed (its byte size swings with
    # how many parts of the open segment are listed, so it is the segments that are counted).
    wait_until(
        lambda: len(httpx.get(dvr_url, timeout=10).text) > len(dvr.text),
        30,
        "the DVR to grow",
        interval=1,
    )
    assert abs(httpx.get(live_url, timeout=10).text.count("#EXTINF:") - live_segments) <= 1


DVR_SLACK_S = (
    12.0  # the DVR playlist is rebuilt at most every 10 s (cached), plus the segment in flight
)

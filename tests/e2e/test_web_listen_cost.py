"""What one listener costs: the listener page, playing live, asks for about one segment per
segment of audio it plays — no playlist reloads, no part requests — and hears the stage. The room
it shows (stage, speaking, reactions, count) comes in those segments, so the snapshot is read only
every 15 s for the rest, and everything the page asks for stays well under one request a second.

Counted against the media the page played (its currentTime), not the wall clock, so a slow
machine changes nothing: a page that reloaded the playlist and fetched every part, as hls.js
does, makes about six requests per 1.92 s segment and fails.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Request

from tests.conftest import Proc, Server
from tests.e2e.polling import poll_page
from tests.e2e.test_audio_path import on_stage
from tests.e2e.test_browser import CHROMIUM, new_person
from tests.e2e.test_web_reconnect import (
    DEADLINE_S,
    TONE_HZ,
    hearing_the_tone,
    listener_sample,
)
from townhall.config import MediaConfig

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed"),
]

MEDIA = MediaConfig()
SEGMENT_S = MEDIA.part_seconds * MEDIA.parts_per_segment  # 1.92 s
WINDOW_S = 12.0  # of played audio: six segments and a bit


def test_a_live_listener_asks_for_about_one_segment_per_segment_and_hears_the_stage(
    server: Server, speakers: Callable[..., Proc], browser: Browser
) -> None:
    space = server.create_space("What a listener costs")
    on_stage(speakers(*space.host_bot_args(), "--tone", str(TONE_HZ)))
    context, page, errors = new_person(browser, microphone=False)
    stream_requests: list[str] = []
    page_requests: list[str] = []  # everything: stream, snapshot, presence, …

    def on_request(request: Request) -> None:
        path = urlsplit(request.url).path
        page_requests.append(path)
        if path.startswith("/live/"):
            stream_requests.append(path)

    page.on("request", on_request)
    page.goto(space.listen_url)
    page.get_by_role("button", name="Play").click()
    poll_page(page, listener_sample, "the tone", hearing_the_tone(), DEADLINE_S)

    # Steady state: from now, over WINDOW_S of played audio.
    page.wait_for_function("() => window.townhall.roomStreamed", timeout=DEADLINE_S * 1000)
    start = listener_sample(page)["time"]
    before = len(stream_requests)
    before_all = len(page_requests)
    poll_page(
        page,
        listener_sample,
        f"{WINDOW_S:.0f} s more of the stream",
        lambda s: s["time"] >= start + WINDOW_S,
        DEADLINE_S + WINDOW_S,
    )
    window = stream_requests[before:]
    everything = page_requests[before_all:]
    played = listener_sample(page)["time"] - start
    print(f"\n{len(window)} stream requests over {played:.1f} s of audio: {window}")
    print(
        f"{len(everything)} page requests in all ({len(everything) / played:.2f}/s): {everything}"
    )
    segments = [p for p in window if p.endswith(".m4s")]
    assert len(window) <= played / SEGMENT_S + 2, window  # ~one request per segment
    assert len(window) <= played * 1.0, window  # the budget: at most one a second
    assert len(segments) >= played / SEGMENT_S - 2, "the page played audio it did not fetch?"
    assert sum(p.endswith(".m3u8") for p in window) <= 1, window  # no playlist reloads
    # The room comes in the stream: the snapshot only every 15 s (not every second), and the
    # whole page — stream, snapshot, presence beacon — well under one request a second.
    assert sum(p.endswith("/snapshot") for p in everything) <= played / 15 + 1, everything
    assert len(everything) <= played * 0.75, everything
    poll_page(page, listener_sample, "the tone, still", hearing_the_tone(), DEADLINE_S)
    assert errors == [], errors
    context.close()

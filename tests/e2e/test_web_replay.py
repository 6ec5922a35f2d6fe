"""The listener page plays a recorded Space's replay once it has ended: from the start, seekable.

A speaker bot sings 440 Hz on a recorded Space for a few seconds; the host ends it; the listener
link then serves a VOD (whole segments, no parts), which the page offers as "Play the replay" and
plays with hls.js out of low-latency mode.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import Proc, Server, wait_until
from tests.e2e.polling import poll_page
from tests.e2e.test_audio_path import on_stage
from tests.e2e.test_browser import CHROMIUM, FLAGS, new_person, screenshots
from tests.e2e.test_web_phone import offered, press

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed"),
]

TONE_HZ = 440.0
HEARD_DB = -50.0
RECORDED_S = 6.0  # on air at least this long before the end
DEADLINE_S = 30.0


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def ears(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(
        """(hz) => ({
            time: window.townhall.currentTime(),
            tone: window.townhall.levelAt(hz),
            state: window.townhall.state,
        })""",
        TONE_HZ,
    )
    return result


def until(page: Page, what: str, ok: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    return poll_page(page, ears, what, ok, DEADLINE_S)


def test_an_ended_recorded_space_replays_from_the_start_on_the_listener_page_and_seeks(
    server: Server, speakers: Callable[..., Proc], browser: Browser
) -> None:
    space = server.create_space("Recorded talk", record=True)  # on air at once
    on_stage(speakers(*space.host_bot_args(), "--tone", "440"))
    on_air = time.monotonic()
    media = f"{server.url}/live/{space.id}/media.m3u8"
    wait_until(
        lambda: (
            time.monotonic() - on_air > RECORDED_S
            and httpx.get(media, timeout=5).text.count("#EXTINF") >= 3
        ),
        30,
        "a few segments on air",
    )
    server.call("POST", f"/api/spaces/{space.id}/end", space.host_token)

    context, page, errors = new_person(browser, microphone=False)
    page.goto(f"{server.url}/s/{space.id}")
    expect(page.locator("#space-state")).to_have_text("Replay", timeout=45_000)
    expect(page.locator("#status")).to_have_text("This Space has ended. Listen to the replay.")
    play = page.get_by_role("button", name="Play the replay")
    expect(play).to_be_visible()
    expect(page.get_by_role("button", name="Jump to live")).to_be_hidden()
    seek = page.get_by_label("Position in the replay")
    expect(seek).to_be_visible()
    screenshots(page, "listen-replay")

    # It plays from the start, and playback advances with the speaker's tone in it.
    play.click()
    samples = until(page, "the replay starts", lambda s: s["time"] > 0)
    assert samples[-1]["time"] < 1.5, samples
    samples = until(
        page,
        "the replay advances with the tone",
        lambda s: s["time"] > 2.5 and s["tone"] is not None and s["tone"] > HEARD_DB,
    )
    expect(page.locator("#status")).to_have_text("Playing the replay")
    expect(page.get_by_role("button", name="Pause")).to_be_visible()
    duration = page.evaluate("() => window.townhall.replayDuration()")
    assert duration >= RECORDED_S - 1, duration
    expect(page.locator("#duration")).not_to_have_text("0:00")
    screenshots(page, "listen-replay-playing")

    # Seek back to 1 s with the slider (as a keyboard or a pointer leaves it: a change event).
    seek.evaluate("(el) => { el.value = '1'; el.dispatchEvent(new Event('change')); }")
    samples = until(page, "the seek lands", lambda s: 1.0 <= s["time"] < 2.0)
    # ...and playback goes on from there.
    until(page, "playback goes on after the seek", lambda s: s["time"] >= 2.2)
    # The lock screen shows the replay's length and scrubs in it (Media Session).
    lock = offered(page)
    assert lock["actions"] == ["pause", "play", "seekbackward", "seekforward", "seekto", "stop"]
    assert lock["position"]["duration"] == pytest.approx(duration, abs=0.5)
    press(page, "seekto", seekTime=0.5)
    until(page, "the lock screen's seek lands", lambda s: 0.5 <= s["time"] < 1.5)
    # The keyboard moves the slider too: End goes to the end, and the replay ends there.
    seek.focus()
    page.keyboard.press("End")
    expect(page.locator("#status")).to_have_text("End of the replay.", timeout=20_000)
    expect(page.get_by_role("button", name="Play the replay")).to_be_visible()

    assert errors == [], errors
    context.close()

"""The listener page rewinds a live recorded Space (DVR), jumps back to live, and clips it.

A speaker bot sings 440 Hz on a recorded Space that stays live. A listener plays it live, presses
"From the start" (the page loads `dvr.m3u8`, everything recorded so far, as a VOD out of
low-latency mode) and hears the Space from its first seconds while it goes on; "Jump to live"
returns to the live playlist. "Clip the last 30 s" (after a guest name) gives a `/c/{id}` link, and
that page plays the clip.
"""

from __future__ import annotations

import re
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

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed"),
]

TONE_HZ = 440.0
HEARD_DB = -50.0
RECORDED_S = 8.0  # on air at least this long before the listener rewinds
LIVE_LATENCY_S = 3.0
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
            latency: window.townhall.latency(),
            tone: window.townhall.levelAt(hz),
            state: window.townhall.state,
            rewound: window.townhall.rewound,
            recorded: window.townhall.rewindDuration(),
        })""",
        TONE_HZ,
    )
    return result


def until(page: Page, what: str, ok: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    return poll_page(page, ears, what, ok, DEADLINE_S)


def test_a_listener_rewinds_a_live_space_jumps_back_to_live_and_shares_a_clip(
    server: Server, speakers: Callable[..., Proc], browser: Browser
) -> None:
    space = server.create_space("Rewind me", record=True)  # on air at once
    on_stage(speakers(*space.host_bot_args(), "--tone", "440"))
    on_air = time.monotonic()
    dvr = f"{server.url}/live/{space.id}/dvr.m3u8"

    def recorded() -> float:
        response = httpx.get(dvr, timeout=5)
        if response.status_code != 200:
            return 0.0
        return sum(float(d) for d in re.findall(r"#EXTINF:([\d.]+),", response.text))

    wait_until(
        lambda: time.monotonic() - on_air > RECORDED_S and recorded() >= RECORDED_S - 2,
        45,
        "a few seconds recorded",
        interval=0.5,
    )

    context, page, errors = new_person(browser, microphone=False)
    page.goto(f"{server.url}/s/{space.id}")
    expect(page.locator("#space-state")).to_have_text("Live", timeout=20_000)
    from_start = page.get_by_role("button", name="From the start")
    expect(from_start).to_be_visible(timeout=20_000)
    expect(page.get_by_role("button", name="Back 1 min")).to_be_visible()
    clip = page.get_by_role("button", name="Clip the last 30 s")
    expect(clip).to_be_visible()

    # Live first: playing near the live edge.
    page.get_by_role("button", name="Play").click()
    until(
        page,
        "live playback",
        lambda s: s["state"] == "playing" and s["latency"] is not None and s["time"] > 1,
    )

    # From the start: the recording from its first seconds, advancing, while the Space goes on.
    from_start.click()
    samples = until(page, "the rewind starts", lambda s: s["rewound"] and s["time"] > 0)
    assert samples[-1]["time"] < 2.0, samples
    start = samples[-1]["time"]
    samples = until(
        page,
        "the rewind advances with the tone",
        lambda s: s["time"] > start + 1.5 and s["tone"] is not None and s["tone"] > HEARD_DB,
    )
    assert samples[-1]["time"] < 6.0, samples  # near the start, not the live edge
    assert samples[-1]["recorded"] >= RECORDED_S - 2, samples
    expect(page.locator("#status")).to_have_text("Rewound")
    assert ears(page)["state"] == "rewound"
    jump = page.get_by_role("button", name="Jump to live")
    expect(jump).to_be_enabled()
    screenshots(page, "listen-rewound")

    # Jump to live: back on the live playlist, a couple of seconds behind the live edge.
    jump.click()
    until(
        page,
        "back to live",
        lambda s: (
            not s["rewound"]
            and s["state"] == "playing"
            and s["latency"] is not None
            and s["latency"] < LIVE_LATENCY_S
        ),
    )
    expect(page.locator("#status")).to_have_text("Playing live")

    # Clip the last 30 s: a guest name first, then a link to the clip's page.
    clip.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Your name").fill("Clipper")
    dialog.get_by_role("button", name="Continue as guest").click()
    link = page.get_by_label("Link to your clip")
    expect(link).to_have_value(re.compile(rf"/c/{space.id}-[a-z0-9]{{12}}$"), timeout=30_000)
    expect(page.locator("#clip-status")).to_contain_text("ready")
    screenshots(page, "listen-clip")
    clip_url = link.input_value()
    assert errors == [], errors

    # The clip's page plays it.
    clip_page = context.new_page()
    clip_errors: list[str] = []
    clip_page.on("console", lambda m: clip_errors.append(m.text) if m.type == "error" else None)
    clip_page.on("pageerror", lambda exc: clip_errors.append(str(exc)))
    clip_page.goto(clip_url)
    # It names the Space and who was on stage (see tests/web/test_clip_page.py for the previews).
    expect(clip_page.get_by_role("heading", name="Rewind me")).to_be_visible()
    expect(clip_page.locator("#clip-speakers")).to_have_text("On stage: Host")
    expect(clip_page.get_by_role("link", name="Listen to the Space")).to_have_attribute(
        "href", f"/s/{space.id}"
    )
    expect(clip_page.get_by_role("link", name="Download (.m4a)")).to_have_attribute(
        "href", re.compile(r"^/api/clips/.+\.m4a$")
    )
    clip_page.locator("#clip-audio").evaluate("(audio) => audio.play()")
    deadline = time.monotonic() + DEADLINE_S
    played = 0.0
    while time.monotonic() < deadline and played < 1.0:
        played = clip_page.evaluate("() => window.townhall.currentTime()")
        clip_page.wait_for_timeout(200)  # the poll interval; the deadline bounds the wait
    assert played >= 1.0, played
    screenshots(clip_page, "clip-page")
    assert clip_errors == [], clip_errors

    # A malformed clip link is a 404 page.
    assert httpx.get(f"{server.url}/c/not-a-clip", timeout=5).status_code == 404
    assert httpx.get(f"{server.url}/c/{space.id}-short", timeout=5).status_code == 404

    # Clipping too often: a polite message with the wait (the limit allows a small burst).
    status = page.locator("#clip-status")
    polite = re.compile(r"Please wait \d+ s before making another one")
    for _ in range(4):
        expect(clip).to_be_enabled(timeout=30_000)
        clip.click()
        expect(status).to_contain_text(re.compile(r"ready|Please wait"), timeout=30_000)
        if polite.search(status.inner_text()):
            break
        expect(clip).to_be_enabled(timeout=30_000)
    expect(status).to_contain_text(polite)
    # The browser logs the refused request itself (a 429 response): nothing else went wrong.
    assert [e for e in errors if "429" not in e] == [], errors
    context.close()


def test_a_rewind_that_reaches_the_recorded_end_goes_back_to_live(
    server: Server, speakers: Callable[..., Proc], browser: Browser
) -> None:
    space = server.create_space("Short rewind", record=True)
    on_stage(speakers(*space.host_bot_args(), "--tone", "440"))
    dvr = f"{server.url}/live/{space.id}/dvr.m3u8"
    wait_until(lambda: httpx.get(dvr, timeout=5).status_code == 200, 45, "a DVR", interval=0.5)

    context, page, errors = new_person(browser, microphone=False)
    page.goto(f"{server.url}/s/{space.id}")
    back = page.get_by_role("button", name="Back 1 min")
    expect(back).to_be_visible(timeout=20_000)
    # Less than a minute recorded: "Back 1 min" starts at the beginning...
    back.click()
    samples = until(page, "the rewind starts", lambda s: s["rewound"] and s["time"] > 0)
    assert samples[-1]["time"] < 2.0, samples
    expect(page.locator("#status")).to_have_text("Rewound")
    # ...and at the end of what the playlist holds, the page goes live by itself.
    recorded = samples[-1]["recorded"]
    deadline = time.monotonic() + recorded + DEADLINE_S
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = ears(page)
        if not state["rewound"] and state["state"] == "playing":
            break
        page.wait_for_timeout(250)  # the poll interval; the deadline bounds the wait
    assert not state["rewound"], state
    assert state["state"] == "playing", state
    until(
        page, "live latency", lambda s: s["latency"] is not None and s["latency"] < LIVE_LATENCY_S
    )
    assert errors == [], errors
    context.close()

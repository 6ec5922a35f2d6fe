"""A phone is a first-class listener: lock-screen controls (Media Session), a page that comes back
by itself from the background, and a manifest so the site can be added to the home screen.

Chromium can set Media Session handlers but a script cannot press them: the test calls the
handlers the page registered (media_session.js keeps them by action). A phone's backgrounding is
played with the events a phone sends: `pagehide`/`pageshow` of the back-forward cache (the page
releases its player) and `visibilitychange` after the system paused the audio.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import Proc, Server
from tests.e2e.polling import poll_page
from tests.e2e.test_audio_path import on_stage
from tests.e2e.test_browser import CHROMIUM, new_person
from tests.e2e.test_web_reconnect import (
    DEADLINE_S,
    TONE_HZ,
    hearing_the_tone,
    listener_sample,
    network_error,
)
from townhall.harness import wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed"),
]

SESSION = """() => {
    const m = navigator.mediaSession.metadata;
    return m && { title: m.title, artist: m.artist, artwork: m.artwork.map((a) => a.src),
                  playbackState: navigator.mediaSession.playbackState };
}"""
PRESS = """async ([action, details]) => {
    const { actionHandlers } = await import('/static/media_session.js');
    actionHandlers.get(action)({ action, ...details });
}"""
OFFERED = """async () => {
    const m = await import('/static/media_session.js');
    return { actions: [...m.actionHandlers.keys()].sort(), position: m.positionState };
}"""


def recorded(dvr_url: str) -> float:
    """Seconds of the Space recorded so far (what a rewind can go back into)."""
    response = httpx.get(dvr_url, timeout=5)
    if response.status_code != 200:
        return 0.0
    return sum(float(d) for d in re.findall(r"#EXTINF:([\d.]+),", response.text))


def press(page: Page, action: str, **details: float) -> None:
    """What a lock-screen or headset button does: the page's handler for `action`."""
    page.evaluate(PRESS, [action, details])


def offered(page: Page) -> dict[str, Any]:
    """The lock screen's buttons (actions with a handler) and the position it shows."""
    result: dict[str, Any] = page.evaluate(OFFERED)
    return result


def test_a_phone_plays_a_live_space_from_its_lock_screen_and_comes_back_from_the_background(
    server: Server, speakers: Callable[..., Proc], browser: Browser
) -> None:
    space = server.create_space("Town meeting", record=True)
    on_stage(speakers(*space.host_bot_args(), "--tone", str(TONE_HZ)))
    context, page, errors = new_person(browser, microphone=False)
    page.goto(space.listen_url)
    page.get_by_role("button", name="Play").click()
    poll_page(page, listener_sample, "the tone", hearing_the_tone(), DEADLINE_S)

    # What the lock screen shows: the Space, its host, the app's icon; live has no duration.
    page.wait_for_function("() => navigator.mediaSession.metadata?.artist === 'Host'")
    session = page.evaluate(SESSION)
    assert session["title"] == "Town meeting"
    assert session["playbackState"] == "playing"
    assert [src.rsplit("/", 1)[1] for src in session["artwork"]] == [
        "icon-96.png",
        "icon-192.png",
        "icon-512.png",
    ]
    lock = offered(page)
    # A recorded live Space can go back (into its recording) and to live; not forward.
    assert lock["actions"] == ["nexttrack", "pause", "play", "seekbackward", "stop"]
    assert lock["position"]["duration"] == float("inf")

    press(page, "pause")
    expect(page.locator("#status")).to_have_text("Paused")
    page.wait_for_function("() => navigator.mediaSession.playbackState === 'paused'")
    press(page, "play")
    expect(page.locator("#status")).to_have_text("Playing live")
    poll_page(page, listener_sample, "the tone after play", hearing_the_tone(), DEADLINE_S)

    # ⏪ on the lock screen, live: back into the recording; then forward and scrubbing are
    # offered, with the recording's length as the duration; ⏭ goes back to live.
    dvr = f"{server.url}/live/{space.id}/dvr.m3u8"
    wait_until(lambda: recorded(dvr) > 0, DEADLINE_S, "something recorded", interval=0.5)
    press(page, "seekbackward")
    page.wait_for_function(
        "() => window.townhall.rewound && window.townhall.currentTime() > 0",
        timeout=DEADLINE_S * 1000,
    )
    page.wait_for_function(
        """async () => {
            const m = await import('/static/media_session.js');
            return m.actionHandlers.has('seekforward') && m.actionHandlers.has('seekto')
                && m.positionState.duration > 0 && Number.isFinite(m.positionState.duration);
        }""",
        timeout=DEADLINE_S * 1000,
    )
    press(page, "nexttrack")
    expect(page.locator("#status")).to_have_text("Playing live", timeout=DEADLINE_S * 1000)
    assert page.evaluate("() => window.townhall.rewound") is False

    # The phone keeps the page in its back-forward cache and brings it back: the page had
    # released its player on the way out, and starts a new one at the live edge on its own.
    page.evaluate(
        """() => {
            window.sameDocument = true;
            window.dispatchEvent(new PageTransitionEvent('pagehide', { persisted: true }));
        }"""
    )
    page.wait_for_function("() => document.getElementById('player').paused")
    page.evaluate(
        "() => window.dispatchEvent(new PageTransitionEvent('pageshow', { persisted: true }))"
    )
    samples = poll_page(
        page, listener_sample, "the tone after the pageshow", hearing_the_tone(), DEADLINE_S
    )
    assert samples[-1]["sameDocument"], "the page was reloaded"

    # The system paused the audio of the hidden page (a call, say); back in front, it plays again.
    page.evaluate(
        """() => {
            document.getElementById('player').pause();
            document.dispatchEvent(new Event('visibilitychange'));
        }"""
    )
    poll_page(page, listener_sample, "the tone after coming back", hearing_the_tone(), DEADLINE_S)
    expect(page.locator("#status")).to_have_text("Playing live")
    assert [e for e in errors if not network_error(e)] == [], errors
    context.close()


def png_size(body: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (the file must be a PNG)."""
    assert body[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", body[16:24])
    return width, height


def test_the_site_can_be_added_to_a_home_screen(server: Server, browser: Browser) -> None:
    context, page, errors = new_person(browser, microphone=False)
    space = server.create_space("Home screen", live=False)
    page.goto(space.listen_url)
    href = page.locator("link[rel=manifest]").get_attribute("href")
    assert href == "/manifest.webmanifest"
    response = httpx.get(f"{server.url}{href}", timeout=15)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/manifest+json")
    manifest = response.json()
    assert manifest["display"] == "standalone"
    assert manifest["start_url"] == "/"
    assert manifest["name"] == manifest["short_name"] == "townhall"
    assert manifest["theme_color"] == "#5b3cc4"
    pngs = [icon for icon in manifest["icons"] if icon["type"] == "image/png"]
    assert {icon["sizes"] for icon in pngs} >= {"192x192", "512x512"}  # what installing needs
    for icon in pngs:
        body = httpx.get(f"{server.url}{icon['src']}", timeout=15)
        assert body.headers["content-type"] == "image/png"
        assert "x".join(map(str, png_size(body.content))) == icon["sizes"]
    # Under the page's own Content-Security-Policy, the manifest and its icons load.
    loaded = page.evaluate(
        """async (href) => {
            const manifest = await (await fetch(href)).json();
            return Promise.all(manifest.icons.map((icon) => new Promise((resolve) => {
                const image = new Image();
                image.onload = () => resolve(image.naturalWidth > 0);
                image.onerror = () => resolve(false);
                image.src = icon.src;
            })));
        }""",
        href,
    )
    assert loaded == [True] * len(manifest["icons"]), loaded
    # And Chromium itself, which fetches it under the page's policy (manifest-src), parses it
    # without a complaint.
    parsed = context.new_cdp_session(page).send("Page.getAppManifest")
    assert parsed["url"].endswith("/manifest.webmanifest"), parsed
    assert parsed["errors"] == [], parsed["errors"]
    assert json.loads(parsed["data"]) == manifest
    assert errors == [], errors
    context.close()

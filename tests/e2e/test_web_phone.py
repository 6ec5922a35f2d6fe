"""A phone is a first-class listener, in real Chromium: the lock screen and headset see the
Space's title and host and whether it plays (Media Session), and the site can be added to the
home screen (a web app manifest with its icons)."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Browser, expect

from tests.conftest import Server
from tests.e2e.test_browser import CHROMIUM, PHONE, collect_errors

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed"),
]


def test_the_lock_screen_shows_the_space_and_its_host_and_follows_play_and_pause(
    server: Server, browser: Browser
) -> None:
    space = server.create_space("Morning show", live=True)
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    errors = collect_errors(page)
    page.goto(space.listen_url)
    expect(page.locator("#space-title")).to_have_text("Morning show")
    metadata = page.evaluate(
        "() => { const m = navigator.mediaSession.metadata;"
        " return m && {title: m.title, artist: m.artist, album: m.album,"
        " artwork: m.artwork.map((a) => a.src)}; }"
    )
    assert metadata["title"] == "Morning show"
    assert metadata["artist"] == "Host"  # the host's display name (harness: "Host")
    assert metadata["album"] == "townhall · live"
    assert all(src.endswith(".png") for src in metadata["artwork"])

    page.get_by_role("button", name="Play").click()
    page.wait_for_function("() => navigator.mediaSession.playbackState === 'playing'")
    page.get_by_role("button", name="Pause").click()
    page.wait_for_function("() => navigator.mediaSession.playbackState === 'paused'")
    assert errors == []
    context.close()


def test_the_site_can_be_added_to_a_home_screen(server: Server, browser: Browser) -> None:
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.goto(f"{server.url}/")
    href = page.locator('link[rel="manifest"]').get_attribute("href")
    assert href == "/static/manifest.webmanifest"
    answer = page.request.get(f"{server.url}{href}")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("application/manifest+json")
    manifest = json.loads(answer.text())
    assert (manifest["name"], manifest["start_url"], manifest["display"]) == (
        "townhall",
        "/",
        "standalone",
    )
    sizes = set()
    for icon in manifest["icons"]:
        image = page.request.get(f"{server.url}{icon['src']}")
        assert image.status == 200
        assert image.headers["content-type"] == "image/png"
        assert image.body()[:8] == b"\x89PNG\r\n\x1a\n"
        sizes.add(icon["sizes"])
    assert {"192x192", "512x512"} <= sizes  # what Chrome asks of an installable app
    context.close()

"""Headless Chromium on the stage and in the audience: the pages, end to end.

The host's page publishes a 440 Hz tone (Chromium's fake microphone plays a WAV we write) over
WebRTC; a listener's page plays the LL-HLS program mix with hls.js and analyses what it hears with
Web Audio. Screenshots of both pages at desktop and phone width go to test-artifacts/.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    ViewportSize,
    expect,
    sync_playwright,
)

from tests.audio_analysis import tone_wav
from tests.conftest import ARTIFACTS, Server

CHROMIUM = Path("/usr/lib/chromium/chromium")  # Debian's build; the /usr/bin wrapper prints noise

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed"),
]

# Playwright adds --headless and a fresh profile directory itself.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]

DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}

TONE_HZ = 440.0
TONE_TOLERANCE_HZ = 15.0
PLAYBACK_NEEDED_S = 3.0
HEARING_DEADLINE_S = 30.0


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    # 20 s of 440 Hz is a whole number of cycles, so Chromium's looping of the file is seamless.
    tone = tone_wav(tmp_path / "tone-440.wav", TONE_HZ, 20.0, amplitude=0.5)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[*FLAGS, f"--use-file-for-fake-audio-capture={tone}"],
        )
        try:
            yield chromium
        finally:
            chromium.close()


def collect_errors(page: Page) -> list[str]:
    """Console errors and uncaught exceptions of a page, as they happen."""
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"console: {message.text} at {message.location}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    return errors


def screenshots(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def listen_until_the_tone_is_heard(page: Page) -> list[dict[str, Any]]:
    """Poll the listener page until playback advanced PLAYBACK_NEEDED_S while the tone is dominant."""
    deadline = time.monotonic() + HEARING_DEADLINE_S
    samples: list[dict[str, Any]] = []
    started_at: float | None = None
    while time.monotonic() < deadline:
        sample: dict[str, Any] = page.evaluate(
            """() => ({
                time: window.townhall.currentTime(),
                frequency: window.townhall.dominantFrequency(),
                latency: window.townhall.latency(),
                state: window.townhall.state,
            })"""
        )
        samples.append(sample)
        if started_at is None and sample["time"] > 0:
            started_at = sample["time"]
        played = sample["time"] - started_at if started_at is not None else 0.0
        frequency = sample["frequency"]
        if (
            played >= PLAYBACK_NEEDED_S
            and frequency is not None
            and abs(frequency - TONE_HZ) <= TONE_TOLERANCE_HZ
        ):
            return samples
        page.wait_for_timeout(250)  # the poll interval; the deadline above bounds the wait
    raise AssertionError(
        f"the listener did not hear {TONE_HZ} Hz in time; last samples: {samples[-8:]}"
    )


def test_a_listener_page_hears_the_host_talking_from_the_stage_page(
    server: Server, browser: Browser
) -> None:
    created = server.create_space("Browser tone check")
    space = created["space"]
    assert isinstance(space, dict)
    space_id, token = str(space["id"]), str(created["host_token"])

    # The host: raw capture (no echo cancellation, noise suppression or AGC) keeps the tone a tone.
    stage_context = browser.new_context(permissions=["microphone"], viewport=DESKTOP)
    stage = stage_context.new_page()
    stage_errors = collect_errors(stage)
    stage.goto(f"{server.url}/s/{space_id}/stage?raw=1#token={token}")
    expect(stage.get_by_role("heading", level=1)).to_have_text("Browser tone check")
    expect(stage.get_by_role("heading", name="Host tools")).to_be_visible()
    stage.get_by_role("button", name="Start talking").click()
    stage.wait_for_function("() => window.townhall.state === 'connected'", timeout=20_000)
    expect(stage.get_by_role("status").first).to_contain_text("Connected")

    # A listener, in a context of its own (no microphone permission: listening needs none).
    listen_context = browser.new_context(viewport=DESKTOP)
    listener = listen_context.new_page()
    listener_errors = collect_errors(listener)
    listener.goto(f"{server.url}/s/{space_id}")
    expect(listener.get_by_role("heading", level=1)).to_have_text("Browser tone check")
    play = listener.get_by_role("button", name="Play")
    expect(play).to_be_enabled()
    play.click()

    samples = listen_until_the_tone_is_heard(listener)
    expect(listener.locator("#status")).to_have_text("Playing live")
    expect(listener.locator("#latency")).to_contain_text("behind live")
    latencies = [s["latency"] for s in samples if s["latency"] is not None]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "browser-listener-samples.json").write_text(json.dumps(samples, indent=1))

    screenshots(stage, "stage")
    screenshots(listener, "listen")

    stage.get_by_role("button", name="Leave stage").click()
    stage.wait_for_function("() => window.townhall.state === 'idle'", timeout=10_000)

    assert latencies, "the listener page never reported its latency"
    assert stage_errors == [], stage_errors
    assert listener_errors == [], listener_errors
    listen_context.close()
    stage_context.close()


def test_starting_a_space_from_the_home_page_opens_its_stage_as_host(
    server: Server, browser: Browser
) -> None:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    errors = collect_errors(page)
    page.goto(f"{server.url}/")
    page.get_by_role("button", name="Start a Space").click()
    expect(page.get_by_role("alert")).to_have_text("Give your Space a title.")

    page.get_by_label("Title").fill("Morning news")
    page.get_by_role("button", name="Start a Space").click()
    page.wait_for_url("**/stage#token=*")
    expect(page.get_by_role("heading", level=1)).to_have_text("Morning news")
    expect(page.locator("#role")).to_have_text("Host")
    screenshots(page, "home-then-stage")
    page.goto(f"{server.url}/")
    screenshots(page, "home")

    assert errors == [], errors
    context.close()


def test_the_host_invites_a_speaker_then_ends_the_space_and_the_listener_hears_the_end(
    server: Server, browser: Browser
) -> None:
    created = server.create_space("Short one")
    space = created["space"]
    assert isinstance(space, dict)
    space_id, token = str(space["id"]), str(created["host_token"])

    context = browser.new_context(viewport=DESKTOP)
    stage = context.new_page()
    listener = context.new_page()
    stage_errors, listener_errors = collect_errors(stage), collect_errors(listener)
    listener.goto(f"{server.url}/s/{space_id}")
    listener.get_by_role("button", name="Play").click()
    listener.wait_for_function("() => window.townhall.state === 'playing'", timeout=20_000)

    stage.goto(f"{server.url}/s/{space_id}/stage#token={token}")
    stage.get_by_role("button", name="Invite a speaker").click()
    invite = stage.get_by_label("Speaker invite link")
    expect(invite).to_have_value(
        re.compile(rf"^{re.escape(server.url)}/s/{space_id}/stage#token=[\w.-]+$")
    )
    screenshots(stage, "stage-invite")

    stage.get_by_role("button", name="End Space").click()
    stage.get_by_role("button", name="Yes, end the Space").click()
    expect(stage.locator("#connection")).to_have_text("This Space has ended")
    expect(stage.locator("#space-state")).to_have_text("Ended")
    expect(stage.get_by_role("button", name="Start talking")).to_be_hidden()

    # The playlist ends (EXT-X-ENDLIST): the listener page plays out what it has and says so.
    listener.wait_for_function("() => window.townhall.state === 'ended'", timeout=20_000)
    expect(listener.locator("#status")).to_have_text("This Space has ended.")
    expect(listener.get_by_role("button", name="Play")).to_be_hidden()
    screenshots(listener, "listen-ended")

    assert stage_errors == [], stage_errors
    assert listener_errors == [], listener_errors
    context.close()

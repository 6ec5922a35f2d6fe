"""Headless Chromium on the stage and in the audience: the pages, end to end.

The host's page publishes a 440 Hz tone (Chromium's fake microphone plays a WAV we write) over
WebRTC; a listener's page plays the LL-HLS program mix with hls.js and analyses what it hears with
Web Audio. Screenshots of both pages at desktop and phone width go to test-artifacts/.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.audio_analysis import tone_wav
from tests.conftest import ARTIFACTS, Server

playwright_api = pytest.importorskip("playwright.sync_api")
Browser = playwright_api.Browser
Page = playwright_api.Page
expect = playwright_api.expect

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

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

TONE_HZ = 440.0
TONE_TOLERANCE_HZ = 15.0
PLAYBACK_NEEDED_S = 3.0
HEARING_DEADLINE_S = 30.0


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    # 20 s of 440 Hz is a whole number of cycles, so Chromium's looping of the file is seamless.
    tone = tone_wav(tmp_path / "tone-440.wav", TONE_HZ, 20.0, amplitude=0.5)
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[*FLAGS, f"--use-file-for-fake-audio-capture={tone}"],
        )
        try:
            yield chromium
        finally:
            chromium.close()


def collect_errors(page: Any) -> list[str]:
    """Console errors and uncaught exceptions of a page, as they happen."""
    errors: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error":
            errors.append(f"console: {message.text} at {message.location}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    return errors


def screenshots(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(viewport)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def listen_until_the_tone_is_heard(page: Any) -> list[dict[str, Any]]:
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
    raise AssertionError(f"the listener did not hear {TONE_HZ} Hz in time; last samples: {samples[-8:]}")


def test_a_listener_page_hears_the_host_talking_from_the_stage_page(
    server: Server, browser: Any
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

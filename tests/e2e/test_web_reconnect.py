"""The pages recover by themselves when their server crashes and comes back (kill -9, restart on
the same port and data directory): no reload, no click.

Headless Chromium with ears: the listener page analyses what it plays (`levelAt(hz)`); the stage
page's microphone is Chromium's fake one playing a 440 Hz WAV, heard by ffmpeg as a listener.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.audio_analysis import decode_mono, tone_strength
from tests.conftest import Proc, Server
from tests.e2e.conftest import FAKE_MIC_HZ
from tests.e2e.polling import Sample, poll_page
from tests.e2e.test_audio_path import listen_with_ffmpeg, on_stage
from tests.e2e.test_browser import CHROMIUM, create_space, new_person, sign_up

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed"),
]

TONE_HZ = FAKE_MIC_HZ  # what the shared `browser` fixture's microphone plays
HEARD_DB = -50.0  # the tone's FFT bin at least this loud (dBFS) is heard (it plays near -16)
GONE_DB = -60.0
DEADLINE_S = 40.0  # generous for a busy machine; the measured times are printed
# Played this far before the crash, the old stream numbered ~12 segments: a player that waits for
# the restarted stream's numbers to pass those (today's server starts again at 1) needs > 20 s.
PLAYED_BEFORE_CRASH_S = 20.0
BACK_AFTER_RESTART_S = 15.0  # the page itself retries within ~3 s; the bot needs ~1–2 s more


def network_error(message: str) -> bool:
    """What Chromium logs by itself for requests that failed while the server was down."""
    return "Failed to load resource" in message or (
        "WebSocket connection to" in message and "failed" in message
    )


def listener_sample(page: Page) -> Sample:
    result: Sample = page.evaluate(
        """(hz) => ({
            time: window.townhall.currentTime(),
            state: window.townhall.state,
            tone: window.townhall.levelAt(hz),
            sameDocument: window.sameDocument === true,
        })""",
        TONE_HZ,
    )
    return result


def hearing_the_tone() -> Callable[[Sample], bool]:
    """True once playback advanced while the tone was loud, twice in a row (not a stale buffer)."""
    seen: dict[str, Any] = {"time": None, "streak": 0}

    def ok(sample: Sample) -> bool:
        advancing = seen["time"] is not None and sample["time"] > seen["time"]
        seen["time"] = sample["time"]
        loud = sample["tone"] is not None and sample["tone"] > HEARD_DB
        seen["streak"] = seen["streak"] + 1 if advancing and loud else 0
        return bool(seen["streak"] >= 2)

    return ok


def test_a_listener_page_hears_the_stage_again_after_its_server_restarts_without_a_reload(
    server: Server, speakers: Callable[..., Proc], browser: Browser
) -> None:
    space = server.create_space("Crash and return")
    bot = speakers(*space.host_bot_args(), "--tone", str(TONE_HZ))
    on_stage(bot)
    context, page, errors = new_person(browser, microphone=False)
    page.goto(space.listen_url)
    page.get_by_role("button", name="Play").click()
    poll_page(page, listener_sample, "the tone before the crash", hearing_the_tone(), DEADLINE_S)
    poll_page(
        page,
        listener_sample,
        f"{PLAYED_BEFORE_CRASH_S:.0f} s of the stream",
        lambda s: s["time"] >= PLAYED_BEFORE_CRASH_S,
        DEADLINE_S,
    )
    page.evaluate("() => { window.sameDocument = true; }")  # gone if the page reloaded

    server.proc.kill()
    killed_at = time.monotonic()
    poll_page(
        page,
        listener_sample,
        "the page to notice the stream stopped",
        lambda s: s["state"] != "playing" or (s["tone"] is not None and s["tone"] < GONE_DB),
        DEADLINE_S,
    )
    server.restart()
    restarted_at = time.monotonic()
    samples = poll_page(
        page, listener_sample, "the tone after the restart", hearing_the_tone(), DEADLINE_S
    )
    heard_at = time.monotonic()
    print(
        f"listener: tone again {heard_at - restarted_at:.1f} s after the restart"
        f" ({heard_at - killed_at:.1f} s after the kill)"
    )
    assert samples[-1]["sameDocument"], "the page was reloaded"
    assert heard_at - restarted_at < BACK_AFTER_RESTART_S, "the page took too long to recover"
    expect(page.locator("#status")).to_have_text("Playing live")
    # Requests that failed while the server was down are console errors; nothing else may be.
    assert [e for e in errors if not network_error(e)] == [], errors
    context.close()


def stage_state(page: Page) -> Sample:
    result: Sample = page.evaluate("() => ({ state: window.townhall.state })")
    return result


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_a_host_page_says_it_lost_the_stage_and_reconnects_its_microphone_by_itself(
    server: Server, browser: Browser, tmp_path: Path, how: str
) -> None:
    """A crash (kill -9) or a plain restart (SIGTERM, a clean drain): either way the page must
    stop saying "Connected" and come back by itself."""
    context, host, errors = new_person(browser, microphone=True)
    sign_up(host, server, "Hana")
    space_id = create_space(host, server, "Crash and return")
    host.goto(f"{server.url}/s/{space_id}/stage?raw=1")
    host.get_by_role("button", name="Start talking").click()
    host.wait_for_function("() => window.townhall.state === 'connected'", timeout=20_000)
    host.get_by_role("button", name="Go live").click()
    expect(host.locator("#air")).to_contain_text("ON AIR")
    playlist = f"{server.url}/live/{space_id}/index.m3u8"

    server.proc.kill() if how == "kill" else server.proc.stop()
    killed_at = time.monotonic()
    poll_page(
        host,
        stage_state,
        "the stage page to say it is not connected",
        lambda s: s["state"] != "connected",
        DEADLINE_S,
    )
    noticed_at = time.monotonic()
    expect(host.locator("#connection")).not_to_contain_text("Connected")
    server.restart()
    restarted_at = time.monotonic()
    poll_page(
        host,
        stage_state,
        "the stage page to reconnect by itself",
        lambda s: s["state"] == "connected",
        DEADLINE_S,
    )
    back_at = time.monotonic()
    print(
        f"stage ({how}): noticed {noticed_at - killed_at:.1f} s after the {how},"
        f" connected {back_at - restarted_at:.1f} s after the restart"
    )
    expect(host.locator("#connection")).to_contain_text("Connected")

    audio = decode_mono(listen_with_ffmpeg(playlist, tmp_path / "after.wav", 3))
    assert tone_strength(audio, TONE_HZ) > 0.5, "the host's tone is not heard after the restart"
    assert [e for e in errors if not network_error(e)] == [], errors
    context.close()

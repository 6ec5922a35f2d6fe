"""A whole event in headless Chromium, every person in their own browser context, with ears.

Chromium's fake microphone plays one WAV per browser *launch*, so each tone needs a browser of its
own: Sam's browser sings 440 Hz, Ada's 660 Hz; the host and the listeners share a third one and do
not talk. Every page is judged on what it shows and on what it hears: the listeners' page analyses
the LL-HLS program with Web Audio (`levelAt(hz)`), a stage page analyses the mix-minus the server
returns to it (`returnedLevelAt(hz)`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.audio_analysis import tone_wav
from tests.conftest import ARTIFACTS, Server
from tests.e2e.test_browser import (
    CHROMIUM,
    FLAGS,
    hears_silence_while_playing,
    new_person,
    pick_guest_name,
    screenshots,
    sign_up,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed"),
]

SAM_HZ = 440.0
ADA_HZ = 660.0
HEARD_DB = -50.0  # a tone's FFT bin at least this loud (dBFS) is heard (the tones play at -6 dBFS)
GONE_DB = -60.0  # ... and at most this loud is gone (codec noise of the others sits near -77)
AUDIO_DEADLINE_S = 30.0
CONNECT_TIMEOUT_MS = 20_000


@pytest.fixture
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


def launch(playwright: Playwright, tone: Path | None) -> Browser:
    capture = [f"--use-file-for-fake-audio-capture={tone}"] if tone else []
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*FLAGS, *capture])


@pytest.fixture
def browsers(playwright: Playwright, tmp_path: Path) -> Iterator[dict[str, Browser]]:
    """Three Chromiums: one fake microphone at 440 Hz, one at 660 Hz, one for the silent people."""
    # 20 s of either tone is a whole number of cycles: Chromium's looping of the file is seamless.
    launched: dict[str, Browser] = {}
    try:
        launched["440"] = launch(playwright, tone_wav(tmp_path / "440.wav", SAM_HZ, 20.0, 0.5))
        launched["660"] = launch(playwright, tone_wav(tmp_path / "660.wav", ADA_HZ, 20.0, 0.5))
        launched["quiet"] = launch(playwright, None)
        yield launched
    finally:
        for browser in launched.values():
            browser.close()


def poll(
    what: str, probe: Callable[[], dict[str, Any]], ok: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Sample `probe` until `ok` holds for two samples in a row, or fail after the deadline."""
    deadline = time.monotonic() + AUDIO_DEADLINE_S
    samples: list[dict[str, Any]] = []
    streak = 0
    while time.monotonic() < deadline:
        now = probe()
        samples.append(now)
        streak = streak + 1 if ok(now) else 0
        if streak >= 2:
            return samples
        time.sleep(0.25)  # the poll interval; the deadline above bounds the wait
    raise AssertionError(f"{what}: not within {AUDIO_DEADLINE_S} s; last samples {samples[-6:]}")


def listener_ears(page: Page) -> Callable[[], dict[str, Any]]:
    def probe() -> dict[str, Any]:
        result: dict[str, Any] = page.evaluate(
            """([a, b]) => ({
                time: window.townhall.currentTime(),
                level: window.townhall.level(),
                [a]: window.townhall.levelAt(a),
                [b]: window.townhall.levelAt(b),
            })""",
            [SAM_HZ, ADA_HZ],
        )
        return result

    return probe


def stage_ears(page: Page) -> Callable[[], dict[str, Any]]:
    def probe() -> dict[str, Any]:
        result: dict[str, Any] = page.evaluate(
            """([a, b]) => ({
                level: window.townhall.returnedLevel(),
                [a]: window.townhall.returnedLevelAt(a),
                [b]: window.townhall.returnedLevelAt(b),
            })""",
            [SAM_HZ, ADA_HZ],
        )
        return result

    return probe


def hears(sample: dict[str, Any], hz: float) -> bool:
    level = sample.get(str(int(hz)))
    return level is not None and level > HEARD_DB


def misses(sample: dict[str, Any], hz: float) -> bool:
    level = sample.get(str(int(hz)))
    return level is not None and level < GONE_DB


def playing_advances(probe: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """The listener's probe, failing the poll's samples while playback stands still."""
    last: dict[str, float] = {"time": -1.0}

    def advancing() -> dict[str, Any]:
        sample = probe()
        sample["advancing"] = sample["time"] > last["time"]
        last["time"] = sample["time"]
        return sample

    return advancing


def join_from_invite(page: Page, invite_url: str, name: str) -> None:
    page.goto(invite_url.replace("/stage#", "/stage?raw=1#"))
    pick_guest_name(page, name)
    expect(page.locator("#role")).to_have_text("Speaker")
    expect(page.locator("#air")).to_contain_text("OFF AIR")
    page.get_by_role("button", name="Start talking").click()
    page.wait_for_function(
        "() => window.townhall.state === 'connected'", timeout=CONNECT_TIMEOUT_MS
    )


def new_invite(host: Page) -> str:
    host.get_by_role("button", name="Invite a speaker").click()
    field = host.get_by_label("Speaker invite link")
    expect(host.locator("#invite-status")).to_contain_text("invite link ready")
    link = field.input_value()
    assert "#invite=" in link, link
    return link


def test_a_whole_event_scheduled_opened_staged_heard_moderated_delayed_and_ended(
    server: Server, browsers: dict[str, Browser]
) -> None:
    quiet = browsers["quiet"]
    log: dict[str, list[dict[str, Any]]] = {}

    # --- The host schedules a Space on the home page, a few minutes ahead, and opens its green room.
    host_context, host, host_errors = new_person(quiet, microphone=False)
    sign_up(host, server, "Hana")
    host.goto(f"{server.url}/")
    expect(host.locator("#who")).to_contain_text("Hana")
    host.get_by_label("Title").fill("Town hall live")
    host.get_by_label("Schedule for later").check()
    soon = host.evaluate(
        """() => {
            const d = new Date(Date.now() + 10 * 60 * 1000);
            const pad = (n) => String(n).padStart(2, '0');
            return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
        }"""
    )
    host.get_by_label("Starts at (your local time)").fill(soon)
    host.get_by_role("button", name="Schedule the Space").click()
    host.wait_for_url(re.compile(r"/s/[a-z0-9]{10}/stage$"))
    space_id = host.url.rsplit("/", 2)[-2]
    expect(host.locator("#air")).to_contain_text("Scheduled")
    host.get_by_role("button", name="Open the green room").click()
    expect(host.locator("#air")).to_contain_text("Green room")
    expect(host.get_by_role("button", name="Go live")).to_be_visible()
    host.wait_for_function("() => window.townhall.eventsConnected")

    # --- Two speakers join from invite links, each from a browser singing its own tone.
    sam_context, sam, sam_errors = new_person(browsers["440"], microphone=True)
    join_from_invite(sam, new_invite(host), "Sam")
    ada_context, ada, ada_errors = new_person(browsers["660"], microphone=True)
    join_from_invite(ada, new_invite(host), "Ada")
    expect(host.locator("#roster")).to_contain_text("Sam")
    expect(host.locator("#roster")).to_contain_text("Ada")

    # The stage hears itself in the green room: each speaker gets the other's tone back, not their
    # own (mix-minus).
    log["sam-green-room"] = poll(
        "Sam hears Ada and not himself",
        stage_ears(sam),
        lambda s: hears(s, ADA_HZ) and misses(s, SAM_HZ),
    )
    log["ada-green-room"] = poll(
        "Ada hears Sam and not herself",
        stage_ears(ada),
        lambda s: hears(s, SAM_HZ) and misses(s, ADA_HZ),
    )

    # --- Listeners join while the stage is off air: they press Play and hear silence.
    lee_context, lee, lee_errors = new_person(quiet, microphone=False)
    lee.goto(f"{server.url}/s/{space_id}")
    expect(lee.locator("#space-state")).to_have_text("Starting soon")
    lee.get_by_role("button", name="Play").click()
    hears_silence_while_playing(lee, 2.0)
    kim_context, kim, kim_errors = new_person(quiet, microphone=False)
    kim.goto(f"{server.url}/s/{space_id}")
    expect(kim.locator("#stage")).to_contain_text("Ada")
    expect(kim.locator("#stage")).not_to_contain_text("speaking")

    # --- Go live: ON AIR everywhere, and the listener hears both tones.
    host.get_by_role("button", name="Go live").click()
    for page in (host, sam, ada):
        expect(page.locator("#air")).to_contain_text("ON AIR")
    expect(lee.locator("#space-state")).to_have_text("Live")
    log["lee-live"] = poll(
        "Lee hears both speakers",
        playing_advances(listener_ears(lee)),
        lambda s: s["advancing"] and hears(s, SAM_HZ) and hears(s, ADA_HZ),
    )
    expect(lee.locator("#status")).to_have_text("Playing live")
    expect(kim.locator("#stage")).to_contain_text("speaking")

    # --- Reactions: Lee applauds; Kim and the whole stage see it.
    lee.get_by_role("button", name="React: Applause").click()
    pick_guest_name(lee, "Lee")
    expect(lee.locator("#react-status")).to_have_text("You reacted: Applause.")
    expect(kim.locator('[data-emoji="👏"] .reaction-count')).to_have_text(re.compile(r"^[1-9]"))
    for page in (host, sam, ada):
        expect(page.locator("#stage-reactions")).to_contain_text(  # polled every 2 s
            re.compile(r"👏 [1-9]"), timeout=10_000
        )

    # --- Kim raises a hand; the host brings Kim on stage; Kim opens the stage from the link.
    kim.get_by_role("button", name="Raise hand").click()
    pick_guest_name(kim, "Kim")
    expect(kim.locator("#hand-status")).to_contain_text("Your hand is up")
    expect(host.locator("#hands")).to_contain_text("Kim")
    host.get_by_role("button", name="Bring Kim on stage").click()
    expect(host.locator("#roster")).to_contain_text("Kim")
    expect(kim.locator("#announce")).to_have_text("You are now a speaker. Open the stage to talk.")
    expect(lee.locator("#stage")).to_contain_text("Kim")
    screenshots(kim, "event-listener-on-stage")
    screenshots(lee, "event-listener-live")
    kim.get_by_role("link", name="Open the stage").click()
    expect(kim.locator("#role")).to_have_text("Speaker")
    expect(kim.locator("#air")).to_contain_text("ON AIR")
    expect(kim.get_by_role("button", name="Start talking")).to_be_enabled()
    screenshots(host, "event-host-live")

    # --- The host mutes Ada: her page says so, her tone leaves the program, Sam's stays.
    host.get_by_role("button", name="Mute Ada").click()
    expect(ada.locator("#host-muted")).to_be_visible()
    expect(ada.locator("#announce")).to_have_text("You were muted by the host.")
    expect(host.locator("#roster")).to_contain_text("muted by host")
    log["lee-ada-muted"] = poll(
        "Ada's tone leaves the listener's audio",
        playing_advances(listener_ears(lee)),
        lambda s: s["advancing"] and hears(s, SAM_HZ) and misses(s, ADA_HZ),
    )
    log["sam-ada-muted"] = poll(
        "Ada's tone leaves Sam's return", stage_ears(sam), lambda s: misses(s, ADA_HZ)
    )
    screenshots(ada, "event-speaker-muted")

    # --- The host moves Ada to the audience: her stage page says so, the audience sees it.
    host.get_by_role("button", name="Move Ada to the audience").click()
    expect(ada.get_by_role("heading", name="You are in the audience")).to_be_visible()
    expect(ada.locator("#gate-text")).to_have_text("The host moved you to the audience.")
    expect(host.locator("#roster")).not_to_contain_text("Ada")
    expect(lee.locator("#stage")).not_to_contain_text("Ada")

    # --- The broadcast delay: 5 s of silence is inserted, then Sam again, 5 s late.
    host.get_by_label("Delay in seconds (0–30)").fill("5")
    host.get_by_role("button", name="Set delay").click()
    expect(host.locator("#delay-status")).to_have_text("Listeners hear the stage 5 s late.")
    expect(sam.locator("#delay-status")).to_have_text("Listeners hear the stage 5 s late.")
    log["lee-delay-gap"] = poll(
        "the inserted delay reaches the listener as silence",
        playing_advances(listener_ears(lee)),
        lambda s: s["advancing"] and misses(s, SAM_HZ),
    )
    log["lee-delayed"] = poll(
        "Sam comes back, delayed",
        playing_advances(listener_ears(lee)),
        lambda s: s["advancing"] and hears(s, SAM_HZ),
    )
    # Dump: what is in the delay never airs; the listener hears a gap, then the stage again.
    host.get_by_role("button", name="Dump").click()
    expect(host.locator("#delay-status")).to_have_text(
        "Dumped: what was in the delay will never air."
    )
    log["lee-dumped"] = poll(
        "the dumped delay reaches the listener as silence",
        playing_advances(listener_ears(lee)),
        lambda s: s["advancing"] and misses(s, SAM_HZ),
    )
    log["lee-after-dump"] = poll(
        "Sam comes back after the dump",
        playing_advances(listener_ears(lee)),
        lambda s: s["advancing"] and hears(s, SAM_HZ),
    )

    # --- The end: every page says so; the listeners' players play out and stop.
    host.get_by_role("button", name="End Space").click()
    host.get_by_role("button", name="Yes, end the Space").click()
    for page in (host, sam, kim):
        expect(page.locator("#air")).to_contain_text("ENDED")
    expect(lee.locator("#space-state")).to_have_text("Ended", timeout=45_000)
    lee.wait_for_function("() => window.townhall.state === 'ended'", timeout=45_000)
    expect(lee.locator("#status")).to_have_text("This Space has ended.")
    screenshots(sam, "event-speaker-ended")

    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "event-audio-samples.json").write_text(json.dumps(log, indent=1))
    people = {"host": host_errors, "sam": sam_errors, "ada": ada_errors, "lee": lee_errors}
    people["kim"] = kim_errors
    assert {who: errors for who, errors in people.items() if errors} == {}
    for context in (kim_context, lee_context, ada_context, sam_context, host_context):
        context.close()

"""A whole event in headless Chromium, every person in their own browser context, with ears.

Chromium's fake microphone plays one WAV per browser *launch*, so each tone needs a browser of its
own: Sam's browser sings 440 Hz, Ada's 660 Hz; the host and the listeners share a third one and do
not talk. The second walk is a private, recorded Space in one browser singing 440 Hz (its host
talks): who may hear it, who may come back, and what everyone is told. Every page is judged on what it shows and on what it hears: the listeners' page analyses
the LL-HLS program with Web Audio (`levelAt(hz)`), a stage page analyses the mix-minus the server
returns to it (`returnedLevelAt(hz)`).
"""

from __future__ import annotations

import calendar
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
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
from tests.e2e.test_private_streams import stranger_answers
from tests.e2e.test_web_errors import sign_up_after_a_short_password
from townhall.harness import wait_until

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


# ------------------------------------------------------------------ a private, recorded event

TITLE = "Board meeting"


def media_requests(page: Page) -> list[str]:
    """Every `/live/` URL the page asks for from now on (the list grows as it plays)."""
    fetched: list[str] = []
    page.on(
        "request",
        lambda request: fetched.append(request.url) if "/live/" in request.url else None,
    )
    return fetched


def test_a_private_recorded_event_is_heard_only_with_its_link_moderated_and_clipped(
    server: Server, browser: Browser, tmp_path: Path
) -> None:
    """The event issue 14 promised, walked as people would in one browser (its fake microphone
    sings 440 Hz): the host signs up (after a too-short password), creates a private recorded
    Space on the home page and talks; REC is on every page; a listener with the link hears the
    host while a stranger with the id gets nothing anywhere; a limited speaker link is used,
    refused to the speaker the host removed, then revoked and refused to all; a banned
    listener's page says so at once; the host downloads the recording; a clip's page shows what
    a pasted link previews; a new listener link ends the old listener's media URLs."""
    # --- Hana signs up on the home page; her first password is too short, and is said so.
    host_context, host, host_errors = new_person(browser, microphone=True)
    sign_up_after_a_short_password(host, server, "Hana")

    # --- A private Space, recorded, from the create form; REC is announced before and on air.
    host.get_by_label("Title").fill(TITLE)
    host.get_by_label("Who can find it").select_option("private")
    host.get_by_label("Record this Space").check()
    host.get_by_role("button", name="Start a Space").click()
    host.wait_for_url(re.compile(r"/s/[a-z0-9]{10}/stage$"))
    space_id = host.url.rsplit("/", 2)[-2]
    rec = host.locator("#rec")
    expect(rec).to_have_text("Will be recorded")
    expect(rec).to_have_attribute("role", "status")
    expect(rec).to_have_attribute("aria-live", "polite")
    host.goto(f"{host.url}?raw=1")  # raw capture keeps the tone a tone
    host.wait_for_function("() => window.townhall.eventsConnected")
    host.get_by_role("button", name="Start talking").click()
    host.wait_for_function(
        "() => window.townhall.state === 'connected'", timeout=CONNECT_TIMEOUT_MS
    )
    went_live_at = time.time()
    host.get_by_role("button", name="Go live").click()
    expect(host.locator("#air")).to_contain_text("ON AIR")
    on_air = host.get_by_role("status").filter(has_text="This Space is being recorded.")
    expect(on_air).to_contain_text("REC")
    listen_link = host.get_by_label("Listener link", exact=True).input_value()
    assert "?code=" in listen_link, listen_link
    old_code = listen_link.split("?code=")[1]

    # --- Lee opens the listener link: REC for him too, and he hears Hana's tone.
    lee_context, lee, lee_errors = new_person(browser, microphone=False)
    lee_media = media_requests(lee)
    lee.goto(listen_link)
    expect(lee.locator("#space-state")).to_have_text("Live")
    lee_rec = lee.get_by_role("status").filter(has_text="This Space is being recorded.")
    expect(lee_rec).to_contain_text("REC")
    expect(lee_rec).to_have_attribute("aria-live", "polite")
    lee.get_by_role("button", name="Play").click()
    poll(
        "Lee hears the host through the private link",
        playing_advances(listener_ears(lee)),
        lambda s: s["advancing"] and hears(s, SAM_HZ),
    )
    assert lee_media, "the listener page fetched no audio"
    assert all(f"/live/{space_id}/" in url for url in lee_media), lee_media
    assert not any(url.endswith(f"/live/{space_id}/index.m3u8") for url in lee_media), lee_media

    # --- Lee clips the last seconds; the clip's page shows what a pasted link previews.
    lee.get_by_role("button", name="Clip the last 30 s").click()
    pick_guest_name(lee, "Lee")
    expect(lee.locator("#clip-status")).to_contain_text("is ready: share the link.")
    clip_link = lee.get_by_label("Link to your clip").input_value()
    assert "?key=" in clip_link, clip_link
    clip_id = httpx.URL(clip_link).path.rsplit("/", 1)[-1]
    clip_context, clip_page, clip_errors = new_person(browser, microphone=False)
    clip_page.goto(clip_link)
    expect(clip_page.get_by_role("heading", level=1)).to_have_text(TITLE)
    expect(clip_page.locator("#clip-speakers")).to_contain_text("Hana")
    aired = clip_page.locator("#clip-facts time").get_attribute("datetime")
    assert aired is not None
    aired_at = calendar.timegm(time.strptime(aired, "%Y-%m-%dT%H:%M:%SZ"))
    assert went_live_at - 60 <= aired_at <= time.time(), (aired, went_live_at)
    expect(clip_page.locator("#clip-facts")).to_contain_text("on air")
    meta = clip_page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('meta[property], meta[name]')]
            .map((m) => [m.getAttribute('property') || m.getAttribute('name'), m.content]))"""
    )
    assert meta["og:title"] == meta["twitter:title"] == TITLE, meta
    assert "Hana" in meta["og:description"], meta
    assert meta["og:url"] == clip_link, meta
    assert meta["robots"] == "noindex", meta  # a private Space's clip stays out of search engines
    clip_page.wait_for_function(  # the player on the page loads the clip
        "() => document.querySelector('#clip-audio').readyState >= 1", timeout=20_000
    )
    assert httpx.get(meta["og:audio"], timeout=15).status_code == 200
    clip_context.close()

    # --- A stranger who knows the Space's id, its stream id and the clip's id: nothing, anywhere.
    stranger_context, stranger, stranger_errors = new_person(browser, microphone=False)
    stranger_media = media_requests(stranger)
    stranger.goto(f"{server.url}/s/{space_id}")
    expect(stranger.locator("#space-state")).to_have_text("Not found")
    assert stranger_media == [], stranger_media
    stranger_context.close()
    init = next(url for url in lee_media if url.endswith("/init.mp4"))
    stream = init.rsplit("/", 2)[-2]
    with httpx.Client(timeout=15) as http:
        answers = stranger_answers(
            http, server.url, space_id, stream, {"id": clip_id}, server.host_identity("Eve")
        )
    assert answers == dict.fromkeys(answers, 404), answers

    # --- A speaker link for two, used once, then revoked: it seats nobody after that.
    host.get_by_label("People it can seat").fill("2")
    host.get_by_role("button", name="Invite a speaker").click()
    expect(host.locator("#invite-status")).to_contain_text("it seats 2 people")
    invite = host.get_by_label("Speaker invite link").input_value()
    listed = host.locator("#invite-links li").filter(has_text="Speaker link #1")
    expect(listed).to_contain_text("0 of 2 used")
    sam_context, sam, sam_errors = new_person(browser, microphone=False)
    sam.goto(invite)
    pick_guest_name(sam, "Sam")
    expect(sam.locator("#role")).to_have_text("Speaker")
    expect(sam.locator("#rec")).to_contain_text("REC")  # the stage sees it too
    expect(listed).to_contain_text("1 of 2 used")
    expect(listed).to_contain_text("Joined with it: Sam")
    # The host removes Sam from the stage: the link still has a seat, but not for him.
    host.get_by_role("button", name="Remove Sam from the Space").click()
    host.get_by_role("dialog").get_by_role("button", name="Yes, remove").click()
    expect(host.locator("#roster")).not_to_contain_text("Sam")
    sam.goto(invite)
    expect(sam.locator("#gate-text")).to_have_text(
        "A host took you off this stage, so invite links no longer seat you here. "
        "Raise your hand to ask to come back."
    )
    host.get_by_role("button", name="Revoke Speaker link #1").click()
    expect(listed).to_contain_text("revoked")
    cat_context, cat, _ = new_person(browser, microphone=False)
    cat.goto(invite)
    pick_guest_name(cat, "Cat")
    expect(cat.locator("#gate-text")).to_have_text(
        "This invite link was withdrawn by the host. Ask the host for a new one."
    )
    cat.goto(invite.split("#invite=")[0] + "#invite=abc")  # and a mangled one, in plain words
    expect(cat.locator("#gate-text")).to_have_text(
        "This invite link is not valid. Ask the host for a new one."
    )
    cat_context.close()

    # --- Kim listens with the link; the host finds her in the Audience panel and bans her; her
    # page says so at once, and the confirmation says what a ban does to a private stream.
    kim_context, kim, _ = new_person(browser, microphone=False)
    named = kim.request.post(f"{server.url}/api/auth/guest", data={"display_name": "Kim Novak"})
    assert named.status == 201, named.text()
    kim.goto(listen_link)
    expect(kim.locator("#who-name")).to_have_text("Kim Novak (guest)")
    panel = host.get_by_role("region", name="Audience")
    panel.get_by_label("Find a listener by name").fill("novak")
    # The list is read every 10 s and at each search: look again until her beacon has landed.
    expect(host.locator("#audience")).to_contain_text("Kim Novak", timeout=25_000)
    host.get_by_role("button", name="Ban Kim Novak").click()
    dialog = host.get_by_role("dialog")
    expect(dialog).to_contain_text("if they have this private Space's listener link")
    expect(dialog).to_contain_text("A new listener link (Share, host console) ends the old one")
    dialog.get_by_role("button", name="Yes, ban").click()
    expect(host.locator("#audience-status")).to_have_text("Kim Novak was banned from this Space.")
    notice = kim.get_by_role("alert").filter(has_text="You were banned from this Space")
    expect(notice).to_be_visible(timeout=5_000)
    expect(kim.get_by_role("button", name="Raise hand")).to_be_disabled()

    # --- The host downloads what has been recorded so far.
    with host.expect_download() as download:
        host.get_by_role("button", name="Download the recording (.m4a)").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.read_bytes()[4:8] == b"ftyp"  # an MP4 file, not an error page

    # --- A new listener link: the old one, and every media URL Lee's page was given, stop working.
    host.get_by_role("button", name="New listener link").click()
    host.get_by_role("dialog").get_by_role("button", name="Yes, make a new link").click()
    expect(host.locator("#rotate-status")).to_contain_text("the old one no longer works")
    new_link = host.get_by_label("Listener link", exact=True).input_value()
    assert old_code not in new_link
    old_playlist = next(url for url in lee_media if "/media.m3u8" in url).split("?")[0]
    with httpx.Client(timeout=15) as http:
        wait_until(  # a node honours the old key for at most about a second
            lambda: http.get(old_playlist).status_code == 404, 10, "the old playlist to end"
        )
        assert http.get(init).status_code == 404
    for page in (lee, kim):  # their pages say what happened: not an end, a new link
        expect(page.locator("#space-state")).to_have_text("Link replaced", timeout=20_000)
    expect(lee.locator("#status")).to_have_text(
        "This listener link no longer works: the host made a new one. Ask the host for it."
    )
    lee.goto(new_link)  # the new link, passed on by the host, opens it again
    expect(lee.locator("#space-state")).to_have_text("Live")

    # Refusals show in consoles as failed requests (the short password's 422, 404 once the link
    # changed), and only those.
    refused_signup = [e for e in host_errors if "422" in e and "/api/auth/signup" in e]
    assert len(refused_signup) == 1, host_errors
    assert [e for e in host_errors if e not in refused_signup] == [], "\n".join(host_errors)
    assert [e for e in lee_errors if "404" not in e] == [], lee_errors
    assert clip_errors == [], clip_errors
    assert [e for e in stranger_errors if "404" not in e] == [], stranger_errors
    assert [e for e in sam_errors if "403" not in e] == [], sam_errors  # the refused seat
    for context in (kim_context, sam_context, lee_context, host_context):
        context.close()

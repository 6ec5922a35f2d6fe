"""Headless Chromium on the stage and in the audience: the pages, end to end.

The stage pages publish a 440 Hz tone (Chromium's fake microphone plays a WAV we write) over
WebRTC; a listener's page plays the LL-HLS program mix with hls.js and analyses what it hears with
Web Audio. Each person has a browser context of their own (their own cookies: their identity).
Screenshots of every view at desktop and phone width go to test-artifacts/.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    ViewportSize,
    expect,
)

from tests.conftest import ARTIFACTS, Server
from tests.e2e.conftest import FAKE_MIC_HZ
from townhall.harness import CHROMIUM

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

TONE_HZ = FAKE_MIC_HZ  # what the shared `browser` fixture's microphone plays
TONE_TOLERANCE_HZ = 15.0
PLAYBACK_NEEDED_S = 3.0
HEARING_DEADLINE_S = 30.0
SILENCE_DBFS = -60.0  # the same bound the ffmpeg green-room test uses
PASSWORD = "correct horse battery"


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


def unique(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(3)}"


def sign_up(page: Page, server: Server, display_name: str) -> dict[str, Any]:
    """An account for this page's browser context: the session cookie lands in its cookie jar."""
    response = page.request.post(
        f"{server.url}/api/auth/signup",
        data={
            "username": unique(display_name.lower()),
            "password": PASSWORD,
            "display_name": display_name,
        },
    )
    assert response.status == 201, response.text()
    identity: dict[str, Any] = response.json()
    return identity


def create_space(page: Page, server: Server, title: str) -> str:
    """A Space created as this page's identity (it opens in the green room); returns its id."""
    response = page.request.post(f"{server.url}/api/spaces", data={"title": title})
    assert response.status == 201, response.text()
    created: dict[str, Any] = response.json()
    assert created["space"]["state"] == "green_room"
    return str(created["space"]["id"])


def sample(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(
        """() => ({
            time: window.townhall.currentTime(),
            frequency: window.townhall.dominantFrequency(),
            level: window.townhall.level(),
            latency: window.townhall.latency(),
            state: window.townhall.state,
        })"""
    )
    return result


def hears_silence_while_playing(page: Page, seconds: float) -> list[dict[str, Any]]:
    """Poll the listener page until playback advanced `seconds`; every sample meanwhile is silent."""
    deadline = time.monotonic() + HEARING_DEADLINE_S
    samples: list[dict[str, Any]] = []
    started_at: float | None = None
    while time.monotonic() < deadline:
        now = sample(page)
        samples.append(now)
        if started_at is None and now["time"] > 0:
            started_at = now["time"]
        if started_at is not None:
            assert now["level"] is not None, "the listener page analyses no audio"
            assert now["level"] < SILENCE_DBFS, f"the listener heard the green room: {samples[-4:]}"
            if now["time"] - started_at >= seconds:
                return samples
        page.wait_for_timeout(250)  # the poll interval; the deadline above bounds the wait
    raise AssertionError(f"the listener's playback did not advance {seconds} s: {samples[-8:]}")


def listen_until_the_tone_is_heard(page: Page) -> list[dict[str, Any]]:
    """Poll the listener page until playback advanced PLAYBACK_NEEDED_S while the tone is dominant."""
    deadline = time.monotonic() + HEARING_DEADLINE_S
    samples: list[dict[str, Any]] = []
    started_at: float | None = None
    while time.monotonic() < deadline:
        now = sample(page)
        samples.append(now)
        if started_at is None and now["time"] > 0:
            started_at = now["time"]
        played = now["time"] - started_at if started_at is not None else 0.0
        frequency = now["frequency"]
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


def pick_guest_name(page: Page, name: str) -> None:
    """Answer the page's "pick a name" dialog as a guest."""
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Your name").fill(name)
    dialog.get_by_role("button", name="Continue as guest").click()
    expect(dialog).to_be_hidden()


def new_person(browser: Browser, *, microphone: bool) -> tuple[BrowserContext, Page, list[str]]:
    context = browser.new_context(
        permissions=["microphone"] if microphone else [], viewport=DESKTOP
    )
    page = context.new_page()
    return context, page, collect_errors(page)


def host_on_stage(
    browser: Browser, server: Server, title: str
) -> tuple[BrowserContext, Page, list[str], str]:
    """Hana signs up, creates a Space and opens its stage page, events connected: the host's
    context, page, console errors and the Space id."""
    context, host, errors = new_person(browser, microphone=True)
    sign_up(host, server, "Hana")
    space_id = create_space(host, server, title)
    host.goto(f"{server.url}/s/{space_id}/stage")
    expect(host.locator("#role")).to_have_text("Host")
    host.wait_for_function("() => window.townhall.eventsConnected")
    return context, host, errors, space_id


def test_a_space_from_green_room_to_end_with_a_host_a_speaker_and_a_listener(
    server: Server, browser: Browser
) -> None:
    # The host: an account (signed up in the host's own browser context), a Space in the green room.
    host_context, host, host_errors = new_person(browser, microphone=True)
    sign_up(host, server, "Hana")
    space_id = create_space(host, server, "Launch day")

    # Raw capture (no echo cancellation, noise suppression or AGC) keeps the tone a tone.
    host.goto(f"{server.url}/s/{space_id}/stage?raw=1")
    expect(host.get_by_role("heading", level=1)).to_have_text("Launch day")
    expect(host.locator("#role")).to_have_text("Host")
    expect(host.locator("#air")).to_contain_text("OFF AIR")
    expect(host.get_by_role("button", name="Go live")).to_be_visible()
    host.get_by_role("button", name="Start talking").click()
    host.wait_for_function("() => window.townhall.state === 'connected'", timeout=20_000)
    expect(host.locator("#connection")).to_contain_text("Connected")

    # A listener presses Play in the green room: the stage is talking, the listener hears silence.
    listen_context, listener, listener_errors = new_person(browser, microphone=False)
    listener.goto(f"{server.url}/s/{space_id}")
    expect(listener.get_by_role("heading", level=1)).to_have_text("Launch day")
    expect(listener.locator("#space-state")).to_have_text("Starting soon")
    expect(listener.locator("#soon")).to_be_visible()
    expect(listener.locator("#stage")).to_contain_text("Hana")
    listener.get_by_role("button", name="Play").click()
    hears_silence_while_playing(listener, 3.0)
    expect(listener.locator("#status")).to_have_text("Playing: waiting for the stage to go live")
    # The stage sees its host speaking; the audience, off air, sees nobody speaking.
    expect(host.locator("#roster")).to_contain_text("Host · speaking")
    expect(listener.locator("#stage")).not_to_contain_text("speaking")
    screenshots(listener, "listen-starting-soon")

    # The host invites a speaker by link; a guest opens it in their own browser and takes the seat.
    host.get_by_role("button", name="Invite a speaker").click()
    invite_field = host.get_by_label("Speaker invite link")
    expect(invite_field).to_have_value(
        re.compile(rf"^{re.escape(server.url)}/s/{space_id}/stage#invite=[\w.-]+$")
    )
    invite_url = invite_field.input_value()
    screenshots(host, "stage-host-green-room")

    speaker_context, speaker, speaker_errors = new_person(browser, microphone=True)
    speaker.goto(invite_url.replace("/stage#", "/stage?raw=1#"))
    pick_guest_name(speaker, "Sam")
    expect(speaker.locator("#role")).to_have_text("Speaker")
    speaker.wait_for_function("() => location.hash === ''")  # the invite left the address bar
    expect(speaker.locator("#air")).to_contain_text("OFF AIR")
    expect(host.locator("#roster")).to_contain_text("Sam")
    speaker.get_by_role("button", name="Start talking").click()
    speaker.wait_for_function("() => window.townhall.state === 'connected'", timeout=20_000)

    # The host mutes the speaker; only the speaker can unmute themselves.
    host.get_by_role("button", name="Mute Sam").click()
    expect(speaker.locator("#host-muted")).to_be_visible()
    expect(host.locator("#roster")).to_contain_text("muted by host")
    screenshots(speaker, "stage-speaker-muted")
    speaker.get_by_role("button", name="Unmute myself").click()
    expect(speaker.locator("#host-muted")).to_be_hidden()
    speaker.wait_for_function("() => window.townhall.muted === false")

    # Go live: every stage page says ON AIR, the listener's page says Live and the tone arrives.
    host.get_by_role("button", name="Go live").click()
    expect(host.locator("#air")).to_contain_text("ON AIR")
    expect(speaker.locator("#air")).to_contain_text("ON AIR")
    expect(host.get_by_role("button", name="Go live")).to_be_hidden()
    expect(listener.locator("#space-state")).to_have_text("Live")
    samples = listen_until_the_tone_is_heard(listener)
    expect(listener.locator("#stage")).to_contain_text("Host · speaking")
    expect(listener.locator("#status")).to_have_text("Playing live")
    expect(listener.locator("#latency")).to_contain_text("behind live")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "browser-listener-samples.json").write_text(json.dumps(samples, indent=1))

    # The listener reacts and raises a hand (a guest name first); the host brings them on stage.
    listener.get_by_role("button", name="React: Applause").click()
    pick_guest_name(listener, "Lee")
    expect(listener.locator("#react-status")).to_have_text("You reacted: Applause.")
    expect(listener.locator('[data-emoji="👏"] .reaction-count')).to_have_text(
        re.compile(r"^[1-9]")
    )
    expect(listener.locator("#listeners")).to_contain_text(re.compile(r"About \d+ listening"))
    listener.get_by_role("button", name="Raise hand").click()
    expect(listener.locator("#hand-status")).to_contain_text("Your hand is up")
    expect(host.locator("#hands")).to_contain_text("Lee")
    screenshots(listener, "listen-live")
    host.get_by_role("button", name="Bring Lee on stage").click()
    expect(host.locator("#roster")).to_contain_text("Lee")
    to_stage = listener.get_by_role("link", name="Open the stage")
    expect(to_stage).to_be_visible()
    expect(to_stage).to_have_attribute("href", f"/s/{space_id}/stage")

    # The producer's tools: a broadcast delay and the dump button.
    host.get_by_label("Delay in seconds (0–30)").fill("5")
    host.get_by_role("button", name="Set delay").click()
    expect(host.locator("#delay-status")).to_have_text("Listeners hear the stage 5 s late.")
    host.get_by_role("button", name="Dump").click()
    expect(host.locator("#delay-status")).to_have_text(
        "Dumped: what was in the delay will never air."
    )
    screenshots(host, "stage-host-live")
    screenshots(speaker, "stage-speaker-live")

    # The end: the host ends the Space, the stage pages say so, the listener's page plays out.
    host.get_by_role("button", name="End Space").click()
    host.get_by_role("button", name="Yes, end the Space").click()
    expect(host.locator("#air")).to_contain_text("ENDED")
    expect(host.locator("#connection")).to_have_text("This Space has ended")
    expect(host.get_by_role("button", name="Start talking")).to_be_hidden()
    expect(speaker.locator("#air")).to_contain_text("ENDED")
    listener.wait_for_function("() => window.townhall.state === 'ended'", timeout=45_000)
    expect(listener.locator("#status")).to_have_text("This Space has ended.")
    expect(listener.locator("#space-state")).to_have_text("Ended")
    expect(listener.get_by_role("button", name="Play")).to_be_hidden()
    screenshots(listener, "listen-ended")
    screenshots(host, "stage-ended")

    assert host_errors == [], host_errors
    assert speaker_errors == [], speaker_errors
    assert listener_errors == [], listener_errors
    for context in (listen_context, speaker_context, host_context):
        context.close()


def test_signing_up_on_the_home_page_and_starting_a_space_opens_its_green_room(
    server: Server, browser: Browser
) -> None:
    context, page, errors = new_person(browser, microphone=False)
    page.goto(f"{server.url}/")
    expect(page.get_by_role("heading", name="Who are you?")).to_be_visible()
    expect(page.get_by_role("button", name="Start a Space")).to_be_disabled()
    screenshots(page, "home")

    page.get_by_role("button", name="Create account").click()
    form = page.locator("#signup-form")
    form.get_by_label("Username").fill(unique("morgan"))
    form.get_by_label("Display name").fill("Morgan")
    form.get_by_label("Password").fill(PASSWORD)
    form.get_by_role("button", name="Create account").click()
    expect(page.locator("#who")).to_contain_text("Morgan")
    expect(page.get_by_role("heading", name="Who are you?")).to_be_hidden()

    page.get_by_role("button", name="Start a Space").click()
    # Said under the title field, tied to it for screen readers.
    expect(page.locator("#title-error")).to_have_text("Give your Space a title.")
    expect(page.get_by_label("Title")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Title").fill("Morning news")
    page.get_by_role("button", name="Start a Space").click()
    page.wait_for_url(re.compile(r"/s/[a-z0-9]{10}/stage$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Morning news")
    expect(page.locator("#role")).to_have_text("Host")
    expect(page.locator("#air")).to_contain_text("OFF AIR")
    expect(page.get_by_role("button", name="Go live")).to_be_visible()
    page.wait_for_function("() => window.townhall.eventsConnected")

    # The home page lists it (green room: starting soon) and leads its host back to the stage.
    page.goto(f"{server.url}/")
    item = page.locator("#live-list li", has_text="Morning news")
    expect(item).to_contain_text("Starting soon")
    expect(item.get_by_role("link", name="Open the stage (Host)")).to_be_visible()
    screenshots(page, "home-signed-in")

    # Someone without an account finds it on the home page and opens the listener page.
    visitor_context, visitor, visitor_errors = new_person(browser, microphone=False)
    visitor.goto(f"{server.url}/")
    visitor.get_by_role("link", name="Morning news").click()
    expect(visitor.get_by_role("heading", level=1)).to_have_text("Morning news")
    expect(visitor.locator("#space-state")).to_have_text("Starting soon")

    assert errors == [], errors
    assert visitor_errors == [], visitor_errors
    visitor_context.close()
    context.close()


def continue_as_guest_at_home(page: Page, server: Server, name: str) -> None:
    page.goto(f"{server.url}/")
    page.locator("#guest-form").get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Continue as guest").click()
    expect(page.locator("#who")).to_contain_text(name)


def test_scheduling_a_space_on_the_home_page_lists_it_as_upcoming_with_a_reminder(
    server: Server, browser: Browser
) -> None:
    context, page, errors = new_person(browser, microphone=False)
    continue_as_guest_at_home(page, server, "Rosa")

    # Schedule it: the date/time field appears with a start an hour from now already filled in.
    page.get_by_label("Title").fill("Town meeting")
    page.get_by_label("Who can find it").select_option("public")
    page.get_by_label("Schedule for later").check()
    expect(page.get_by_label("Starts at (your local time)")).to_be_visible()
    page.get_by_role("button", name="Schedule the Space").click()
    page.wait_for_url(re.compile(r"/s/[a-z0-9]{10}/stage$"))
    expect(page.locator("#air")).to_contain_text("OFF AIR")
    expect(page.locator("#air")).to_contain_text("Scheduled")
    expect(page.get_by_role("button", name="Start talking")).to_be_disabled()
    expect(page.get_by_role("button", name="Open the green room")).to_be_visible()

    # Someone else finds it under "Coming up" and asks to be reminded (and changes their mind).
    fan_context, fan, fan_errors = new_person(browser, microphone=False)
    continue_as_guest_at_home(fan, server, "Femi")
    item = fan.locator("#upcoming-list li", has_text="Town meeting")
    expect(item).to_contain_text("Starts ")
    expect(item).to_contain_text("Hosted by Rosa")
    remind = item.get_by_role("button", name="Remind me of Town meeting")
    remind.click()
    expect(fan.locator("#upcoming-status")).to_have_text("Reminder saved for “Town meeting”.")
    cancel = item.get_by_role("button", name="Cancel the reminder for Town meeting")
    expect(cancel).to_have_attribute("aria-pressed", "true")
    screenshots(fan, "home-upcoming")
    fan.reload()  # the browser remembers the reminder it set
    expect(cancel).to_have_text("Reminder set")
    cancel.click()
    expect(remind).to_have_attribute("aria-pressed", "false")

    # The host opens the green room (within 30 minutes of the start: an hour is too early, so
    # the page says why, next to the button) — here the Space is due: scheduled 10 minutes ahead.
    page.get_by_role("button", name="Open the green room").click()
    expect(page.locator("#open-room-error")).to_contain_text("too early")
    due = page.request.post(
        f"{server.url}/api/spaces",
        data={"title": "Soon", "scheduled_start": time.time() + 600},
    )
    assert due.status == 201, due.text()
    page.goto(f"{server.url}/s/{due.json()['space']['id']}/stage")
    page.get_by_role("button", name="Open the green room").click()
    expect(page.locator("#air")).to_contain_text("Green room")
    expect(page.get_by_role("button", name="Go live")).to_be_visible()
    expect(page.get_by_role("button", name="Start talking")).to_be_enabled()

    assert [e for e in errors if "409" not in e] == [], errors  # the too-early open answers 409
    assert fan_errors == [], fan_errors
    fan_context.close()
    context.close()


def test_the_host_console_brings_a_hand_on_stage_makes_a_cohost_pins_a_link_and_bans(
    server: Server, browser: Browser
) -> None:
    host_context, host, host_errors, space_id = host_on_stage(browser, server, "Ask me anything")

    # Two listeners, each with a name; both raise a hand.
    people = {}
    for name in ("Lee", "Kim"):
        context, page, errors = new_person(browser, microphone=True)
        page.goto(f"{server.url}/s/{space_id}")
        page.get_by_role("button", name="Raise hand").click()
        pick_guest_name(page, name)
        expect(page.locator("#hand-status")).to_contain_text("Your hand is up")
        expect(host.locator("#hands")).to_contain_text(name)
        people[name] = (context, page, errors)
    lee, kim = people["Lee"][1], people["Kim"][1]

    # The host brings Lee on stage: Lee's page announces it.
    host.get_by_role("button", name="Bring Lee on stage").click()
    expect(host.locator("#roster")).to_contain_text("Lee")
    expect(lee.locator("#announce")).to_have_text("You are now a speaker. Open the stage to talk.")
    expect(lee.get_by_role("link", name="Open the stage")).to_be_visible()
    screenshots(lee, "listen-accepted")

    # The host bans Kim from the queue, after a confirmation that says what a ban does and what
    # it cannot (the stream of a public Space stays public). Kim's page says so at once, from the
    # snapshot it polls anyway, and its buttons are off with the reason beside them.
    host.get_by_role("button", name="Ban Kim").click()
    dialog = host.get_by_role("dialog")
    expect(dialog).to_contain_text("Ban Kim?")
    expect(dialog).to_contain_text("can no longer react, raise a hand, make clips or come on stage")
    expect(dialog).to_contain_text("The stream stays public and Kim can still hear it")
    expect(dialog).to_contain_text("without asking who they are")  # and why
    dialog.get_by_role("button", name="Yes, ban").click()
    expect(host.locator("#hands")).not_to_contain_text("Kim")
    expect(host.locator("#roster-status")).to_have_text("Kim was banned from this Space.")
    notice = kim.get_by_role("alert").filter(has_text="You were banned from this Space")
    expect(notice).to_contain_text("so you can still listen", timeout=5_000)
    for button in ("React: Applause", "Raise hand"):
        expect(kim.get_by_role("button", name=button)).to_be_disabled()
        expect(kim.get_by_role("button", name=button)).to_have_attribute(
            "aria-describedby", "moderated"
        )

    # Lee opens the stage; the host makes Lee a co-host, then mutes Lee: both are announced.
    lee.get_by_role("link", name="Open the stage").click()
    expect(lee.locator("#role")).to_have_text("Speaker")
    lee.wait_for_function("() => window.townhall.eventsConnected")
    host.get_by_role("button", name="Make Lee a co-host").click()
    expect(lee.locator("#role")).to_have_text("Co-host")
    expect(lee.locator("#announce")).to_have_text("You are now a co-host.")
    host.get_by_role("button", name="Mute Lee").click()
    expect(lee.locator("#announce")).to_have_text("You were muted by the host.")
    expect(lee.locator("#host-muted")).to_be_visible()

    # A pinned link reaches the stage and the listeners.
    host.get_by_label("Link listeners see under the title").fill("https://example.org/agenda")
    host.get_by_role("button", name="Pin link").click()
    expect(host.locator("#pin-status")).to_have_text(
        "Pinned: listeners see the link under the title."
    )
    kim_pinned = kim.locator("#pinned-link")
    expect(kim_pinned).to_have_text("example.org/agenda")

    # The microphone choice appears once the microphone is open (when there is a choice).
    host.get_by_role("button", name="Start talking").click()
    host.wait_for_function("() => window.townhall.state === 'connected'", timeout=20_000)
    devices = host.locator("#mic-device option")
    if devices.count() > 1:
        host.get_by_label("Microphone", exact=True).select_option(index=1)
        expect(host.locator("#announce")).to_contain_text("Microphone:")
        host.wait_for_function("() => window.townhall.state === 'connected'")
    screenshots(host, "stage-host-console")

    # The host hands the host role to Lee.
    host.get_by_role("button", name="Hand the host role to Lee").click()
    host.get_by_role("dialog").get_by_role("button", name="Yes, make them host").click()
    expect(lee.locator("#role")).to_have_text("Host")
    expect(lee.get_by_role("button", name="Go live")).to_be_visible()
    expect(host.locator("#role")).not_to_have_text("Host")

    assert host_errors == [], host_errors
    assert people["Lee"][2] == [], people["Lee"][2]
    assert people["Kim"][2] == [], people["Kim"][2]
    for context, _, _ in people.values():
        context.close()
    host_context.close()

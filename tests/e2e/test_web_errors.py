"""The common mistakes and the moderation and recording people see, in real Chromium.

Each error must read as a sentence for people, appear right by the control that caused it (measured
on the page: the gap between the control and the sentence), and go away once a later action works.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.conftest import Server
from tests.e2e.test_browser import (
    CHROMIUM,
    PASSWORD,
    new_person,
    pick_guest_name,
    screenshots,
    sign_up,
    unique,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed"),
]

NEAR_PX = 80  # an error this close below its control is "next to it" (a line of text and margins)


def below_and_near(control: Locator, error: Locator) -> None:
    """The error is shown, just under (or beside) the control that caused it."""
    expect(error).to_be_visible()
    box, said = control.bounding_box(), error.bounding_box()
    assert box is not None
    assert said is not None
    gap = said["y"] - (box["y"] + box["height"])
    assert -box["height"] <= gap <= NEAR_PX, f"the error is {gap:.0f} px from its control"


def as_guest(page: Page, server: Server, name: str) -> None:
    response = page.request.post(f"{server.url}/api/auth/guest", data={"display_name": name})
    assert response.status == 201, response.text()


def sign_up_after_a_short_password(page: Page, server: Server, name: str) -> None:
    """Create an account on the home page, first with a password too short: the sentence sits
    under the password field, then goes once the account is made."""
    page.goto(f"{server.url}/")
    page.get_by_role("button", name="Create account").click()
    form = page.locator("#signup-form")
    form.get_by_label("Username").fill(unique(name.lower()))
    form.get_by_label("Display name").fill(name)
    password = form.get_by_label("Password")
    password.fill("short")
    form.get_by_role("button", name="Create account").click()
    said = page.locator("#signup-password-error")
    expect(said).to_have_text("The password must be at least 8 characters long.")
    expect(said).to_have_attribute("role", "alert")
    expect(password).to_have_attribute("aria-invalid", "true")
    below_and_near(password, said)
    screenshots(page, "errors-short-password")
    password.fill(PASSWORD)
    form.get_by_role("button", name="Create account").click()
    expect(page.locator("#who")).to_contain_text(name)
    expect(said).to_be_hidden()
    expect(password).not_to_have_attribute("aria-invalid", "true")


def test_a_short_password_a_bad_invite_and_a_full_stage_are_said_by_their_controls(
    server: Server, browser: Browser
) -> None:
    # --- A password too short: the sentence sits under the password field, then goes.
    context, page, _ = new_person(browser, microphone=False)
    sign_up_after_a_short_password(page, server, "Nadia")
    context.close()

    # --- A host whose stage holds one speaker, and a speaker in that seat.
    host_context, host, host_errors = new_person(browser, microphone=False)
    sign_up(host, server, "Hana")
    created = host.request.post(
        f"{server.url}/api/spaces", data={"title": "Full house", "max_speakers": 1}
    )
    assert created.status == 201, created.text()
    space_id = created.json()["space"]["id"]
    host.goto(f"{server.url}/s/{space_id}/stage")
    host.wait_for_function("() => window.townhall.eventsConnected")
    invite = host.request.post(
        f"{server.url}/api/spaces/{space_id}/invite-links", data={"role": "speaker"}
    ).json()["invite"]
    sam_context, sam, _ = new_person(browser, microphone=False)
    as_guest(sam, server, "Sam")
    seated = sam.request.post(
        f"{server.url}/api/spaces/{space_id}/stage/join", data={"invite": invite}
    )
    assert seated.status == 200, seated.text()
    expect(host.locator("#roster")).to_contain_text("Sam")

    # --- A mangled invite link: the stage page says what to do, not what the validator saw.
    for mangled in ("abc", invite[:-6] + "xxxxxx"):
        guest_context, guest, _ = new_person(browser, microphone=False)
        guest.goto(f"{server.url}/s/{space_id}/stage#invite={mangled}")
        pick_guest_name(guest, "Gus")
        expect(guest.locator("#gate-text")).to_have_text(
            "This invite link is not valid. Ask the host for a new one."
        )
        expect(guest.get_by_role("link", name="Listen instead")).to_be_visible()
        guest_context.close()

    # --- Lee asks to speak; the stage is full: the sentence is by the button the host pressed.
    lee_context, lee, lee_errors = new_person(browser, microphone=False)
    lee.goto(f"{server.url}/s/{space_id}")
    lee.get_by_role("button", name="Raise hand").click()
    pick_guest_name(lee, "Lee")
    expect(host.locator("#hands")).to_contain_text("Lee")
    accept = host.get_by_role("button", name="Bring Lee on stage")
    accept.click()
    full = host.locator("#hands").get_by_role("alert")
    expect(full).to_have_text("The stage is full: move a speaker to the audience first.")
    below_and_near(accept, full)
    expect(accept).to_have_attribute("aria-describedby", str(full.get_attribute("id")))
    screenshots(host, "errors-stage-full")
    # A later action that works clears it; then Lee fits.
    host.get_by_role("button", name="Move Sam to the audience").click()
    expect(host.locator("#roster")).not_to_contain_text("Sam")
    expect(full).to_be_hidden()
    accept.click()
    expect(host.locator("#roster")).to_contain_text("Lee")
    expect(host.get_by_role("alert").filter(has_text="full")).to_have_count(0)

    # The refused accept shows in the console as a failed request (409), and only that.
    assert [e for e in host_errors if "409" not in e] == [], host_errors
    assert lee_errors == [], lee_errors
    for each in (lee_context, sam_context, host_context):
        each.close()


def test_a_recorded_space_shows_rec_to_all_the_host_downloads_it_and_a_removal_is_said(
    server: Server, browser: Browser, tmp_path: Path
) -> None:
    # --- The host ticks "Record this Space" on the home page.
    host_context, host, host_errors = new_person(browser, microphone=False)
    sign_up(host, server, "Hana")
    host.goto(f"{server.url}/")
    host.get_by_label("Title").fill("On the record")
    host.get_by_label("Record this Space").check()
    host.get_by_role("button", name="Start a Space").click()
    host.wait_for_url(f"{server.url}/s/*/stage")
    space_id = host.url.rsplit("/", 2)[-2]
    rec = host.locator("#rec")
    expect(rec).to_have_text("Will be recorded")
    expect(rec).to_have_attribute("aria-live", "polite")

    # --- A listener opens the page; on air, everyone sees REC (and a screen reader hears it).
    lee_context, lee, lee_errors = new_person(browser, microphone=False)
    lee.goto(f"{server.url}/")  # the home page's list says it before anyone opens the Space
    listed = lee.locator(".space-item", has_text="On the record").locator(".rec")
    expect(listed).to_have_text("Will be recorded")
    lee.goto(f"{server.url}/s/{space_id}")
    expect(lee.locator("#rec")).to_have_text("Will be recorded")
    host.get_by_role("button", name="Go live").click()
    for page in (host, lee):
        badge = page.get_by_role("status").filter(has_text="This Space is being recorded.")
        expect(badge).to_be_visible()
        expect(badge).to_contain_text("REC")
    screenshots(lee, "listen-recorded")

    # --- The host downloads what has been recorded so far.
    recording = f"{server.url}/api/spaces/{space_id}/recording"
    host.wait_for_function(
        """async (url) => (await (await fetch(url)).json()).seconds >= 1""", arg=recording
    )
    with host.expect_download() as download:
        host.get_by_role("button", name="Download the recording (.m4a)").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == f"{space_id}.m4a"
    assert saved.read_bytes()[4:8] == b"ftyp"  # an MP4 file, not an error page
    expect(host.locator("#download-status")).to_contain_text("Downloading the recording")

    # --- Lee raises a hand and is removed: the confirmation says what removal does, and Lee's
    # page says so at once, with nothing barred.
    lee.get_by_role("button", name="Raise hand").click()
    pick_guest_name(lee, "Lee")
    expect(host.locator("#hands")).to_contain_text("Lee")
    host.get_by_role("button", name="Remove Lee from the Space").click()
    dialog = host.get_by_role("dialog")
    expect(dialog).to_contain_text("They are not banned: they can keep listening")
    dialog.get_by_role("button", name="Yes, remove").click()
    notice = lee.get_by_role("alert").filter(has_text="You were removed from this Space")
    expect(notice).to_be_visible(timeout=5_000)
    expect(lee.get_by_role("button", name="Raise hand")).to_be_enabled()
    expect(lee.get_by_role("button", name="React: Applause")).to_be_enabled()
    screenshots(lee, "listen-removed")
    # Raising the hand again works, and the old notice gives way.
    lee.get_by_role("button", name="Raise hand").click()
    expect(lee.locator("#hand-status")).to_contain_text("Your hand is up")
    expect(notice).to_be_hidden()

    assert host_errors == [], host_errors
    assert lee_errors == [], lee_errors
    lee_context.close()
    host_context.close()

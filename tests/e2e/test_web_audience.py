"""The host console's audience list in headless Chromium: find a listener by name, invite, ban.

Two listeners with guest names only listen (no hand, no reaction): their pages' presence beacons
are all that puts them in the host's list. The host searches by name, invites one to speak (their
page offers the seat at once and takes it in one press) and bans the other after a confirmation
that says what a ban does and does not do; the banned listener's page says so without a reload.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import Server
from tests.e2e.test_browser import host_on_stage, new_person, screenshots
from townhall.harness import CHROMIUM

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed"),
]


def listen_as_guest(
    browser: Browser, server: Server, space_id: str, name: str
) -> tuple[Page, list[str]]:
    """A listener who picked a guest name earlier (the cookie is in their browser) opens the link."""
    _, page, errors = new_person(browser, microphone=False)
    response = page.request.post(f"{server.url}/api/auth/guest", data={"display_name": name})
    assert response.status == 201, response.text()
    page.goto(f"{server.url}/s/{space_id}")
    expect(page.locator("#who-name")).to_have_text(f"{name} (guest)")
    return page, errors


def test_the_host_finds_a_listener_by_name_invites_one_and_bans_another(
    server: Server, browser: Browser
) -> None:
    _, host, host_errors, space_id = host_on_stage(browser, server, "Town meeting")

    quinn, quinn_errors = listen_as_guest(browser, server, space_id, "Quinn Moreau")
    rafa, _ = listen_as_guest(browser, server, space_id, "Rafa Ortiz")

    # The host looks for Quinn by part of the name, in another case.
    panel = host.get_by_role("region", name="Audience")
    search = panel.get_by_label("Find a listener by name")
    search.fill("MOREAU")
    listed = host.locator("#audience")
    # The list is read every 10 s and at each search: a listener's first beacon may land just
    # after the search, so look again until it is there.
    expect(listed).to_contain_text("Quinn Moreau", timeout=25_000)
    expect(listed).not_to_contain_text("Rafa")
    expect(listed).to_contain_text("guest")
    screenshots(host, "stage-audience-search")

    # Rafa is invited from the list (cleared search: both are there, by name); Rafa's page offers
    # the seat at once, and one press takes it.
    search.fill("")
    search.press("Enter")
    expect(listed).to_contain_text("Rafa Ortiz")
    expect(listed.locator("li")).to_have_count(2)
    host.get_by_role("button", name="Invite Rafa Ortiz to speak").click()
    expect(host.locator("#audience-status")).to_contain_text("Rafa Ortiz is invited")
    join = rafa.get_by_role("button", name="Join the stage")
    expect(join).to_be_visible(timeout=5_000)
    join.click()
    expect(rafa.get_by_role("link", name="Open the stage")).to_be_visible()
    expect(host.locator("#roster")).to_contain_text("Rafa Ortiz")

    # Quinn is banned from the list, after a confirmation that says what is true: no reactions,
    # hands, clips or stage; the public stream stays audible, and why.
    search.fill("quinn")
    expect(listed).to_contain_text("Quinn Moreau")
    expect(listed).not_to_contain_text("Rafa")  # on stage now: not in the audience list
    host.get_by_role("button", name="Ban Quinn Moreau").click()
    dialog = host.get_by_role("dialog")
    expect(dialog).to_contain_text("Ban Quinn Moreau?")
    expect(dialog).to_contain_text("can no longer react, raise a hand, make clips or come on stage")
    expect(dialog).to_contain_text("The stream stays public and Quinn Moreau can still hear it")
    dialog.get_by_role("button", name="Yes, ban").click()
    expect(host.locator("#audience-status")).to_have_text(
        "Quinn Moreau was banned from this Space."
    )
    expect(listed).to_contain_text("banned: can still hear the stream")
    expect(host.get_by_role("button", name="Ban Quinn Moreau")).to_have_count(0)

    # Quinn's page says so without a reload, from the snapshot it polls anyway, buttons off with
    # the reason beside them.
    notice = quinn.get_by_role("alert").filter(has_text="You were banned from this Space")
    expect(notice).to_be_visible(timeout=5_000)
    for button in ("React: Applause", "Raise hand"):
        expect(quinn.get_by_role("button", name=button)).to_be_disabled()
        expect(quinn.get_by_role("button", name=button)).to_have_attribute(
            "aria-describedby", "moderated"
        )
    assert quinn.evaluate("() => window.townhall.banned") is True
    screenshots(quinn, "listen-banned-from-audience")
    assert host_errors == []
    assert quinn_errors == []

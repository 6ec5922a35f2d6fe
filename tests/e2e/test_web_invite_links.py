"""Invite links in the host console, in real Chromium: the host makes a link for two people that
works for an hour, watches it being used, revokes another one; the third person, a revoked link's
opener and a removed speaker are each told what happened and what to do."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import Server
from tests.e2e.test_browser import (
    CHROMIUM,
    create_space,
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


def open_invite(page: Page, url: str, name: str | None) -> None:
    page.goto(url)
    if name is not None:
        pick_guest_name(page, name)


def test_the_host_makes_a_two_person_link_sees_it_used_and_revokes_another(
    server: Server, browser: Browser
) -> None:
    host_context, host, host_errors = new_person(browser, microphone=False)
    sign_up(host, server, "Hana")
    space_id = create_space(host, server, "Invites")
    host.goto(f"{server.url}/s/{space_id}/stage")
    host.wait_for_function("() => window.townhall.eventsConnected")
    expect(host.locator("#invite-links-empty")).to_have_text("No invite links yet.")

    # --- A speaker link for two people that works for an hour.
    host.get_by_label("People it can seat").fill("2")
    host.get_by_label("Works for").select_option(label="1 hour")
    host.get_by_role("button", name="Invite a speaker").click()
    expect(host.locator("#invite-status")).to_have_text(
        "New speaker invite link ready: it seats 2 people and works for 1 hour."
    )
    url = host.get_by_label("Speaker invite link").input_value()
    first = host.locator("#invite-links li").filter(has_text="Speaker link #1")
    expect(first).to_contain_text("0 of 2 used")
    expect(first).to_contain_text("made by Hana")

    # --- Ann and Bob take the two seats; the console counts them as they come.
    people = []
    for name in ("Ann", "Bob"):
        context, page, errors = new_person(browser, microphone=False)
        open_invite(page, url, name)
        expect(page.locator("#role")).to_have_text("Speaker")
        people.append((context, page, errors))
    expect(first).to_contain_text("2 of 2 used")
    expect(first).to_contain_text("used up")
    expect(first).to_contain_text("Joined with it: Ann, Bob")

    # --- Cat comes third: the link has done what the host allowed.
    cat_context, cat, _ = new_person(browser, microphone=False)
    open_invite(cat, url, "Cat")
    expect(cat.locator("#gate-text")).to_have_text(
        "This invite link has been used as many times as the host allowed. "
        "Ask the host for a new one."
    )

    # --- A second link, revoked before anyone used it: Cat is told it was withdrawn.
    host.get_by_label("People it can seat").fill("1")
    host.get_by_role("button", name="Invite a speaker").click()
    expect(host.locator("#invite-status")).to_contain_text("it seats 1 person")
    second_url = host.get_by_label("Speaker invite link").input_value()
    second = host.locator("#invite-links li").filter(has_text="Speaker link #2")
    expect(second).to_contain_text("0 of 1 used")
    host.get_by_role("button", name="Revoke Speaker link #2").click()
    expect(second).to_contain_text("revoked")
    expect(host.locator("#invite-status")).to_contain_text("Speaker link #2 is revoked")
    expect(host.get_by_role("button", name="Revoke Speaker link #2")).to_have_count(0)
    screenshots(host, "invite-links-console")
    open_invite(cat, second_url, None)
    expect(cat.locator("#gate-text")).to_have_text(
        "This invite link was withdrawn by the host. Ask the host for a new one."
    )

    # --- The host removes Ann; her old link no longer seats her, and she is told why.
    _, ann, ann_errors = people[0]
    ann_id = ann.evaluate("() => fetch('/api/auth/me').then((r) => r.json())")["user_id"]
    removed = host.request.post(f"{server.url}/api/spaces/{space_id}/members/{ann_id}/remove")
    assert removed.status == 204, removed.text()
    expect(host.locator("#roster")).not_to_contain_text("Ann")
    open_invite(ann, url, None)
    expect(ann.locator("#gate-text")).to_have_text(
        "A host took you off this stage, so invite links no longer seat you here. "
        "Raise your hand to ask to come back."
    )

    # The refusals show in the browsers' consoles as failed requests (403), and only those.
    assert host_errors == [], host_errors
    assert [e for e in ann_errors if "403" not in e] == [], ann_errors
    for context, _, _ in people:
        context.close()
    cat_context.close()
    host_context.close()

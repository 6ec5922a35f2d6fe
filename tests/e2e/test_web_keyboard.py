"""Keyboard only: every control of each page is reached with Tab and shows where the focus is;
dialogs keep the focus inside and close on Escape; Enter and Space do what a click does."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import ARTIFACTS, Server
from tests.e2e.test_browser import CHROMIUM, FLAGS, create_space, new_person, sign_up

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed"),
]

# What has the focus: a stable key per element, its accessible-ish name, whether a focus
# indicator is drawn (an outline or a box shadow) and whether it sits inside an open dialog.
FOCUSED = """() => {
    const el = document.activeElement;
    if (!el || el === document.body || el === document.documentElement) return null;
    window.__keys = window.__keys || new WeakMap();
    window.__next = window.__next || 1;
    if (!window.__keys.has(el)) window.__keys.set(el, window.__next++);
    const style = getComputedStyle(el);
    const outline = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0;
    const label = el.labels && el.labels.length ? el.labels[0].textContent : '';
    const name = (el.getAttribute('aria-label') || label || el.textContent || el.id || '')
        .replace(/\\s+/g, ' ').trim();
    const box = el.getBoundingClientRect();
    return {
        key: window.__keys.get(el),
        tag: el.tagName.toLowerCase(),
        name,
        ring: outline || style.boxShadow !== 'none',
        visible: box.width > 0 && box.height > 0,
        inDialog: Boolean(el.closest('dialog[open]')),
    };
}"""


@pytest.fixture
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(exist_ok=True)  # for the screenshots of dialogs
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=[*FLAGS, "--use-fake-device-for-media-stream"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


def tab_through(page: Page, limit: int = 80) -> list[dict[str, Any]]:
    """Press Tab until the focus comes back to an element seen already; what was focused, in order."""
    seen: list[dict[str, Any]] = []
    keys: set[int] = set()
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = page.evaluate(FOCUSED)
        if now is None:
            continue  # the document itself, between the last control and the first
        if now["key"] in keys:
            return seen
        keys.add(now["key"])
        seen.append(now)
    raise AssertionError(f"Tab never came back round in {limit} presses: {seen}")


def check_reached(order: list[dict[str, Any]], expected: list[str]) -> None:
    names = [f["name"] for f in order]
    missing = [name for name in expected if not any(name in n for n in names)]
    assert not missing, f"never reached with Tab: {missing}; the order was {names}"
    unseen = [f["name"] for f in order if not f["ring"] or not f["visible"]]
    assert not unseen, f"focused without a visible focus indicator: {unseen}"


def focus_on(page: Page, name: str, limit: int = 80) -> None:
    """Tab (never click) until the control named `name` has the focus."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        now = page.evaluate(FOCUSED)
        if now is not None and name in now["name"]:
            return
    raise AssertionError(f"Tab never reached {name!r}")


def test_the_home_page_by_keyboard(server: Server, browser: Browser) -> None:
    context, page, errors = new_person(browser, microphone=False)
    page.goto(f"{server.url}/")
    expect(page.get_by_role("heading", name="Who are you?")).to_be_visible()
    check_reached(
        tab_through(page),
        ["townhall", "Guest", "Sign in", "Create account", "Your name", "Continue as guest"],
    )
    # Space on a segmented button switches the form; Enter submits a form.
    focus_on(page, "Create account")
    page.keyboard.press("Space")
    expect(page.locator("#signup-form")).to_be_visible()
    expect(page.locator("#signup-username")).to_be_focused()
    focus_on(page, "Guest")
    page.keyboard.press("Enter")
    expect(page.locator("#guest-name")).to_be_focused()
    page.keyboard.type("Kit")
    page.keyboard.press("Enter")
    expect(page.locator("#who")).to_contain_text("Kit")

    check_reached(
        tab_through(page),
        ["townhall", "Sign out", "Title", "Who can find it", "Schedule for later", "Start a Space"],
    )
    focus_on(page, "Schedule for later")
    page.keyboard.press("Space")
    expect(page.get_by_label("Starts at (your local time)")).to_be_visible()
    assert errors == [], errors
    context.close()


def test_the_listener_page_by_keyboard_with_its_name_dialog(
    server: Server, browser: Browser
) -> None:
    host_context, host, _ = new_person(browser, microphone=False)
    sign_up(host, server, "Hana")
    space_id = create_space(host, server, "Keys")

    context, page, errors = new_person(browser, microphone=False)
    page.goto(f"{server.url}/s/{space_id}")
    expect(page.locator("#space-state")).to_have_text("Starting soon")
    expect(page.get_by_role("button", name="Play")).to_be_enabled()
    check_reached(
        tab_through(page),
        ["townhall", "Share", "Play", "Volume", "React: Applause", "React: Thanks", "Raise hand"],
    )

    # Enter on "Raise hand" asks for a name in a modal dialog that keeps the focus inside...
    focus_on(page, "Raise hand")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Your name")).to_be_focused()
    inside = []
    for _ in range(8):
        page.keyboard.press("Tab")
        now = page.evaluate(FOCUSED)
        if now is not None:
            inside.append(now)
    assert inside, "Tab left the dialog for the page behind it"
    assert all(f["inDialog"] for f in inside), inside
    assert all(f["ring"] for f in inside), inside
    assert {"Continue as guest", "Cancel"} <= {f["name"] for f in inside}, inside
    page.screenshot(path=str(ARTIFACTS / "keyboard-listener-name-dialog.png"))
    # ...and Escape closes it without raising the hand; the focus goes back to the button.
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("button", name="Raise hand")).to_be_focused()
    expect(page.locator("#hand-status")).not_to_contain_text("Your hand is up")

    # Space opens it again; a name and Enter raise the hand.
    page.keyboard.press("Space")
    expect(dialog).to_be_visible()
    page.keyboard.type("Kim")
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    expect(page.locator("#hand-status")).to_contain_text("Your hand is up")
    # A reaction by keyboard.
    focus_on(page, "React: Love")
    page.keyboard.press("Enter")
    expect(page.locator("#react-status")).to_have_text("You reacted: Love.")

    assert errors == [], errors
    context.close()
    host_context.close()


def test_the_host_console_by_keyboard_with_its_confirmations(
    server: Server, browser: Browser
) -> None:
    host_context, host, host_errors = new_person(browser, microphone=True)
    sign_up(host, server, "Hana")
    space_id = create_space(host, server, "Console keys")
    listener_context, listener, _ = new_person(browser, microphone=False)
    listener.goto(f"{server.url}/s/{space_id}")
    listener.get_by_role("button", name="Raise hand").click()
    dialog = listener.get_by_role("dialog")
    dialog.get_by_label("Your name").fill("Kim")
    dialog.get_by_role("button", name="Continue as guest").click()
    expect(listener.locator("#hand-status")).to_contain_text("Your hand is up")

    host.goto(f"{server.url}/s/{space_id}/stage")
    expect(host.locator("#role")).to_have_text("Host")
    expect(host.locator("#hands")).to_contain_text("Kim")
    host.wait_for_function("() => window.townhall.eventsConnected")
    check_reached(
        tab_through(host),
        [
            "townhall",
            "Start talking",
            "Go live",
            "End Space",
            "Delay in seconds",
            "Set delay",
            "People it can seat",
            "Works for",
            "Invite a speaker",
            "Invite a co-host",
            "Link listeners see under the title",
            "Pin link",
            "Bring Kim on stage",
            "Decline Kim",
            "Remove Kim from the Space",
            "Ban Kim",
            "Listener link",
            "Copy link",
        ],
    )

    # Enter on "Invite a speaker" puts the focus on the new link, ready to copy.
    focus_on(host, "Invite a speaker")
    host.keyboard.press("Enter")
    expect(host.get_by_label("Speaker invite link")).to_be_focused()
    expect(host.get_by_label("Speaker invite link")).to_have_value(re.compile("#invite="))

    # "Ban Kim" asks first, in a modal dialog: the focus starts on Cancel, stays inside, and
    # Escape says no.
    focus_on(host, "Ban Kim")
    host.keyboard.press("Enter")
    confirm = host.get_by_role("dialog")
    expect(confirm).to_contain_text("Ban Kim?")
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    inside = []
    for _ in range(5):
        host.keyboard.press("Tab")
        now = host.evaluate(FOCUSED)
        if now is not None:
            inside.append(now)
    assert inside, "Tab left the dialog for the page behind it"
    assert all(f["inDialog"] and f["ring"] for f in inside), inside
    host.screenshot(path=str(ARTIFACTS / "keyboard-host-ban-dialog.png"))
    host.keyboard.press("Escape")
    expect(confirm).to_be_hidden()
    expect(host.locator("#hands")).to_contain_text("Kim")
    expect(host.get_by_role("button", name="Ban Kim")).to_be_focused()

    # Space on "Bring Kim on stage" accepts the hand; the focus stays in the queue's card.
    focus_on(host, "Bring Kim on stage")
    host.keyboard.press("Space")
    expect(host.locator("#roster")).to_contain_text("Kim")
    expect(host.get_by_role("heading", name="Raised hands")).to_be_focused()

    # Enter on "Go live": ON AIR, and the focus moves on to what replaced the button.
    focus_on(host, "Go live")
    host.keyboard.press("Enter")
    expect(host.locator("#air")).to_contain_text("ON AIR")
    expect(host.get_by_role("button", name="End Space")).to_be_focused()

    # "End Space" asks too: Escape takes the question back, Enter on "Yes" ends the Space.
    host.keyboard.press("Enter")
    expect(host.get_by_role("button", name="Cancel")).to_be_focused()
    host.keyboard.press("Escape")
    expect(host.get_by_role("button", name="Yes, end the Space")).to_be_hidden()
    expect(host.get_by_role("button", name="End Space")).to_be_focused()
    host.keyboard.press("Space")
    host.keyboard.press("Shift+Tab")
    expect(host.get_by_role("button", name="Yes, end the Space")).to_be_focused()
    host.keyboard.press("Enter")
    expect(host.locator("#air")).to_contain_text("ENDED")

    assert host_errors == [], host_errors
    listener_context.close()
    host_context.close()

"""The listener page of a private Space: opened with its invite link it plays the stage (the
speaker's tone, measured by the page's own Web Audio analyser) from the Space's capability URLs
only; opened without the code, or with the code the host has since replaced, it says there is no
such Space and fetches no audio."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import Proc, Server
from tests.e2e.polling import poll_page
from tests.e2e.test_browser import CHROMIUM, FLAGS, new_person, sign_up
from tests.e2e.test_private_streams import private_space
from townhall.harness import wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed"),
]

TONE_HZ = 440.0
HEARD_DB = -50.0
DEADLINE_S = 30.0


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def ears(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(
        "(hz) => ({ tone: window.townhall.levelAt(hz), state: window.townhall.state })", TONE_HZ
    )
    return result


def test_the_invite_link_plays_a_private_space_and_nothing_else_does(
    server: Server, speakers: Callable[..., Proc], browser: Browser
) -> None:
    space = private_space(server, speakers)
    capability = httpx.URL(space.playlist).path.removesuffix("index.m3u8")

    context, page, errors = new_person(browser, microphone=False)
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(httpx.URL(request.url).path))
    page.goto(f"{server.url}/s/{space.id}?code={space.code}")
    play = page.locator("#play")
    expect(play).to_be_enabled(timeout=20_000)
    play.click()
    poll_page(
        page,
        ears,
        "the private Space's tone on the listener page",
        lambda s: s["tone"] is not None and s["tone"] > HEARD_DB,
        DEADLINE_S,
    )
    media = [path for path in fetched if path.startswith("/live/")]
    assert media, fetched
    assert all(path.startswith(capability) for path in media), media
    assert errors == [], errors

    # The host makes a new listener link: the page playing the old one stops and says why (it
    # once said "This Space has ended", which was not true, and looked for a replay).
    server.call("POST", f"/api/spaces/{space.id}/rotate-invite", space.host)
    expect(page.locator("#space-state")).to_have_text("Link replaced", timeout=20_000)
    expect(page.locator("#status")).to_have_text(
        "This listener link no longer works: the host made a new one. Ask the host for it."
    )
    expect(page.get_by_role("heading", level=1)).to_have_text("Board")
    expect(page.get_by_role("button", name="Play")).to_be_hidden()
    context.close()

    # Without the code, and with the code after the host replaced it: no such Space, no audio.
    for url in (f"{server.url}/s/{space.id}", f"{server.url}/s/{space.id}?code={space.code}"):
        context, page, _ = new_person(browser, microphone=False)
        fetched.clear()
        page.on("request", lambda request: fetched.append(httpx.URL(request.url).path))
        page.goto(url)
        expect(page.locator("#space-state")).to_have_text("Not found", timeout=20_000)
        assert not [path for path in fetched if path.startswith("/live/")], fetched
        context.close()


def test_the_host_makes_a_new_listener_link_from_the_console(
    server: Server, browser: Browser
) -> None:
    context, host, errors = new_person(browser, microphone=True)
    sign_up(host, server, "Hana")
    made = host.request.post(
        f"{server.url}/api/spaces", data={"title": "Board", "visibility": "private"}
    )
    assert made.status == 201, made.text()
    created: dict[str, Any] = made.json()
    space_id, old_link = created["space"]["id"], created["links"]["listen"]

    host.goto(f"{server.url}/s/{space_id}/stage")
    expect(host.locator("#role")).to_have_text("Host")
    link = host.locator("#listen-link")
    expect(link).to_have_value(old_link)
    host.get_by_role("button", name="New listener link").click()
    host.get_by_role("dialog").get_by_role("button", name="Yes, make a new link").click()
    expect(host.locator("#rotate-status")).to_contain_text("the old one no longer works")
    new_link = link.input_value()
    assert new_link != old_link
    assert "?code=" in new_link
    old_code = httpx.URL(old_link).params["code"]
    new_code = httpx.URL(new_link).params["code"]
    snapshot = f"{server.url}/api/spaces/{space_id}/snapshot"
    # A node stops taking the old code within about a second (its snapshot is built once a
    # second, with the code it was built for): wait for that, never longer than a few seconds.
    wait_until(
        lambda: httpx.get(snapshot, params={"code": old_code}, timeout=15).status_code == 404,
        10,
        "the old listener link to stop working",
    )
    assert httpx.get(snapshot, params={"code": new_code}, timeout=15).status_code == 200
    assert errors == [], errors
    context.close()

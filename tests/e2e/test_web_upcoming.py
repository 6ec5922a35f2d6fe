"""The listener page of a Space that has not started, in real Chromium on a real server: the start
in the viewer's time zone with a countdown, Remind me by email (the mails arrive at an SMTP server
on loopback), Add to calendar, a new start time shown as the host changes it, and the news in the
page when it goes on air."""

from __future__ import annotations

import datetime
import re
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.test_browser import CHROMIUM, DESKTOP, collect_errors, screenshots, sign_up
from tests.smtp_inbox import Inbox, smtp_env
from townhall.harness import start_server, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed"),
]

TOKYO = datetime.timezone(datetime.timedelta(hours=9))  # no daylight saving time
PARIS = ZoneInfo("Europe/Paris")


def test_a_listener_sees_when_it_starts_sets_a_reminder_and_hears_of_changes(
    tmp_path: Path, smtp: tuple[Inbox, int], browser: Browser
) -> None:
    inbox, port = smtp
    server = start_server(tmp_path / "data", smtp_env(port))
    try:
        host_context = browser.new_context(viewport=DESKTOP, timezone_id="Europe/Paris")
        host = host_context.new_page()
        sign_up(host, server, "Hana")
        start = float(int(time.time()) // 60 * 60 + 2 * 3600)
        made = host.request.post(
            f"{server.url}/api/spaces", data={"title": "Launch day", "scheduled_start": start}
        )
        assert made.status == 201, made.text()
        space_id = made.json()["space"]["id"]

        context = browser.new_context(viewport=DESKTOP, timezone_id="Asia/Tokyo")
        page = context.new_page()
        errors = collect_errors(page)
        sign_up(page, server, "Ada")
        page.goto(f"{server.url}/s/{space_id}")
        card = page.locator("#upcoming")
        expect(card).to_be_visible()
        tokyo = datetime.datetime.fromtimestamp(start, TOKYO)
        starts = page.locator("#starts-at")
        expect(starts).to_contain_text(tokyo.strftime("%-d"))
        expect(starts).to_contain_text("Asia/Tokyo")
        expect(starts).to_contain_text(f"{tokyo.hour % 12 or 12}:{tokyo.minute:02d}")
        expect(page.locator("#countdown")).to_have_text(
            re.compile(r"Starts in (1 h 5\d|2 h 0) min")
        )
        expect(page.locator("#soon")).to_be_hidden()  # no "press Play now" for a Space days away

        # Add to calendar: the link is the Space's .ics, with this start.
        href = page.locator("#calendar").get_attribute("href")
        assert href is not None
        ics = page.request.get(f"{server.url}{href}")
        [event] = icalendar.Calendar.from_ical(ics.body()).walk("VEVENT")
        assert event.decoded("DTSTART").timestamp() == start
        expect(page.locator("#host-feed")).to_be_visible()

        # Remind me by email, and 10 minutes before.
        page.get_by_label("Email me when it starts").fill("ada@example.org")
        page.get_by_label("Also 10 minutes before").check()
        page.get_by_role("button", name="Remind me").click()
        expect(page.locator("#remind-status")).to_be_visible()
        expect(page.locator("#remind-status")).to_have_text(
            "We will email ada@example.org when it starts, and 10 minutes before."
        )
        screenshots(page, "listen-upcoming")

        # The host moves it in the console (in the host's own zone): the listener's page shows
        # the new time, and the mail says so.
        later = start + 1800
        host.goto(f"{server.url}/s/{space_id}/stage")
        details = host.locator("#edit-form")
        expect(details.get_by_label("Title")).to_have_value("Launch day")
        in_paris = datetime.datetime.fromtimestamp(later, PARIS).strftime("%Y-%m-%dT%H:%M")
        details.get_by_label("Starts (your time)").fill(in_paris)
        details.get_by_role("button", name="Save details").click()
        expect(host.locator("#edit-status")).to_have_text(
            "Saved. Everyone who asked to be reminded by email or push is told of the new time."
        )
        screenshots(host, "stage-edit-details")
        new_time = datetime.datetime.fromtimestamp(later, TOKYO)
        expect(starts).to_contain_text(f"{new_time.hour % 12 or 12}:{new_time.minute:02d}")
        wait_until(lambda: len(inbox.messages) == 1, 30, "the mail with the new time")
        assert inbox.subjects("ada@example.org") == ["New time: Launch day"]

        # The host brings it forward to open it now (a green room opens 30 min ahead at most).
        soon = host.request.patch(
            f"{server.url}/api/spaces/{space_id}", data={"scheduled_start": time.time() + 900}
        )
        assert soon.status == 200, soon.text()
        expect(page.locator("#countdown")).to_have_text(re.compile(r"Starts in 1[45] min"))
        wait_until(lambda: len(inbox.messages) == 2, 30, "the mail with the second new time")

        # On air: the page says so, and the reminder mail arrives.
        for step in ("open", "go-live"):
            r = host.request.post(f"{server.url}/api/spaces/{space_id}/{step}")
            assert r.status == 200, r.text()
        expect(card).to_be_hidden()
        expect(page.locator("#announce")).to_have_text(
            "“Launch day” is on air now. Press Play to listen."
        )
        wait_until(lambda: len(inbox.messages) == 3, 30, "the reminder")
        assert inbox.subjects("ada@example.org")[2] == "Live now: Launch day"
        assert errors == []
        context.close()
        host_context.close()
    finally:
        code = server.proc.stop()
    assert code == 0, server.proc.output()

"""A reminder by Web Push, as far as Chromium can be driven here: the listener page offers to
notify this browser and registers the push worker; the server (`townhall serve`) sends the
reminder to a push service on loopback, encrypted for a subscription the test holds the keys
of; and the message it sent, handed to Chromium's push worker through the DevTools protocol,
becomes a notification that leads to the Space.

What this does not cover: Chromium's own PushManager.subscribe refuses outright in a Playwright
context (an off-the-record profile: "Chrome currently does not support the Push API in incognito
mode"), and in a normal profile would need its vendor's push service, which cannot be reached
here. So the subscription the server pushes to is the test's (the page's attempt fails and the
page says so, keeping the reminder), and Chromium decrypting a push from a real push service is
not exercised; nor is a click on the notification (headless Chromium shows none to click): the
test checks the click target the worker stored with it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.test_browser import CHROMIUM, DESKTOP, collect_errors, sign_up
from tests.push_service import PushService, Receiver
from townhall.harness import start_server, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed"),
]


NOTIFICATIONS = """async () => {
  const registration = await navigator.serviceWorker.ready;
  const shown = await registration.getNotifications();
  return shown.map((n) => ({ title: n.title, body: n.body, tag: n.tag, url: n.data && n.data.url }));
}"""


def test_the_push_worker_shows_the_servers_reminder_and_leads_to_the_space(
    tmp_path: Path, browser: Browser, service: PushService
) -> None:
    server = start_server(tmp_path / "data", {"TOWNHALL_PUSH_ALLOW_LOOPBACK_HTTP": "1"}, within=90)
    try:
        host_context = browser.new_context(viewport=DESKTOP)
        host = host_context.new_page()
        sign_up(host, server, "Hana")
        made = host.request.post(
            f"{server.url}/api/spaces",
            data={"title": "Launch day", "scheduled_start": time.time() + 900},
        )
        assert made.status == 201, made.text()
        space_id = made.json()["space"]["id"]

        context = browser.new_context(viewport=DESKTOP)
        context.grant_permissions(["notifications"], origin=server.url)
        page = context.new_page()
        errors = collect_errors(page)
        sign_up(page, server, "Ada")
        page.goto(f"{server.url}/s/{space_id}")
        page.get_by_label("Notify this browser when it starts").check()
        page.get_by_role("button", name="Remind me").click()
        # The worker is registered for the whole site; subscribing needs Chromium's own push
        # service, out of reach here, and the page says the reminder stands anyway.
        status = page.locator("#remind-status")
        expect(status).to_contain_text("could not reach its push service", timeout=30_000)
        expect(status).to_contain_text("keep this page open")
        worker = page.evaluate(
            "navigator.serviceWorker.ready.then((r) => [r.scope, r.active.scriptURL])"
        )
        assert worker == [f"{server.url}/", f"{server.url}/push-worker.js"]

        # The server pushes to a subscription whose keys the test holds (a browser's, as far as
        # the server can tell), for this person's reminder.
        receiver = Receiver(service.endpoint("ada"))
        subscribed = page.request.post(
            f"{server.url}/api/push/subscriptions", data=receiver.subscription()
        )
        assert subscribed.status == 201, subscribed.text()
        reminded = page.request.post(
            f"{server.url}/api/spaces/{space_id}/remind", data={"push": True}
        )
        assert reminded.status == 204, reminded.text()
        for step in ("open", "go-live"):
            r = host.request.post(f"{server.url}/api/spaces/{space_id}/{step}")
            assert r.status == 200, r.text()
        wait_until(lambda: len(service.to("ada")) == 1, 30, "the reminder push")
        payload = receiver.decrypt(service.to("ada")[0].body).decode()
        assert json.loads(payload)["title"] == "Live now: Launch day"

        # What the server sent, delivered to this page's worker as its push service would.
        cdp = context.new_cdp_session(page)
        registrations: list[dict[str, Any]] = []
        cdp.on(
            "ServiceWorker.workerRegistrationUpdated",
            lambda event: registrations.extend(event["registrations"]),
        )
        cdp.send("ServiceWorker.enable")

        def registered() -> bool:
            page.evaluate("0")  # the sync API takes in DevTools events during its own calls
            return any(r["scopeURL"] == f"{server.url}/" for r in registrations)

        wait_until(
            registered,
            15,
            "the worker's registration in DevTools",
        )
        [registration] = [r for r in registrations if r["scopeURL"] == f"{server.url}/"][:1]
        cdp.send(
            "ServiceWorker.deliverPushMessage",
            {
                "origin": server.url,
                "registrationId": registration["registrationId"],
                "data": payload,
            },
        )
        wait_until(lambda: len(page.evaluate(NOTIFICATIONS)) > 0, 15, "the notification")
        [shown] = page.evaluate(NOTIFICATIONS)
        assert shown == {
            "title": "Live now: Launch day",
            "body": "“Launch day” is on air now.",
            "tag": f"townhall-{space_id}",
            "url": f"{server.url}/s/{space_id}",
        }
        incognito = "does not support the Push API in incognito mode"
        assert [e for e in errors if incognito not in e] == []
        context.close()
        host_context.close()
    finally:
        code = server.proc.stop()
    assert code == 0, server.proc.output()

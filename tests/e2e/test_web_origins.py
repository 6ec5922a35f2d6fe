"""Real Chromium against the real server: a page on another port of the same host (the same
*site*, so the Lax session cookie goes along) cannot act with a signed-in person's cookie, and
sign-in's `next` never leaves the site."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import Server
from townhall.harness import CHROMIUM

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed"),
]


class Attacker:
    """A site on another loopback port serving one page: whatever HTML the test sets."""

    def __init__(self) -> None:
        self.html = ""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = owner.html.encode()
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def attacker() -> Iterator[Attacker]:
    site = Attacker()
    yield site
    site.close()


def api(page: Page, method: str, path: str, body: object = None) -> tuple[int, object]:
    """A call the site's own page makes (same origin, the session cookie as identity)."""
    result = page.evaluate(
        """async ([method, path, body]) => {
            const init = { method, credentials: 'same-origin', headers: {} };
            if (body !== null) {
                init.body = JSON.stringify(body);
                init.headers['content-type'] = 'application/json';
            }
            const response = await fetch(path, init);
            const text = await response.text();
            return [response.status, text ? JSON.parse(text) : null];
        }""",
        [method, path, body],
    )
    return int(result[0]), result[1]


def test_another_ports_page_cannot_end_a_signed_in_hosts_space(
    server: Server, browser: Browser, attacker: Attacker
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url + "/")
    # The site's own page: signs in by cookie, creates a Space and puts it on air.
    status, _ = api(page, "POST", "/api/auth/guest", {"display_name": "Hana"})
    assert status == 201
    status, created = api(page, "POST", "/api/spaces", {"title": "Mine"})
    assert status == 201, created
    assert isinstance(created, dict)
    space_id = created["space"]["id"]
    status, _ = api(page, "POST", f"/api/spaces/{space_id}/go-live")
    assert status == 200

    session = {c["name"]: c["value"] for c in context.cookies(server.url)}

    def space_state() -> str:
        """As the host sees it (fresh, not the anonymous once-a-second answer)."""
        got = httpx.get(f"{server.url}/api/spaces/{space_id}", cookies=session, timeout=10)
        return str(got.json()["space"]["state"])

    assert space_state() == "live"
    # The other port's page: a no-cors fetch, then a plain form POST (a top-level navigation).
    target = f"{server.url}/api/spaces/{space_id}/end"
    attacker.html = f"""<!doctype html><title>cats</title>
<form id="f" method="post" action="{target}"></form>
<script>
fetch("{target}", {{method: "POST", mode: "no-cors", credentials: "include"}})
  .finally(() => document.getElementById("f").submit());
</script>"""
    page.goto(attacker.url)
    page.wait_for_url(target, timeout=30_000)  # the form was posted: its answer is on screen
    assert "cross_origin" in page.content()
    assert space_state() == "live"
    # The stage's WebSocket, opened from that site's page with the cookie, is refused as well.
    attacker.html = "<!doctype html><title>more cats</title>"
    page.goto(attacker.url)
    closed = page.evaluate(
        """(url) => new Promise((resolve) => {
            const socket = new WebSocket(url);
            socket.onmessage = () => resolve('opened');
            socket.onclose = () => resolve('closed');
        })""",
        f"{server.url.replace('http', 'ws')}/api/spaces/{space_id}/events",
    )
    assert closed == "closed"
    # Back on the site's own page, the same person still acts with the same cookie.
    page.goto(server.url + "/")
    status, _ = api(page, "POST", f"/api/spaces/{space_id}/end")
    assert status == 200
    assert space_state() == "ended"
    context.close()


def test_next_after_sign_in_never_leaves_the_site(server: Server, browser: Browser) -> None:
    context = browser.new_context()
    page = context.new_page()
    # The reported open redirect: the URL parser drops the tab, leaving //evil-host/x.
    page.goto(f"{server.url}/?next=/%09/evil-host/x")
    page.get_by_label("Your name").fill("Ada")
    page.get_by_role("button", name="Continue as guest").click()
    expect(page.locator("#who")).to_contain_text("Ada")
    assert page.url.startswith(f"{server.url}/")
    # What the page makes of other tricks, and of a real path on the site.
    judged = page.evaluate(
        """async (targets) => {
            const { safeNext } = await import('/static/api.js');
            return targets.map((t) => safeNext(t));
        }""",
        [
            "/\t/evil-host/x",
            "/\n/evil-host/x",
            "//evil-host/x",
            "/\\evil-host/x",
            "/\\\\evil-host",
            "https://evil-host/x",
            "javascript:alert(1)",
            "/s/abcdefghij?code=x#invite=y",
        ],
    )
    assert judged == [None] * 7 + ["/s/abcdefghij?code=x#invite=y"]
    context.close()

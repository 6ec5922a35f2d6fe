"""A clip's share page as a link preview sees it: one plain GET, no script run, the meta tags read.

The Space is created with the CLI (`townhall spaces create --record`) against a real server, put on
air, clipped by a listener; then the page is fetched the way a chat app's crawler fetches a pasted
link. Titles and names are what people typed, so they carry markup that must stay text.
"""

from __future__ import annotations

import json
import time
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from tests.conftest import Server, wait_until
from townhall import cli
from townhall.delivery.storage import expire

pytestmark = pytest.mark.e2e

CRAWLER = {
    "User-Agent": "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"
}
TITLE = '<script>alert("owned")</script> Town & "hall"'
HOST = "Hana <b>bold</b>"


class Preview(HTMLParser):
    """What a link-preview crawler reads: <title>, <meta> tags, and which scripts the page has."""

    def __init__(self) -> None:
        super().__init__()
        self.meta: dict[str, str] = {}
        self.title = ""
        self.scripts: list[dict[str, str | None]] = []
        self.links: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "meta" and (found.get("property") or found.get("name")):
            self.meta[str(found.get("property") or found.get("name"))] = str(found.get("content"))
        elif tag == "title":
            self._in_title = True
        elif tag == "script":
            self.scripts.append(found)
        elif tag == "a" and found.get("href"):
            self.links.append(str(found["href"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def crawl(url: str) -> tuple[httpx.Response, Preview]:
    page = httpx.get(url, headers=CRAWLER, timeout=15, follow_redirects=False)
    preview = Preview()
    preview.feed(page.text)
    return page, preview


def created_with_the_cli(
    server: Server, token: str, capsys: pytest.CaptureFixture[str], *extra: str
) -> dict[str, Any]:
    argv = ["spaces", "--url", server.url, "--token", token, "create", TITLE, *extra]
    assert cli.main(argv) == 0
    created: dict[str, Any] = json.loads(capsys.readouterr().out)
    return created


def test_a_pasted_clip_link_previews_the_title_speakers_date_and_length_all_as_text(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    host = server.host_identity(HOST)
    created = created_with_the_cli(server, host, capsys, "--record")
    space = created["space"]
    assert space["record"] is True
    space_id = space["id"]
    # Someone else on stage: a co-host who joined with a link.
    link = server.call("POST", f"/api/spaces/{space_id}/invite-links", host, {"role": "cohost"})
    sam = server.host_identity("Sam")
    server.call("POST", f"/api/spaces/{space_id}/stage/join", sam, {"invite": link["invite"]})
    server.call("POST", f"/api/spaces/{space_id}/go-live", host)
    snapshot = server.call("GET", f"/api/spaces/{space_id}/snapshot")
    assert snapshot["space"]["record"] is True  # what every listener's REC badge reads
    wait_until(
        lambda: server.call("GET", f"/api/spaces/{space_id}/recording", host)["seconds"] >= 2,
        30,
        "two seconds recorded",
    )
    listener = server.host_identity("Lee")
    clip = server.call("POST", f"/api/spaces/{space_id}/clips", listener)
    on_air_at = time.time()

    page, preview = crawl(f"{server.url}/c/{clip['id']}")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    # The typed markup is text everywhere: no injected element, the values read back exactly.
    assert "<script>alert" not in page.text
    assert "<b>bold</b>" not in page.text
    assert preview.scripts == [{"type": "module", "src": "/static/clip.js"}]
    assert preview.meta["og:title"] == TITLE
    assert preview.meta["twitter:title"] == TITLE
    assert preview.title == f"{TITLE} · a clip · townhall"
    seconds = round(clip["seconds"])
    when = time.gmtime(on_air_at)
    day = f"{when.tm_mday} {time.strftime('%B %Y', when)}"
    description = preview.meta["og:description"]
    assert description.startswith(
        f"A {seconds} s clip from “{TITLE}” with {HOST} and Sam, on air {day}"
    )
    assert preview.meta["description"] == description == preview.meta["twitter:description"]
    assert preview.meta["twitter:card"] == "summary"
    assert preview.meta["og:url"] == f"{server.url}/c/{clip['id']}"
    assert preview.meta["robots"] == "index"  # a public Space's clip
    assert f"/s/{space_id}" in preview.links  # "Listen to the Space"
    # The preview's audio is the clip itself, at an absolute URL a crawler can fetch.
    audio = httpx.get(preview.meta["og:audio"], headers=CRAWLER, timeout=15)
    assert audio.status_code == 200
    assert audio.headers["content-type"] == preview.meta["og:audio:type"] == "audio/mp4"
    assert audio.content == httpx.get(clip["url"], timeout=15).content

    # A clip made before clips had cards still has a page that plays, saying less.
    card = server.data_dir / "recordings" / space_id / "clips" / f"{clip['id']}.json"
    card.unlink()
    page, preview = crawl(f"{server.url}/c/{clip['id']}")
    assert page.status_code == 200
    assert preview.meta["og:title"] == "A clip from a townhall Space"
    assert preview.meta["robots"] == "noindex"
    assert httpx.get(f"{server.url}/c/{space_id}-zzzzzzzzzzzz", timeout=15).status_code == 404


def test_a_private_spaces_clip_page_is_not_indexed_and_links_nowhere_private(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    host = server.host_identity("Host")
    space = created_with_the_cli(server, host, capsys, "--record", "--visibility", "private")
    space_id = space["space"]["id"]
    code = space["links"]["listen"].split("code=")[1]
    server.call("POST", f"/api/spaces/{space_id}/go-live", host)
    wait_until(
        lambda: server.call("GET", f"/api/spaces/{space_id}/recording", host)["seconds"] >= 1,
        30,
        "a second recorded",
    )
    clip = server.call("POST", f"/api/spaces/{space_id}/clips?code={code}", host)
    # Its link carries the clip's key; the clip id alone opens nothing (not even the title).
    assert clip["page"].startswith(f"{server.url}/c/{clip['id']}?key=")
    bare = httpx.get(f"{server.url}/c/{clip['id']}", headers=CRAWLER, timeout=15)
    assert bare.status_code == 404
    assert "Town" not in bare.text
    page, preview = crawl(clip["page"])
    assert page.status_code == 200
    assert preview.meta["robots"] == "noindex"
    assert not any(link.startswith("/s/") for link in preview.links)
    assert code not in page.text
    assert preview.meta["og:url"] == clip["page"]  # a shared preview links to what opens
    assert httpx.get(preview.meta["og:audio"], timeout=15).status_code == 200

    # Once retention deleted the recording, the page says the clip went with it.
    expire(server.data_dir / "recordings", space_id, time.time())
    gone = httpx.get(clip["page"], headers=CRAWLER, timeout=15)
    assert gone.status_code == 410
    assert "deleted with its recording" in gone.text

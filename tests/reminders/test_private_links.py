"""Reminders of a private Space: the link in a mail and in a push opens the Space for whoever asked
with its invite link, and for nobody else; once the host replaces the invite link, no reminder
hands out the new code to those who held only the old one, or sends the dead old one. Real SMTP
and a real push service on loopback, real records, the real API, the real senders."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from tests.api.test_control_api import Person, signup
from tests.push_service import PushService, Receiver
from tests.smtp_inbox import Inbox, smtp_env
from townhall.config import Config, load
from townhall.control_plane import (
    ControlPlane,
    control_plane_app,
    open_control_plane,
    push_sender,
    reminder_sender,
)
from townhall.reminders.notices import REPLACED
from townhall.reminders.push_sender import PushSender
from townhall.reminders.sender import ReminderSender

BASE = "https://townhall.test"


@pytest.fixture
def config(tmp_path: Path, smtp: tuple[Inbox, int]) -> Config:
    env = {
        **smtp_env(smtp[1]),
        "TOWNHALL_SMTP_RATE": "1000",
        "TOWNHALL_PUSH_ALLOW_LOOPBACK_HTTP": "1",
    }
    return load(env, data_dir=tmp_path / "data", public_url=BASE)


@pytest.fixture
def client(config: Config) -> Iterator[TestClient]:
    with TestClient(control_plane_app(config), base_url=BASE) as c:
        yield c


class Senders:
    """A server process's reminder senders, mail and push, on the same records."""

    def __init__(self, plane: ControlPlane, mail: ReminderSender, push: PushSender) -> None:
        self.plane, self.mail, self.push = plane, mail, push

    async def send(self) -> None:
        await self.mail.run_once()
        await self.push.run_once()


@pytest.fixture
async def senders(config: Config) -> AsyncIterator[Senders]:
    plane = await open_control_plane(config)
    mail = reminder_sender(config, plane)
    assert mail is not None
    made = Senders(plane, mail, push_sender(config, plane))
    yield made
    await made.push.close()
    await plane.close()


class Reader:
    """A person who asked to be reminded, by mail and on one browser."""

    def __init__(self, person: Person, email: str, browser: Receiver, name: str) -> None:
        self.person, self.email, self.browser, self.name = person, email, browser, name

    def mails(self, inbox: Inbox) -> list[tuple[str, str]]:
        return [(str(m["Subject"]), str(m.get_content())) for m in inbox.to(self.email)]

    def pushes(self, service: PushService) -> list[dict[str, str]]:
        return [json.loads(self.browser.decrypt(r.body)) for r in service.to(self.name)]


def reader(client: TestClient, service: PushService, name: str) -> Reader:
    person = signup(client, name)
    browser = Receiver(service.endpoint(name))
    assert person.post("/api/push/subscriptions", browser.subscription()).status_code == 201
    return Reader(person, f"{name}@example.org", browser, name)


def remind(who: Reader, space_id: str, invite: str | None) -> int:
    query = f"?code={invite}" if invite else ""
    body = {"email": who.email, "push": True}
    return int(who.person.post(f"/api/spaces/{space_id}/remind{query}", body).status_code)


def private_space(host: Person) -> tuple[str, str]:
    """A private scheduled Space and its invite code (from the host's own listener link)."""
    made = host.post(
        "/api/spaces",
        {"title": "Board call", "visibility": "private", "scheduled_start": time.time() + 900},
    )
    assert made.status_code == 201, made.text
    listen = made.json()["links"]["listen"]
    found = re.search(r"\?code=([\w-]+)$", listen)
    assert found, listen
    return str(made.json()["space"]["id"]), found.group(1)


def links(text: str) -> list[str]:
    return re.findall(r"https://townhall\.test/\S+", text)


def opens(client: TestClient, link: str) -> bool:
    """Whether the Space a reminder link leads to opens for a stranger holding only the link."""
    parts = urlsplit(link)
    space_id = parts.path.rsplit("/", 1)[-1]
    query = f"?{parts.query}" if parts.query else ""
    return int(client.get(f"/api/spaces/{space_id}{query}").status_code) == 200


async def test_a_private_spaces_reminders_open_it_for_whoever_asked_with_its_link(
    client: TestClient, service: PushService, senders: Senders, smtp: tuple[Inbox, int]
) -> None:
    inbox = smtp[0]
    host = signup(client, "hana")
    space_id, invite = private_space(host)
    ada = reader(client, service, "ada")
    assert remind(ada, space_id, None) == 404  # no link, no Space: nothing to be reminded of
    assert remind(ada, space_id, invite) == 204

    later = time.time() + 1500
    moved = client.patch(
        f"/api/spaces/{space_id}", json={"scheduled_start": later}, headers=host.headers
    )
    assert moved.status_code == 200, moved.text
    await senders.send()
    assert host.post(f"/api/spaces/{space_id}/open").status_code == 200
    assert host.post(f"/api/spaces/{space_id}/go-live").status_code == 200
    await senders.send()

    page = f"{BASE}/s/{space_id}?code={invite}"
    [(moved_subject, moved_text), (live_subject, live_text)] = ada.mails(inbox)
    assert (moved_subject, live_subject) == ("New time: Board call", "Live now: Board call")
    assert links(moved_text)[:2] == [
        page,
        f"{BASE}/api/spaces/{space_id}/calendar.ics?code={invite}",
    ]
    assert links(live_text)[0] == page
    assert [p["url"] for p in ada.pushes(service)] == [page, page]
    assert opens(client, page)
    calendar = client.get(f"/api/spaces/{space_id}/calendar.ics?code={invite}")
    assert calendar.status_code == 200
    assert f"URL:{page}" in calendar.text.replace("\r\n ", "")  # the event opens it too


async def test_a_replaced_invite_link_is_neither_resent_nor_handed_to_old_reminders(
    client: TestClient, service: PushService, senders: Senders, smtp: tuple[Inbox, int]
) -> None:
    inbox = smtp[0]
    host = signup(client, "hana")
    space_id, old = private_space(host)
    ada, bob = reader(client, service, "ada"), reader(client, service, "bob")
    assert remind(ada, space_id, old) == 204
    # A "New time" notice is queued for ada with the old code still current; it is sent after the
    # host replaced the link: what a notice carries is decided when it leaves, not when queued.
    later = time.time() + 1500
    patched = client.patch(
        f"/api/spaces/{space_id}", json={"scheduled_start": later}, headers=host.headers
    )
    assert patched.status_code == 200
    rotated = host.post(f"/api/spaces/{space_id}/rotate-invite")
    assert rotated.status_code == 200, rotated.text
    found = re.search(r"\?code=([\w-]+)$", rotated.json()["links"]["listen"])
    assert found is not None
    new = found.group(1)
    assert new != old
    assert remind(bob, space_id, old) == 404  # the old link opens nothing now
    assert remind(bob, space_id, new) == 204
    await senders.send()
    assert host.post(f"/api/spaces/{space_id}/open").status_code == 200
    assert host.post(f"/api/spaces/{space_id}/go-live").status_code == 200
    await senders.send()

    ada_mails = ada.mails(inbox)
    assert [s for s, _ in ada_mails] == ["New time: Board call", "Live now: Board call"]
    for _, text in ada_mails:
        assert old not in text, text
        assert new not in text, text
        assert links(text) == [link for link in links(text) if "unsubscribe" in link], text
        assert " ".join(REPLACED.split()) in " ".join(text.split())
    for push in ada.pushes(service):
        assert old not in push["url"], push
        assert new not in push["url"], push
    page = f"{BASE}/s/{space_id}?code={new}"
    [(bob_subject, bob_text)] = bob.mails(inbox)  # bob asked after the move: only "Live now"
    assert bob_subject == "Live now: Board call"
    assert links(bob_text)[0] == page
    assert opens(client, page)
    assert [p["url"] for p in bob.pushes(service)] == [page]

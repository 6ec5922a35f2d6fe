"""Reminders that arrive: a person asks to be reminded by email, and hears of a new start time,
of the Space going on air (once, however many processes send), and of a cancellation; one click
stops it. Real SMTP on loopback (aiosmtpd), real records, the real API."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.test_control_api import Person, code, guest, signup
from tests.smtp_inbox import Inbox, smtp_env
from townhall.config import Config, load
from townhall.control_plane import (
    ControlPlane,
    control_plane_app,
    open_control_plane,
    reminder_sender,
)
from townhall.reminders.sender import ReminderSender
from townhall.reminders.soon import SoonSweep
from townhall.spaces.model import SpaceId, UserId
from townhall.state.records import DeliveryStatus

ADA = "ada@example.org"


@pytest.fixture
def config(tmp_path: Path, smtp: tuple[Inbox, int]) -> Config:
    _, port = smtp
    env = {**smtp_env(port), "TOWNHALL_SMTP_RATE": "1000"}
    return load(env, data_dir=tmp_path / "data", public_url="https://townhall.test")


@pytest.fixture
def client(config: Config) -> Iterator[TestClient]:
    with TestClient(control_plane_app(config), base_url="https://townhall.test") as c:
        yield c


@pytest.fixture
def inbox(smtp: tuple[Inbox, int]) -> Inbox:
    return smtp[0]


class Process:
    """Another server process on the same records: its own control plane and mail sender."""

    def __init__(self, plane: ControlPlane, sender: ReminderSender) -> None:
        self.plane = plane
        self.sender = sender


@pytest.fixture
async def processes(config: Config) -> AsyncIterator[list[Process]]:
    started = []
    for _ in range(2):
        plane = await open_control_plane(config)
        sender = reminder_sender(config, plane)
        assert sender is not None
        started.append(Process(plane, sender))
    yield started
    for process in started:
        await process.plane.close()


def scheduled(host: Person, start: float, title: str = "Launch day") -> str:
    r = host.post("/api/spaces", {"title": title, "scheduled_start": start})
    assert r.status_code == 201, r.text
    return str(r.json()["space"]["id"])


def unsubscribe_link(message: object) -> str:
    header = str(message["List-Unsubscribe"])  # type: ignore[index]
    found = re.fullmatch(
        r"<(https://townhall\.test/api/reminders/unsubscribe\?token=[^>]+)>", header
    )
    assert found, header
    return found.group(1)


async def test_a_reminded_person_hears_of_a_new_time_and_of_going_live_once_and_can_unsubscribe(
    client: TestClient, inbox: Inbox, processes: list[Process]
) -> None:
    host, ada = signup(client, "hana"), signup(client, "ada")
    space_id = scheduled(host, time.time() + 900)
    assert ada.post(f"/api/spaces/{space_id}/remind", {"email": ADA}).status_code == 204

    later = time.time() + 1500
    moved = client.patch(
        f"/api/spaces/{space_id}", json={"scheduled_start": later}, headers=host.headers
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["space"]["scheduled_start"] == later

    first, second = processes
    await first.sender.run_once()
    [change] = inbox.to(ADA)
    assert change["Subject"] == "New time: Launch day"
    assert time.strftime("%H:%M UTC", time.gmtime(later)) in change.get_content()
    assert change["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert change["From"] == "townhall <reminders@townhall.test>"

    assert host.post(f"/api/spaces/{space_id}/open").status_code == 200
    assert host.post(f"/api/spaces/{space_id}/go-live").status_code == 200
    # Two processes sweep at the same moment, and again: one mail.
    await asyncio.gather(first.sender.run_once(), second.sender.run_once())
    await asyncio.gather(first.sender.run_once(), second.sender.run_once())
    assert inbox.subjects(ADA) == ["New time: Launch day", "Live now: Launch day"]
    live = inbox.to(ADA)[1]
    assert f"https://townhall.test/s/{space_id}" in live.get_content()

    # One click (RFC 8058: a POST with the form field, no cookie, no page) stops the mail.
    link = unsubscribe_link(live)
    page = client.get(link)
    assert page.status_code == 200
    assert "Stop these mails" in page.text
    assert await first.plane.records.reminders(SpaceId(space_id)) == [UserId(ada.user_id)]
    stopped = client.post(
        link,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert stopped.status_code == 200, stopped.text
    assert "no more mail" in stopped.text
    assert await first.plane.records.reminders(SpaceId(space_id)) == []
    forged = client.post(link[:-3] + "abc")
    assert forged.status_code == 400


async def test_everyone_reminded_by_email_hears_of_a_cancellation(
    client: TestClient, inbox: Inbox, processes: list[Process]
) -> None:
    host, ada, bo = signup(client, "hana"), signup(client, "ada"), signup(client, "bob")
    space_id = scheduled(host, time.time() + 3600, "Town meeting")
    ada.post(f"/api/spaces/{space_id}/remind", {"email": ADA})
    bo.post(f"/api/spaces/{space_id}/remind")  # on the page only: no mail
    assert host.post(f"/api/spaces/{space_id}/end").json()["space"]["state"] == "cancelled"
    await processes[0].sender.run_once()
    assert [m["To"] for m in inbox.messages] == [ADA]
    assert inbox.subjects(ADA) == ["Cancelled: Town meeting"]


async def test_a_refused_mail_is_tried_again_later_and_then_arrives(
    client: TestClient, inbox: Inbox, processes: list[Process]
) -> None:
    host, ada = signup(client, "hana"), signup(client, "ada")
    space_id = scheduled(host, time.time() + 3600)
    ada.post(f"/api/spaces/{space_id}/remind", {"email": ADA})
    inbox.refuse = 1
    host.post(f"/api/spaces/{space_id}/end")
    sender = processes[0].sender
    await sender.run_once()
    assert inbox.to(ADA) == []
    [mail] = await processes[0].plane.records.reminder_mail(SpaceId(space_id))
    assert mail.status is DeliveryStatus.PENDING
    assert mail.attempts == 1
    assert "451" in (mail.last_error or "")
    assert await sender.run_once() == 0  # not due yet: it waits before trying again
    sender._clock = lambda: time.time() + 60  # the retry is due ~10 s later
    await sender.run_once()
    assert inbox.subjects(ADA) == ["Cancelled: Launch day"]


async def test_the_ten_minute_warning_goes_to_those_who_asked_for_it_once(
    client: TestClient, inbox: Inbox, processes: list[Process]
) -> None:
    host, ada, bo = signup(client, "hana"), signup(client, "ada"), signup(client, "bob")
    space_id = scheduled(host, time.time() + 300)
    ada.post(f"/api/spaces/{space_id}/remind", {"email": ADA, "soon": True})
    bo.post(f"/api/spaces/{space_id}/remind", {"email": "bob@example.org"})
    # Both processes sweep for warnings at the same moment, and again, then both send: one mail.
    sweeps = [SoonSweep(p.plane.records) for p in processes]
    for _ in range(2):
        await asyncio.gather(*(sweep.run_once() for sweep in sweeps))
    await asyncio.gather(*(p.sender.run_once() for p in processes))
    await asyncio.gather(*(p.sender.run_once() for p in processes))
    assert inbox.subjects(ADA) == ["In 10 minutes: Launch day"]
    assert inbox.to("bob@example.org") == []


def test_bad_reminder_and_schedule_input_is_refused_in_sentences(client: TestClient) -> None:
    host, ada, visitor = signup(client, "hana"), signup(client, "ada"), guest(client, "Vi")
    space_id = scheduled(host, time.time() + 900)

    bad = ada.post(f"/api/spaces/{space_id}/remind", {"email": "not an address"})
    assert bad.status_code == 422
    assert bad.json()["error"] == {
        "code": "invalid_input",
        "message": "The email address does not look like an email address (name@example.org).",
        "field": "email",
    }
    refused = visitor.post(f"/api/spaces/{space_id}/remind", {"email": "vi@example.org"})
    assert refused.status_code == 403
    assert code(refused) == "guests_cannot_get_email"
    assert visitor.post(f"/api/spaces/{space_id}/remind").status_code == 204  # on the page

    def edit(body: dict[str, object]) -> object:
        return client.patch(f"/api/spaces/{space_id}", json=body, headers=host.headers)

    past = edit({"scheduled_start": time.time() - 3600})
    assert past.status_code == 422  # type: ignore[attr-defined]
    assert past.json()["error"]["code"] == "start_in_past"  # type: ignore[attr-defined]
    assert past.json()["error"]["message"] == "the start time is in the past"  # type: ignore[attr-defined]
    far = edit({"scheduled_start": time.time() + 90 * 86400})
    assert far.json()["error"]["code"] == "start_too_far_ahead"  # type: ignore[attr-defined]
    word = edit({"scheduled_start": "tomorrow"})
    assert word.json()["error"]["message"] == "The start time must be a number."  # type: ignore[attr-defined]
    not_host = client.patch(
        f"/api/spaces/{space_id}", json={"title": "Mine now"}, headers=ada.headers
    )
    assert not_host.status_code == 403

    assert host.post(f"/api/spaces/{space_id}/open").status_code == 200
    opened = edit({"scheduled_start": time.time() + 900})
    assert opened.status_code == 409  # type: ignore[attr-defined]
    assert opened.json()["error"]["code"] == "not_scheduled"  # type: ignore[attr-defined]


def test_asking_for_reminders_is_limited_per_person_and_a_server_says_it_sends_mail(
    client: TestClient,
) -> None:
    host, ada = signup(client, "hana"), signup(client, "ada")
    space_id = scheduled(host, time.time() + 900)
    assert client.get("/api/reminders/channels").json() == {
        "email": True,
        "push": True,
        "page": True,
    }
    answers = [
        ada.post(f"/api/spaces/{space_id}/remind", {"email": ADA}).status_code for _ in range(11)
    ]
    assert answers[:10] == [204] * 10
    assert answers[10] == 429


def test_a_server_without_smtp_refuses_email_reminders_in_a_sentence(tmp_path: Path) -> None:
    with TestClient(control_plane_app(load({}, data_dir=tmp_path))) as plain:
        host, ada = signup(plain, "hana"), signup(plain, "ada")
        space_id = scheduled(host, time.time() + 900)
        assert plain.get("/api/reminders/channels").json()["email"] is False
        refused = ada.post(f"/api/spaces/{space_id}/remind", {"email": ADA})
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "no_email"
        assert ada.post(f"/api/spaces/{space_id}/remind").status_code == 204

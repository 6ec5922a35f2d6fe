"""Reminders by Web Push: a person subscribes a browser and asks for a reminder by push; when the
Space goes on air (and when it moves or is called off) the browser's push service receives one
encrypted, signed message, which the browser's keys decrypt. A real push service on loopback
(tests/push_service.py), real records, the real API, two sending processes."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_control_api import Person, code, guest, signup
from tests.push_service import PushService, Receiver, origin, vapid_claims
from townhall.config import Config, ConfigError, load
from townhall.control_plane import (
    ControlPlane,
    control_plane_app,
    open_control_plane,
    push_sender,
)
from townhall.reminders.push_sender import PushSender
from townhall.reminders.soon import SoonSweep
from townhall.reminders.webpush import VapidKey
from townhall.spaces.model import UserId
from townhall.state.records import DeliveryStatus


@pytest.fixture
def config(tmp_path: Path) -> Config:
    env = {"TOWNHALL_PUSH_ALLOW_LOOPBACK_HTTP": "1"}
    return load(env, data_dir=tmp_path / "data", public_url="https://townhall.test")


@pytest.fixture
def client(config: Config) -> Iterator[TestClient]:
    with TestClient(control_plane_app(config), base_url="https://townhall.test") as c:
        yield c


class Process:
    """Another server process on the same records: its own control plane and push sender."""

    def __init__(self, plane: ControlPlane, sender: PushSender) -> None:
        self.plane = plane
        self.sender = sender


@pytest.fixture
async def processes(config: Config) -> AsyncIterator[list[Process]]:
    started = []
    for _ in range(2):
        plane = await open_control_plane(config)
        started.append(Process(plane, push_sender(config, plane)))
    yield started
    for process in started:
        await process.sender.close()
        await process.plane.close()


def scheduled(host: Person, title: str = "Launch day") -> str:
    r = host.post("/api/spaces", {"title": title, "scheduled_start": time.time() + 900})
    assert r.status_code == 201, r.text
    return str(r.json()["space"]["id"])


def subscribed(person: Person, service: PushService, name: str) -> Receiver:
    browser = Receiver(service.endpoint(name))
    r = person.post("/api/push/subscriptions", browser.subscription())
    assert r.status_code == 201, r.text
    return browser


def pushed(service: PushService, browser: Receiver, name: str) -> list[dict[str, Any]]:
    """What the browser would show, decrypted with its own keys, in order."""
    return [json.loads(browser.decrypt(r.body)) for r in service.to(name)]


async def send_all(processes: list[Process]) -> None:
    """Both processes work the outbox at the same moment, twice."""
    for _ in range(2):
        await asyncio.gather(*(p.sender.run_once() for p in processes))


async def test_a_browser_reminded_by_push_hears_the_space_is_live_once_encrypted_and_signed(
    client: TestClient, service: PushService, processes: list[Process]
) -> None:
    host, ada = signup(client, "hana"), signup(client, "ada")
    space_id = scheduled(host)
    browser = subscribed(ada, service, "ada-phone")
    assert ada.post(f"/api/spaces/{space_id}/remind", {"push": True}).status_code == 204

    assert host.post(f"/api/spaces/{space_id}/open").status_code == 200
    assert host.post(f"/api/spaces/{space_id}/go-live").status_code == 200
    await send_all(processes)

    [request] = service.to("ada-phone")
    assert json.loads(browser.decrypt(request.body)) == {
        "title": "Live now: Launch day",
        "body": "“Launch day” is on air now.",
        "url": f"https://townhall.test/s/{space_id}",
        "tag": f"townhall-{space_id}",
    }
    assert request.headers["Content-Encoding"] == "aes128gcm"
    assert request.headers["TTL"] == "3600"
    assert request.headers["Urgency"] == "high"
    assert request.headers["Topic"] == f"space-{space_id}"

    server_key = client.get("/api/push/key").json()["public_key"]
    claims = vapid_claims(request.headers["Authorization"], server_key)
    assert claims["aud"] == origin(service.endpoint("ada-phone"))
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600
    assert claims["sub"] == "https://townhall.test"
    [row] = await processes[0].plane.records.reminder_pushes()
    assert row.status is DeliveryStatus.DELIVERED


async def test_every_browser_hears_of_a_new_time_and_of_a_cancellation(
    client: TestClient, service: PushService, processes: list[Process]
) -> None:
    host, ada, vi = signup(client, "hana"), signup(client, "ada"), guest(client, "Vi")
    space_id = scheduled(host, "Town meeting")
    phone, laptop = subscribed(ada, service, "phone"), subscribed(ada, service, "laptop")
    guest_browser = subscribed(vi, service, "vi")
    ada.post(f"/api/spaces/{space_id}/remind", {"push": True})
    vi.post(f"/api/spaces/{space_id}/remind", {"push": True})  # a guest's browser is theirs
    host.post(f"/api/spaces/{space_id}/remind")  # on the page only: no push

    later = time.time() + 3600
    edit = client.patch(
        f"/api/spaces/{space_id}", json={"scheduled_start": later}, headers=host.headers
    )
    assert edit.status_code == 200
    await send_all(processes)
    assert host.post(f"/api/spaces/{space_id}/end").json()["space"]["state"] == "cancelled"
    await send_all(processes)

    for browser, name in ((phone, "phone"), (laptop, "laptop"), (guest_browser, "vi")):
        titles = [m["title"] for m in pushed(service, browser, name)]
        assert titles == ["New time: Town meeting", "Cancelled: Town meeting"], name
    assert [r.headers["Urgency"] for r in service.to("vi")] == ["normal", "normal"]
    assert len(service.received) == 6


async def test_a_browser_its_push_service_says_is_gone_is_forgotten(
    client: TestClient, service: PushService, processes: list[Process]
) -> None:
    host, ada = signup(client, "hana"), signup(client, "ada")
    space_id = scheduled(host)
    subscribed(ada, service, "old")
    ada.post(f"/api/spaces/{space_id}/remind", {"push": True})
    service.answer("old", 410)
    host.post(f"/api/spaces/{space_id}/end")
    await send_all(processes)
    records = processes[0].plane.records
    assert len(service.to("old")) == 1
    assert await records.push_subscriptions(UserId(ada.user_id)) == []
    assert await records.reminder_pushes() == []


async def test_a_busy_push_service_gets_the_push_again_after_its_retry_after(
    client: TestClient, service: PushService, processes: list[Process]
) -> None:
    host, ada = signup(client, "hana"), signup(client, "ada")
    space_id = scheduled(host)
    browser = subscribed(ada, service, "busy")
    ada.post(f"/api/spaces/{space_id}/remind", {"push": True})
    service.answer("busy", 429, {"Retry-After": "40"})
    service.answer("busy", 503)
    host.post(f"/api/spaces/{space_id}/end")
    sender, records = processes[0].sender, processes[0].plane.records

    await sender.run_once()
    [row] = await records.reminder_pushes()
    assert (row.status, row.attempts) == (DeliveryStatus.PENDING, 1)
    assert (row.last_error or "").startswith("429")
    sender._clock = lambda: time.time() + 20  # the schedule's ~10 s, but it asked for 40
    assert await sender.run_once() == 0
    sender._clock = lambda: time.time() + 45
    await sender.run_once()  # 503: once more, later
    sender._clock = lambda: time.time() + 500
    await sender.run_once()
    assert [m["title"] for m in pushed(service, browser, "busy")][-1] == "Cancelled: Launch day"
    assert len(service.to("busy")) == 3
    [row] = await records.reminder_pushes()
    assert row.status is DeliveryStatus.DELIVERED


def test_a_subscription_is_checked_strictly_and_refused_in_sentences(client: TestClient) -> None:
    ada = signup(client, "ada")
    good = Receiver("https://push.example.net/send/abc").subscription()

    def refused(change: dict[str, Any], keys: dict[str, str] | None = None) -> Any:
        body = {**good, **change, "keys": {**good["keys"], **(keys or {})}}
        r = ada.post("/api/push/subscriptions", body)
        assert r.status_code == 422, r.text
        return r.json()["error"]

    assert refused({"endpoint": "http://push.example.net/x"})["message"] == (
        "the endpoint must be an https:// URL"
    )
    assert refused({"endpoint": "https://10.1.2.3/x"})["code"] == "invalid_subscription"
    assert refused({"endpoint": "https://user@push.example.net/x"})["code"] == (
        "invalid_subscription"
    )
    assert refused({}, {"auth": "c2hvcnQ"})["message"] == "the auth secret must be 16 bytes"
    short_key = good["keys"]["p256dh"][:43]
    assert "65 bytes" in refused({}, {"p256dh": short_key})["message"]
    off_curve = "BA" + "A" * 85  # 0x04 then x = y = 0: the right length, not a point
    assert refused({}, {"p256dh": off_curve})["message"] == "the p256dh key is not on the curve"
    assert refused({"extra": 1})["code"] == "invalid_input"
    assert ada.post("/api/push/subscriptions", good).status_code == 201
    client.cookies.clear()  # the sign-up's session cookie
    anonymous = client.post("/api/push/subscriptions", json=good)
    assert anonymous.status_code == 401


async def test_a_person_keeps_their_last_ten_browsers_and_can_forget_one(
    client: TestClient, processes: list[Process]
) -> None:
    ada = signup(client, "ada")
    answers = [
        ada.post(
            "/api/push/subscriptions", Receiver(f"https://push.example.net/{n}").subscription()
        ).status_code
        for n in range(6)
    ]
    assert answers == [201] * 5 + [429]  # five at once, then one a minute
    records = processes[0].plane.records
    user = UserId(ada.user_id)
    for n in range(5, 12):
        browser = Receiver(f"https://push.example.net/{n}").subscription()
        await records.add_push_subscription(
            user,
            browser["endpoint"],
            browser["keys"]["p256dh"],
            browser["keys"]["auth"],
            time.time() + n,  # later than those subscribed over the API
        )
    kept = [s.endpoint for s in await records.push_subscriptions(user)]
    assert kept == [f"https://push.example.net/{n}" for n in range(2, 12)]

    gone = client.request(
        "DELETE",
        "/api/push/subscriptions",
        json={"endpoint": "https://push.example.net/11"},
        headers=ada.headers,
    )
    assert gone.status_code == 204
    assert len(await records.push_subscriptions(user)) == 9
    bo = signup(client, "bob")  # someone else cannot forget ada's browsers
    client.request(
        "DELETE",
        "/api/push/subscriptions",
        json={"endpoint": "https://push.example.net/10"},
        headers=bo.headers,
    )
    assert len(await records.push_subscriptions(user)) == 9


def test_the_vapid_key_is_made_once_kept_private_and_can_be_given(
    tmp_path: Path, client: TestClient, config: Config
) -> None:
    stored = config.data_dir / "vapid.key"
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600
    again = load({}, data_dir=config.data_dir)
    assert again.push.vapid_private_key == config.push.vapid_private_key
    public = client.get("/api/push/key")
    assert public.headers["Cache-Control"] == "public, max-age=3600"
    expected = VapidKey(stored.read_text(), "mailto:x@example.org").public_key_b64
    assert public.json() == {"public_key": expected}
    assert len(expected) == 87

    given = VapidKey.generate()
    env = {"TOWNHALL_VAPID_PRIVATE_KEY": given, "TOWNHALL_SMTP_HOST": "127.0.0.1"}
    env["TOWNHALL_SMTP_FROM"] = "townhall <reminders@example.org>"
    other = load(env, data_dir=tmp_path / "other")
    assert other.push.vapid_private_key == given
    assert other.push.subject == "mailto:reminders@example.org"
    assert not (tmp_path / "other" / "vapid.key").exists()
    with pytest.raises(ConfigError, match="TOWNHALL_VAPID_PRIVATE_KEY"):
        load({"TOWNHALL_VAPID_PRIVATE_KEY": "not-a-key"}, data_dir=tmp_path / "x")
    with pytest.raises(ConfigError, match="TOWNHALL_VAPID_SUBJECT"):
        load({"TOWNHALL_VAPID_SUBJECT": "ops@example.org"}, data_dir=tmp_path / "x")


def test_a_server_says_it_reminds_by_push(client: TestClient) -> None:
    assert client.get("/api/reminders/channels").json()["push"] is True
    host = signup(client, "hana")
    space_id = scheduled(host)
    r = host.post(f"/api/spaces/{space_id}/remind", {"push": "sometimes"})
    assert r.status_code == 422
    assert code(r) == "invalid_input"


async def test_the_ten_minute_warning_and_live_now_reach_each_browser_once_on_either_database(
    tmp_path: Path, database_url: str, service: PushService
) -> None:
    env = {"TOWNHALL_PUSH_ALLOW_LOOPBACK_HTTP": "1", "TOWNHALL_DATABASE_URL": database_url}
    config = load(env, data_dir=tmp_path / "data", public_url="https://townhall.test")
    planes = [await open_control_plane(config) for _ in range(2)]
    senders = [push_sender(config, plane) for plane in planes]
    try:
        with TestClient(control_plane_app(config), base_url="https://townhall.test") as client:
            host, ada, bo = signup(client, "hana"), signup(client, "ada"), signup(client, "bob")
            r = host.post(
                "/api/spaces", {"title": "Launch day", "scheduled_start": time.time() + 300}
            )
            space_id = r.json()["space"]["id"]
            phone = subscribed(ada, service, "phone")
            subscribed(bo, service, "bob")
            ada.post(f"/api/spaces/{space_id}/remind", {"push": True, "soon": True})
            bo.post(f"/api/spaces/{space_id}/remind", {"push": True})  # no warning asked for
            sweeps = [SoonSweep(plane.records) for plane in planes]
            for _ in range(2):
                await asyncio.gather(*(sweep.run_once() for sweep in sweeps))
                await asyncio.gather(*(s.run_once() for s in senders))
            assert [m["title"] for m in pushed(service, phone, "phone")] == [
                "In 10 minutes: Launch day"
            ]
            assert service.to("phone")[0].headers["TTL"] == "600"
            assert service.to("bob") == []
            host.post(f"/api/spaces/{space_id}/open")
            host.post(f"/api/spaces/{space_id}/go-live")
            for _ in range(2):
                await asyncio.gather(*(s.run_once() for s in senders))
        assert [m["title"] for m in pushed(service, phone, "phone")][1:] == ["Live now: Launch day"]
        assert len(service.to("bob")) == 1
    finally:
        for sender, plane in zip(senders, planes, strict=True):
            await sender.close()
            await plane.close()


async def test_a_browser_another_person_signs_in_on_no_longer_gets_the_first_ones_pushes(
    client: TestClient, service: PushService, processes: list[Process]
) -> None:
    host, ada, bo = signup(client, "hana"), signup(client, "ada"), signup(client, "bob")
    space_id = scheduled(host)
    shared = subscribed(ada, service, "shared")
    ada.post(f"/api/spaces/{space_id}/remind", {"push": True})
    host.post(f"/api/spaces/{space_id}/end")  # queued for ada's browser, not sent yet
    assert bo.post("/api/push/subscriptions", shared.subscription()).status_code == 201
    await send_all(processes)
    assert service.to("shared") == []
    records = processes[0].plane.records
    assert await records.push_subscriptions(UserId(ada.user_id)) == []
    [now_bobs] = await records.push_subscriptions(UserId(bo.user_id))
    assert now_bobs.endpoint == shared.endpoint

"""Add to calendar: a Space's .ics and its host's feed parse as iCalendar and carry the right
start, follow a change of the start time, and show a cancellation."""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from pathlib import Path

import icalendar
import pytest
from fastapi.testclient import TestClient

from tests.api.test_control_api import signup
from townhall.config import load
from townhall.control_plane import control_plane_app


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = control_plane_app(load({}, data_dir=tmp_path, public_url="https://townhall.test"))
    with TestClient(app, base_url="https://townhall.test") as c:
        yield c


def events(body: bytes) -> list[icalendar.Event]:
    calendar = icalendar.Calendar.from_ical(body)
    return [c for c in calendar.walk("VEVENT") if isinstance(c, icalendar.Event)]


def test_a_spaces_calendar_entry_has_its_start_and_follows_a_new_time(client: TestClient) -> None:
    host = signup(client, "hana")
    start = float(int(time.time()) + 3600)
    created = host.post("/api/spaces", {"title": "Launch day", "scheduled_start": start})
    space_id = created.json()["space"]["id"]

    r = client.get(f"/api/spaces/{space_id}/calendar.ics")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/calendar; charset=utf-8"
    [event] = events(r.content)
    assert event["SUMMARY"] == "Launch day"
    assert event.decoded("DTSTART") == datetime.datetime.fromtimestamp(start, datetime.UTC)
    assert event.decoded("DTEND") - event.decoded("DTSTART") == datetime.timedelta(hours=1)
    assert event["URL"] == f"https://townhall.test/s/{space_id}"
    uid = str(event["UID"])

    later = start + 1800
    client.patch(f"/api/spaces/{space_id}", json={"scheduled_start": later}, headers=host.headers)
    [moved] = events(client.get(f"/api/spaces/{space_id}/calendar.ics").content)
    assert moved.decoded("DTSTART") == datetime.datetime.fromtimestamp(later, datetime.UTC)
    assert str(moved["UID"]) == uid  # the same entry, updated
    assert int(moved["SEQUENCE"]) >= int(event["SEQUENCE"])


def test_a_hosts_feed_lists_their_public_spaces_and_shows_a_cancelled_one(
    client: TestClient,
) -> None:
    host = signup(client, "hana")
    soon = time.time() + 3600
    public = host.post("/api/spaces", {"title": "Open", "scheduled_start": soon}).json()
    host.post("/api/spaces", {"title": "Secret", "scheduled_start": soon, "visibility": "private"})
    called_off = host.post("/api/spaces", {"title": "Off", "scheduled_start": soon}).json()
    host.post(f"/api/spaces/{called_off['space']['id']}/end")

    r = client.get(f"/api/hosts/{host.user_id}/calendar.ics")
    assert r.status_code == 200
    calendar = icalendar.Calendar.from_ical(r.content)
    assert calendar["X-WR-CALNAME"] == "Hana on townhall"
    by_title = {str(e["SUMMARY"]): e for e in events(r.content)}
    assert set(by_title) == {"Open", "Off"}  # never a private Space
    assert by_title["Off"]["STATUS"] == "CANCELLED"
    assert by_title["Open"]["STATUS"] == "CONFIRMED"
    assert str(by_title["Open"]["UID"]).startswith(public["space"]["id"])

    assert client.get("/api/hosts/nobody/calendar.ics").status_code == 404


def test_a_private_spaces_entry_needs_its_code(client: TestClient) -> None:
    host = signup(client, "hana")
    made = host.post(
        "/api/spaces",
        {"title": "Secret", "scheduled_start": time.time() + 3600, "visibility": "private"},
    ).json()
    space_id = made["space"]["id"]
    code = made["links"]["listen"].split("code=")[1]
    assert client.get(f"/api/spaces/{space_id}/calendar.ics").status_code == 404
    assert client.get(f"/api/spaces/{space_id}/calendar.ics?code={code}").status_code == 200

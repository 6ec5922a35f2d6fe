"""Connecting stage audio is for people on the stage: everyone else is refused before any WebRTC."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.test_control_api import Person, guest, signup
from townhall.app import create_app
from townhall.config import load

OFFER_WITHOUT_AUDIO = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(load({}, data_dir=tmp_path))) as c:
        yield c


def offer(
    person: Person | None, client: TestClient, space_id: str, sdp: str = OFFER_WITHOUT_AUDIO
) -> tuple[int, str]:
    headers = person.headers if person else {}
    r = client.post(
        f"/api/spaces/{space_id}/rtc", json={"type": "offer", "sdp": sdp}, headers=headers
    )
    return r.status_code, r.json()["error"]["code"]


def test_only_stage_members_may_connect_audio(client: TestClient) -> None:
    host = signup(client, "hana")
    space_id = host.post("/api/spaces", {"title": "Stage"}).json()["space"]["id"]
    client.cookies.clear()  # a stranger: no session cookie, no bearer
    assert offer(None, client, space_id) == (401, "identity_required")
    assert offer(guest(client, "Lee"), client, space_id) == (403, "not_on_stage")
    troll = guest(client, "Troll")
    host.post(f"/api/spaces/{space_id}/members/{troll.user_id}/ban")
    assert offer(troll, client, space_id) == (403, "banned")
    assert offer(host, client, space_id, "hello, not sdp") == (400, "bad_sdp")
    assert offer(host, client, space_id) == (400, "bad_sdp")  # no audio section
    assert offer(host, client, "zzzzzzzzzz") == (404, "space_not_found")


def test_a_scheduled_space_cannot_take_audio_until_opened(client: TestClient) -> None:
    host = signup(client, "hana")
    space_id = host.post(
        "/api/spaces", {"title": "Later", "scheduled_start": time.time() + 3600}
    ).json()["space"]["id"]
    assert offer(host, client, space_id) == (409, "not_open")


def test_an_ended_space_takes_no_audio(client: TestClient) -> None:
    host = signup(client, "hana")
    space_id = host.post("/api/spaces", {"title": "Over"}).json()["space"]["id"]
    host.post(f"/api/spaces/{space_id}/end")
    assert offer(host, client, space_id) == (410, "space_cancelled")


def test_creating_a_space_starts_its_stream_off_air(client: TestClient) -> None:
    host = signup(client, "hana")
    space_id = host.post("/api/spaces", {"title": "Green room"}).json()["space"]["id"]
    playlist = client.get(f"/live/{space_id}/media.m3u8")
    assert playlist.status_code == 200
    assert "#EXT-X-PRELOAD-HINT" in playlist.text
    assert client.get("/api/health").json()["open_spaces"] == 1


def test_a_listener_object_asked_with_the_wrong_method_is_refused_in_the_apis_shape(
    client: TestClient,
) -> None:
    host = signup(client, "hana")
    space_id = host.post("/api/spaces", {"title": "Green room"}).json()["space"]["id"]
    refused = client.post(f"/live/{space_id}/media.m3u8", content=b"")
    assert refused.status_code == 405
    assert refused.json()["error"]["code"]
    missing = client.get(f"/live/{space_id}/no/such/thing/here")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"

"""Listeners' snapshot and presence; the stage's ordered, resumable event stream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.api.test_control_api import Person, guest, signup
from tests.conftest import wait_until
from townhall.config import load
from townhall.control_plane import control_plane_app
from townhall.spaces.counts import PRESENCE_TARGET, presence_sample


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(control_plane_app(load({}, data_dir=tmp_path))) as c:
        yield c


def make_space(host: Person) -> str:
    return str(host.post("/api/spaces", {"title": "Live"}).json()["space"]["id"])


def test_the_snapshot_is_public_cacheable_and_shows_the_stage(client: TestClient) -> None:
    host = signup(client, "hana")
    space_id = make_space(host)
    guest(client, "Lee").post(f"/api/spaces/{space_id}/reactions", {"emoji": "👏"})
    response = client.get(f"/api/spaces/{space_id}/snapshot")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=1"
    body = response.json()
    assert body["space"]["starting_soon"] is True
    assert body["space"]["on_air"] is False
    assert [m["display_name"] for m in body["stage"]] == ["Hana"]
    assert body["reactions"]["totals"] == {"👏": 1}
    assert body["listeners"]["presence_sample"] == 1.0


def test_a_private_space_snapshot_needs_the_code(client: TestClient) -> None:
    host = signup(client, "hana")
    created = host.post("/api/spaces", {"title": "Secret", "visibility": "private"}).json()
    space_id = created["space"]["id"]
    client.cookies.clear()  # an anonymous listener's browser, not the host's (on its stage)
    assert client.get(f"/api/spaces/{space_id}/snapshot").status_code == 404
    code = created["links"]["listen"].split("?code=")[1]
    assert client.get(f"/api/spaces/{space_id}/snapshot?code={code}").status_code == 200
    # Built and cached for someone with the code, it is still refused to someone without it.
    assert client.get(f"/api/spaces/{space_id}/snapshot").status_code == 404
    assert client.get(f"/api/spaces/{space_id}/snapshot?code=wrong").status_code == 404


def test_a_private_spaces_stage_reads_its_snapshot_signed_in_and_never_from_a_cache(
    client: TestClient,
) -> None:
    host = signup(client, "hana")
    created = host.post("/api/spaces", {"title": "Secret", "visibility": "private"}).json()
    space_id = created["space"]["id"]
    invite = host.post(f"/api/spaces/{space_id}/invite-links", {"role": "speaker"}).json()
    speaker = guest(client, "Sam")
    assert speaker.post(
        f"/api/spaces/{space_id}/stage/join", {"invite": invite["invite"]}
    ).is_success
    # A speaker is not given the invite code, and still sees who is speaking.
    mine = speaker.get(f"/api/spaces/{space_id}/snapshot")
    assert mine.status_code == 200
    assert mine.headers["cache-control"] == "private, no-store"
    assert guest(client, "Troll").get(f"/api/spaces/{space_id}/snapshot").status_code == 404
    assert client.get(f"/api/spaces/{space_id}/snapshot").status_code == 404


def test_presence_beacons_count_distinct_listeners_and_refuse_junk(client: TestClient) -> None:
    host = signup(client, "hana")
    space_id = make_space(host)
    assert (
        client.post(
            f"/api/spaces/{space_id}/presence", json={"key": "listener-key-000001"}
        ).status_code
        == 204
    )
    assert client.post(f"/api/spaces/{space_id}/presence", json={"key": "no"}).status_code == 422
    assert (
        client.post(
            f"/api/spaces/{space_id}/presence", json={"key": "bad key with spaces!"}
        ).status_code
        == 422
    )


def test_fewer_listeners_are_asked_to_beacon_as_the_audience_grows() -> None:
    assert presence_sample(100) == 1.0
    assert presence_sample(PRESENCE_TARGET * 100) == pytest.approx(0.01)


def test_stage_events_arrive_in_order_and_resume_after_a_reconnect(client: TestClient) -> None:
    host = signup(client, "hana")
    space_id = make_space(host)
    token = host.headers["Authorization"].removeprefix("Bearer ")
    with client.websocket_connect(f"/api/spaces/{space_id}/events?token={token}") as ws:
        hello = ws.receive_json()
        assert hello["type"] == "hello"
        first = ws.receive_json()
        assert (first["seq"], first["type"]) == (1, "space.created")
        host.put(f"/api/spaces/{space_id}/delay", {"seconds": 3})
        event = ws.receive_json()
        assert (event["seq"], event["type"], event["data"]["delay_s"]) == (2, "delay.set", 3)
    # Missed while disconnected: a mute of self and Go live; resuming after seq 2 gets exactly those.
    host.post(f"/api/spaces/{space_id}/members/{host.user_id}/mute")
    host.post(f"/api/spaces/{space_id}/go-live")
    with client.websocket_connect(f"/api/spaces/{space_id}/events?token={token}&after=2") as ws:
        assert ws.receive_json()["latest_seq"] == 4
        resumed = [ws.receive_json(), ws.receive_json()]
        assert [(e["seq"], e["type"]) for e in resumed] == [(3, "stage.muted"), (4, "space.state")]


def test_listeners_and_strangers_get_no_stage_events(client: TestClient) -> None:
    host = signup(client, "hana")
    space_id = make_space(host)
    listener = guest(client, "Lee")
    token = listener.headers["Authorization"].removeprefix("Bearer ")
    for url in (
        f"/api/spaces/{space_id}/events?token={token}",
        f"/api/spaces/{space_id}/events?token=forged",
    ):
        with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect(url) as ws:
            ws.receive_json()
        assert closed.value.code in (4401, 4403)


def test_resuming_against_a_log_that_started_again_gets_a_reset_not_a_gap(
    client: TestClient,
) -> None:
    host = signup(client, "hana")
    space_id = make_space(host)
    token = host.headers["Authorization"].removeprefix("Bearer ")
    with client.websocket_connect(f"/api/spaces/{space_id}/events?token={token}") as ws:
        hello = ws.receive_json()
        assert hello["log"]
    url = f"/api/spaces/{space_id}/events?token={token}&after=1&log=an-older-log"
    with client.websocket_connect(url) as ws:
        again = ws.receive_json()
        assert again["type"] == "hello"
        assert ws.receive_json() == {"type": "reset", "latest_seq": again["latest_seq"]}
    with client.websocket_connect(
        f"/api/spaces/{space_id}/events?token={token}&after=0&log={hello['log']}"
    ) as ws:
        ws.receive_json()
        assert ws.receive_json()["seq"] == 1  # same log: resumes normally


def test_the_snapshot_tells_a_removed_or_banned_listener_and_whether_the_space_is_recorded(
    client: TestClient,
) -> None:
    """A listener's page learns of its own removal or ban from the snapshot it already polls."""
    host = signup(client, "hana")
    space_id = str(
        host.post("/api/spaces", {"title": "On record", "record": True}).json()["space"]["id"]
    )
    lee, kim = guest(client, "Lee"), guest(client, "Kim")
    for person in (lee, kim):
        assert person.post(f"/api/spaces/{space_id}/hand").status_code == 200
    first = client.get(f"/api/spaces/{space_id}/snapshot").json()
    assert first["space"]["record"] is True
    assert first["moderation"] == []
    assert host.post(f"/api/spaces/{space_id}/members/{lee.user_id}/remove").status_code == 204
    assert host.post(f"/api/spaces/{space_id}/members/{kim.user_id}/ban").status_code == 204

    def told() -> list[tuple[str, str]]:
        body = client.get(f"/api/spaces/{space_id}/snapshot").json()
        return [(m["user_id"], m["action"]) for m in body["moderation"]]

    # The snapshot is built at most once a second: the next one carries both.
    wait_until(lambda: len(told()) == 2, 10, "the removal and the ban in the snapshot")
    assert told() == [(lee.user_id, "removed"), (kim.user_id, "banned")]
    unrecorded = make_space(host)
    assert client.get(f"/api/spaces/{unrecorded}/snapshot").json()["space"]["record"] is False

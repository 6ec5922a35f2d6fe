"""The control plane over HTTP: a Space's whole life with a host, a co-host, two speakers and
listeners; ban enforcement on every path; bad input answers a clear 4xx and changes nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from townhall.api.tokens import IdentityKind, IdentityTokens
from townhall.config import load
from townhall.control_plane import control_plane_app


class Person:
    def __init__(self, client: TestClient, token: str, user_id: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}
        self.user_id = user_id

    def post(self, path: str, json: Any = None) -> Any:
        return self.client.post(path, json=json, headers=self.headers)

    def put(self, path: str, json: Any = None) -> Any:
        return self.client.put(path, json=json, headers=self.headers)

    def get(self, path: str) -> Any:
        return self.client.get(path, headers=self.headers)

    def delete(self, path: str) -> Any:
        return self.client.delete(path, headers=self.headers)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = control_plane_app(load({}, data_dir=tmp_path))
    with TestClient(app) as c:
        yield c


def signup(client: TestClient, username: str) -> Person:
    r = client.post(
        "/api/auth/signup",
        json={"username": username, "password": "correct horse", "display_name": username.title()},
    )
    assert r.status_code == 201, r.text
    return Person(client, r.json()["token"], r.json()["user_id"])


def guest(client: TestClient, name: str) -> Person:
    r = client.post("/api/auth/guest", json={"display_name": name})
    assert r.status_code == 201, r.text
    return Person(client, r.json()["token"], r.json()["user_id"])


def code(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    return str(body["error"]["code"])


def roster(person: Person, space_id: str) -> dict[str, str]:
    return {
        m["display_name"]: m["role"] for m in person.get(f"/api/spaces/{space_id}/stage").json()
    }


def test_a_space_lives_its_whole_life_over_the_api(client: TestClient) -> None:
    host = signup(client, "hana")
    created = host.post("/api/spaces", {"title": "Launch day", "description": "We ship."})
    assert created.status_code == 201, created.text
    space_id = created.json()["space"]["id"]
    assert created.json()["space"]["state"] == "green_room"

    # The host invites a co-host and two speakers by link.
    cohost_link = host.post(f"/api/spaces/{space_id}/invite-links", {"role": "cohost"}).json()[
        "invite"
    ]
    speaker_link = host.post(
        f"/api/spaces/{space_id}/invite-links", {"role": "speaker", "max_uses": 2}
    ).json()["invite"]
    cohost, ann, bob = signup(client, "cole"), signup(client, "ann"), guest(client, "Bob")
    assert (
        cohost.post(f"/api/spaces/{space_id}/stage/join", {"invite": cohost_link}).json()["role"]
        == "cohost"
    )
    for speaker in (ann, bob):
        assert (
            speaker.post(f"/api/spaces/{space_id}/stage/join", {"invite": speaker_link}).status_code
            == 200
        )
    assert roster(host, space_id) == {
        "Hana": "host",
        "Cole": "cohost",
        "Ann": "speaker",
        "Bob": "speaker",
    }

    # Listeners: one asks to speak and the co-host brings them up; the queue has no duplicates.
    lee, max_ = guest(client, "Lee"), guest(client, "Max")
    assert lee.post(f"/api/spaces/{space_id}/hand").json() == {"raised": True, "already": False}
    assert lee.post(f"/api/spaces/{space_id}/hand").json() == {"raised": True, "already": True}
    assert [h["display_name"] for h in cohost.get(f"/api/spaces/{space_id}/hands").json()] == [
        "Lee"
    ]
    assert code(max_.get(f"/api/spaces/{space_id}/hands")) == "not_moderator"
    assert (
        cohost.post(f"/api/spaces/{space_id}/hands/{lee.user_id}/accept").json()["role"]
        == "speaker"
    )
    assert lee.get(f"/api/spaces/{space_id}/me").json()["role"] == "speaker"

    # The host mutes a speaker; only the speaker can unmute; the host moves one to the audience.
    assert (
        host.post(f"/api/spaces/{space_id}/members/{ann.user_id}/mute").json()["muted_by_host"]
        is True
    )
    assert (
        code(host.post(f"/api/spaces/{space_id}/members/{ann.user_id}/unmute"))
        == "only_self_can_unmute"
    )
    assert ann.post(f"/api/spaces/{space_id}/members/{ann.user_id}/unmute").json()["muted"] is False
    assert (
        host.post(f"/api/spaces/{space_id}/members/{bob.user_id}/move-to-audience").status_code
        == 204
    )
    assert "Bob" not in roster(host, space_id)

    # The co-host follows the stage's events over a WebSocket from here on.
    cohost_token = cohost.headers["Authorization"].removeprefix("Bearer ")
    with client.websocket_connect(f"/api/spaces/{space_id}/events?token={cohost_token}") as ws:
        latest = ws.receive_json()["latest_seq"]
        backlog = [ws.receive_json() for _ in range(latest)]
        assert [e["seq"] for e in backlog] == list(range(1, latest + 1))  # ordered, no gaps
        _scenario_on_air(client, host, cohost, max_, space_id)
        tail = [ws.receive_json() for _ in range(4)]
    assert [(e["type"], e["data"].get("state")) for e in tail] == [
        ("space.state", "live"),
        ("delay.set", None),
        ("delay.dumped", None),
        ("space.state", "ended"),
    ]
    assert [e["seq"] for e in tail] == list(range(latest + 1, latest + 5))
    assert code(host.post(f"/api/spaces/{space_id}/end")) == "space_ended"
    assert code(lee.post(f"/api/spaces/{space_id}/hand")) == "space_ended"


def _scenario_on_air(
    client: TestClient, host: Person, cohost: Person, listener: Person, space_id: str
) -> None:
    """Reactions, Go live (the host's alone), a delay, a dump, the end."""
    assert listener.post(f"/api/spaces/{space_id}/reactions", {"emoji": "🔥"}).status_code == 202
    assert client.get(f"/api/spaces/{space_id}/snapshot").json()["space"]["on_air"] is False
    assert code(cohost.post(f"/api/spaces/{space_id}/go-live")) == "not_host"
    live = host.post(f"/api/spaces/{space_id}/go-live")
    assert live.json()["space"]["state"] == "live"

    # Delay and dump, then the end.
    assert (
        cohost.put(f"/api/spaces/{space_id}/delay", {"seconds": 10}).json()["space"]["delay_s"]
        == 10
    )
    assert cohost.post(f"/api/spaces/{space_id}/dump").status_code == 204
    ended = host.post(f"/api/spaces/{space_id}/end")
    assert ended.json()["space"]["state"] == "ended"


def test_a_banned_user_is_refused_on_every_path(client: TestClient) -> None:
    host = signup(client, "hana")
    space_id = host.post("/api/spaces", {"title": "Bans"}).json()["space"]["id"]
    link = host.post(f"/api/spaces/{space_id}/invite-links", {"role": "speaker"}).json()["invite"]
    troll = guest(client, "Troll")
    troll.post(f"/api/spaces/{space_id}/hand")
    assert host.post(f"/api/spaces/{space_id}/members/{troll.user_id}/ban").status_code == 204
    assert code(troll.get(f"/api/spaces/{space_id}")) == "banned"  # join / listen
    assert code(troll.post(f"/api/spaces/{space_id}/stage/join", {"invite": link})) == "banned"
    assert code(troll.post(f"/api/spaces/{space_id}/hand")) == "banned"
    assert code(troll.post(f"/api/spaces/{space_id}/reactions", {"emoji": "👏"})) == "banned"
    assert troll.get(f"/api/spaces/{space_id}/me").json()["banned"] is True
    assert host.get(f"/api/spaces/{space_id}/hands").json() == []


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({}, 422, "invalid_input"),
        ({"title": ""}, 422, "invalid_input"),
        ({"title": "x" * 121}, 422, "invalid_input"),
        ({"title": "ok", "visibility": "secret"}, 422, "invalid_input"),
        ({"title": "ok", "max_speakers": 0}, 422, "invalid_input"),
        ({"title": "ok", "scheduled_start": 1.0}, 422, "start_in_past"),
        ({"title": "ok", "surprise": True}, 422, "invalid_input"),
    ],
)
def test_bad_space_input_is_refused_and_creates_nothing(
    client: TestClient, body: dict[str, Any], status: int, error: str
) -> None:
    host = signup(client, "hana")
    response = host.post("/api/spaces", body)
    assert response.status_code == status
    assert code(response) == error
    assert client.get("/api/spaces?state=live").json() == []
    assert client.get("/api/spaces?state=upcoming").json() == []


def test_identity_is_required_and_forged_or_expired_tokens_are_refused(
    client: TestClient, tmp_path: Path
) -> None:
    client.cookies.clear()
    assert code(client.post("/api/spaces", json={"title": "x"})) == "identity_required"
    expired = IdentityTokens(load({}, data_dir=tmp_path).secret, 60).mint(
        "g-abcdefghijkl", "Old", IdentityKind.GUEST, ttl_s=-1
    )
    response = client.post(
        "/api/spaces", json={"title": "x"}, headers={"Authorization": f"Bearer {expired}"}
    )
    assert (response.status_code, code(response)) == (401, "token_expired")
    forged = client.post(
        "/api/spaces", json={"title": "x"}, headers={"Authorization": "Bearer abc.def.ghi"}
    )
    assert forged.status_code == 401
    assert code(forged) == "token_invalid"


def test_accounts_sign_in_with_the_right_password_only(client: TestClient) -> None:
    signup(client, "hana")
    assert (
        code(
            client.post(
                "/api/auth/signup",
                json={"username": "HANA", "password": "another pass", "display_name": "X"},
            )
        )
        == "username_taken"
    )
    assert (
        client.post(
            "/api/auth/signin", json={"username": "Hana", "password": "correct horse"}
        ).status_code
        == 200
    )
    assert (
        code(client.post("/api/auth/signin", json={"username": "hana", "password": "wrong horse"}))
        == "bad_credentials"
    )
    assert (
        code(client.post("/api/auth/signin", json={"username": "nobody", "password": "whatever1"}))
        == "bad_credentials"
    )


def test_unknown_ids_and_malformed_json_are_clear_errors(client: TestClient) -> None:
    host = signup(client, "hana")
    assert code(host.get("/api/spaces/zzzzzzzzzz")) == "space_not_found"
    assert (
        code(host.post("/api/spaces/zzzzzzzzzz/members/u-nobody000000/mute")) == "space_not_found"
    )
    space_id = host.post("/api/spaces", {"title": "x"}).json()["space"]["id"]
    assert code(host.post(f"/api/spaces/{space_id}/members/not-a-user/mute")) == "user_not_found"
    bad = client.post(
        "/api/spaces",
        content=b"{nope",
        headers={**host.headers, "content-type": "application/json"},
    )
    assert bad.status_code == 422
    assert code(bad) == "invalid_input"
    assert (
        code(host.post(f"/api/spaces/{space_id}/stage/join", {"invite": "x" * 40}))
        == "token_invalid"
    )


def test_a_private_space_needs_its_code_and_upcoming_spaces_are_listed(client: TestClient) -> None:
    host = signup(client, "hana")
    private = host.post("/api/spaces", {"title": "Secret", "visibility": "private"}).json()
    listen = private["links"]["listen"]
    assert "?code=" in listen
    stranger = guest(client, "Stranger")
    assert code(stranger.get(f"/api/spaces/{private['space']['id']}")) == "space_not_found"
    code_value = listen.split("?code=")[1]
    assert (
        stranger.get(f"/api/spaces/{private['space']['id']}?code={code_value}").status_code == 200
    )
    assert client.get("/api/spaces?state=live").json() == []  # private Spaces are never listed

    upcoming = host.post(
        "/api/spaces", {"title": "Tomorrow", "scheduled_start": time.time() + 86400}
    ).json()
    assert [s["space"]["title"] for s in client.get("/api/spaces?state=upcoming").json()] == [
        "Tomorrow"
    ]
    assert stranger.post(f"/api/spaces/{upcoming['space']['id']}/remind").status_code == 204


def test_a_private_spaces_listener_link_keeps_its_code_in_every_answer_to_its_moderators(
    client: TestClient,
) -> None:
    """The stage page shows the listener link of each answer it gets: one without the code (seen
    after "Go live") is a link that opens "No such Space" for everyone the host shares it with."""
    host = signup(client, "hana")
    created = host.post(
        "/api/spaces",
        {"title": "Secret", "visibility": "private", "scheduled_start": time.time() + 600},
    ).json()
    space_id, listen = created["space"]["id"], created["links"]["listen"]
    assert "?code=" in listen
    cohost = guest(client, "Cora")
    link = host.post(f"/api/spaces/{space_id}/invite-links", {"role": "cohost"}).json()
    assert cohost.post(f"/api/spaces/{space_id}/stage/join", {"invite": link["invite"]}).is_success
    answers = {
        "open": host.post(f"/api/spaces/{space_id}/open"),
        "go live": host.post(f"/api/spaces/{space_id}/go-live"),
        "delay": cohost.put(f"/api/spaces/{space_id}/delay", {"seconds": 2}),
        "pin": cohost.put(f"/api/spaces/{space_id}/pin", {"url": "https://example.org/"}),
        "hand over": host.post(f"/api/spaces/{space_id}/host", {"user_id": cohost.user_id}),
        "end": cohost.post(f"/api/spaces/{space_id}/end"),
    }
    assert {what: a.status_code for what, a in answers.items()} == dict.fromkeys(answers, 200)
    links = {what: a.json()["links"]["listen"] for what, a in answers.items()}
    assert links == dict.fromkeys(answers, listen)


def test_someone_just_seated_finds_themselves_on_the_stage_in_the_same_second(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listeners share one view of a public Space built at most once a second; a person the
    stage page has just seated by invite link must not get that earlier view (their page would
    show them as a listener on a stage without them)."""
    from townhall.api import control_routes

    frozen = time.time()
    monkeypatch.setattr(control_routes, "time", SimpleNamespace(time=lambda: frozen))
    host = signup(client, "hana")
    space_id = host.post("/api/spaces", {"title": "Open"}).json()["space"]["id"]
    link = host.post(f"/api/spaces/{space_id}/invite-links", {"role": "speaker"}).json()
    listener = guest(client, "Lee")
    shared = listener.get(f"/api/spaces/{space_id}").json()  # this second's shared view
    assert [m["display_name"] for m in shared["stage"]] == ["Hana"]
    ann = guest(client, "Ann")
    assert ann.post(f"/api/spaces/{space_id}/stage/join", {"invite": link["invite"]}).is_success
    seen = ann.get(f"/api/spaces/{space_id}")
    assert seen.status_code == 200
    assert {m["display_name"]: m["role"] for m in seen.json()["stage"]} == {
        "Hana": "host",
        "Ann": "speaker",
    }
    assert "public" not in seen.headers.get("cache-control", "")
    # Listeners keep sharing the view built this second (no database work per listener).
    assert listener.get(f"/api/spaces/{space_id}").json() == shared


def test_who_am_i_answers_signed_out_without_an_error(client: TestClient) -> None:
    client.cookies.clear()
    assert client.get("/api/auth/me").json() == {"signed_in": False}
    me = guest(client, "Lee")
    assert client.get("/api/auth/me", headers=me.headers).json()["display_name"] == "Lee"

"""Signing out ends the session on the server: the old token, as bearer or as cookie, is refused
afterwards everywhere it would have been accepted (api/auth.py `Sessions`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from townhall.config import load
from townhall.control_plane import control_plane_app


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(control_plane_app(load({}, data_dir=tmp_path))) as c:
        yield c


def test_after_sign_out_the_old_bearer_and_cookie_get_401(client: TestClient) -> None:
    signed_up = client.post(
        "/api/auth/signup",
        json={"username": "ada", "password": "correct horse", "display_name": "Ada"},
    )
    token = signed_up.json()["token"]
    cookie = client.cookies["th_session"]
    bearer = {"Authorization": f"Bearer {token}"}
    space_id = client.post("/api/spaces", json={"title": "Mine"}, headers=bearer).json()["space"][
        "id"
    ]
    assert client.get(f"/api/spaces/{space_id}/me", headers=bearer).status_code == 200

    assert client.post("/api/auth/signout", headers=bearer).status_code == 204
    client.cookies.clear()
    for headers, cookies in ((bearer, {}), ({}, {"th_session": cookie})):
        client.cookies.clear()
        client.cookies.update(cookies)
        for path in ("/api/auth/me", f"/api/spaces/{space_id}/me"):
            refused = client.get(path, headers=headers)
            assert refused.status_code == 401, (path, headers, refused.text)
            assert refused.json()["error"]["code"] == "token_revoked"
    client.cookies.clear()
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect(f"/api/spaces/{space_id}/events?token={token}") as ws,
    ):
        ws.receive_json()
    assert closed.value.code == 4401


def test_signing_out_one_session_leaves_the_others(client: TestClient) -> None:
    def sign_in() -> str:
        answer = client.post("/api/auth/signin", json={"username": "bob", "password": "pass words"})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["token"])

    created = client.post(
        "/api/auth/signup",
        json={"username": "bob", "password": "pass words", "display_name": "Bo"},
    )
    assert created.status_code == 201
    phone, laptop = sign_in(), sign_in()
    client.cookies.clear()
    assert phone != laptop
    client.post("/api/auth/signout", headers={"Authorization": f"Bearer {phone}"})
    me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {laptop}"})
    assert me.status_code == 200
    assert me.json()["display_name"] == "Bo"
    # Signing in again after signing out gives a session that works.
    fresh = sign_in()
    assert client.get("/api/auth/me", headers={"Authorization": f"Bearer {fresh}"}).json()[
        "signed_in"
    ]

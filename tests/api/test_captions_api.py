"""A host chooses live captions per Space; a server with captions off refuses the choice."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from townhall.captions.model import default_model
from townhall.config import load
from townhall.control_plane import control_plane_app


def _create(client: TestClient, captions: bool) -> tuple[int, dict[str, object]]:
    token = client.post("/api/auth/guest", json={"display_name": "Host"}).json()["token"]
    body = {"title": "Captioned", "captions": captions, "scheduled_start": time.time() + 3600}
    r = client.post("/api/spaces", json=body, headers={"Authorization": f"Bearer {token}"})
    return r.status_code, r.json()


def test_a_space_is_uncaptioned_unless_its_host_asks_and_a_server_without_captions_says_so(
    tmp_path: Path,
) -> None:
    app = control_plane_app(load({"TOWNHALL_CAPTIONS": "off"}, data_dir=tmp_path))
    with TestClient(app) as client:
        status, body = _create(client, captions=False)
        assert status == 201
        assert body["space"]["captions"] is False
        status, body = _create(client, captions=True)
        assert status == 409, body
        assert body["error"]["code"] == "captions_unavailable"  # type: ignore[index]


def test_a_host_turns_captions_on_where_the_server_has_them(tmp_path: Path) -> None:
    env = {} if default_model() is not None else {"TOWNHALL_CAPTIONS": "off"}
    app = control_plane_app(load(env, data_dir=tmp_path))
    with TestClient(app) as client:
        status, body = _create(client, captions=True)
        if default_model() is None:
            assert status == 409
            return
        assert status == 201, body
        space = body["space"]
        assert space["captions"] is True  # type: ignore[index]
        fetched = client.get(f"/api/spaces/{space['id']}").json()  # type: ignore[index]
        assert fetched["space"]["captions"] is True

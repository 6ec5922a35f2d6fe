"""A database that stops answering is an unavailable dependency: the API says 503 with Retry-After
and the one JSON error shape, never a 500, on a real PostgreSQL server that the test stops."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from townhall.config import load
from townhall.control_plane import control_plane_app
from townhall.harness import start_postgres


def test_with_postgresql_down_control_calls_answer_503_with_retry_after(tmp_path: Path) -> None:
    postgres = start_postgres()  # its own server: this test stops it
    try:
        env = {"TOWNHALL_DATABASE_URL": postgres.create_database("townhall")}
        app = control_plane_app(load(env, data_dir=tmp_path))
        with TestClient(app) as client:
            token = client.post("/api/auth/guest", json={"display_name": "Host"}).json()["token"]
            headers = {"Authorization": f"Bearer {token}"}
            created = client.post("/api/spaces", json={"title": "Before"}, headers=headers)
            assert created.status_code == 201, created.text
            space_id = created.json()["space"]["id"]

            never_read = "zzzzzzzzzz" if space_id != "zzzzzzzzzz" else "yyyyyyyyyy"
            postgres.stop()
            # What this node already holds of a Space it still answers: listeners keep their page.
            held = client.get(f"/api/spaces/{space_id}")
            assert held.status_code == 200, held.text
            assert held.json()["space"]["title"] == "Before"
            for response in (
                client.get(f"/api/spaces/{never_read}"),
                client.post("/api/spaces", json={"title": "During"}, headers=headers),
                client.post("/api/auth/signin", json={"username": "host", "password": "x" * 12}),
            ):
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == "store_unavailable"
                assert int(response.headers["Retry-After"]) > 0
    finally:
        postgres.stop()

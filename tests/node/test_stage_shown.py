"""The stage the stream shows listeners follows the stage's changes (node/host.py: the director
reads the kept roster after each one)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.api.test_control_api import guest, signup
from townhall.app import create_app
from townhall.config import load
from townhall.harness import wait_until


def test_the_stream_shows_a_mute_an_unmute_and_a_new_speaker(tmp_path: Path) -> None:
    app = create_app(load({}, data_dir=tmp_path))
    with TestClient(app) as client:
        host = signup(client, "hana")
        space_id = host.post("/api/spaces", {"title": "Shown"}).json()["space"]["id"]
        assert host.post(f"/api/spaces/{space_id}/go-live").status_code == 200
        lee = guest(client, "Lee")
        assert lee.post(f"/api/spaces/{space_id}/hand").status_code == 200

        def shown() -> dict[str, bool]:
            media = app.state.node.host.media_of(space_id)
            seats = media.stage if media is not None else ()
            return {seat.user_id: seat.muted for seat in seats}

        wait_until(lambda: shown() == {host.user_id: False}, 30, "the host on the stream's stage")
        assert host.post(f"/api/spaces/{space_id}/members/{host.user_id}/mute").status_code == 200
        wait_until(lambda: shown() == {host.user_id: True}, 30, "the host shown muted")
        assert host.post(f"/api/spaces/{space_id}/hands/{lee.user_id}/accept").status_code == 200
        wait_until(
            lambda: shown() == {host.user_id: True, lee.user_id: False}, 30, "Lee shown on stage"
        )
        assert lee.post(f"/api/spaces/{space_id}/members/{lee.user_id}/mute").status_code == 200
        assert host.post(f"/api/spaces/{space_id}/members/{host.user_id}/unmute").status_code == 200
        wait_until(
            lambda: shown() == {host.user_id: False, lee.user_id: True}, 30, "both changes shown"
        )

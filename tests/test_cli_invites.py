"""`townhall spaces invite | invites | revoke-invite` against a real server: the operator makes a
link for three people that works for two hours, lists it with its uses, and revokes it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Server
from townhall import cli

pytestmark = pytest.mark.e2e


def run(
    server: Server, token: str, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, Any]:
    code = cli.main(["spaces", "--url", server.url, "--token", token, *argv])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if code == 0 else captured.err


def test_an_operator_makes_lists_and_revokes_an_invite_link(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    space = server.create_space(live=False)
    code, made = run(
        server, space.host_token, capsys, "invite", space.id, "--uses", "3", "--expires", "2h"
    )
    assert code == 0
    assert made["url"].startswith(f"{server.url}/s/{space.id}/stage#invite=")
    assert (made["link"]["max_uses"], made["expires_in"]) == (3, 7200)
    guest = server.host_identity("Ann")
    server.call("POST", f"/api/spaces/{space.id}/stage/join", guest, {"invite": made["invite"]})

    code, listed = run(server, space.host_token, capsys, "invites", space.id)
    assert code == 0
    assert [(link["uses"], link["remaining"], link["state"]) for link in listed] == [(1, 2, "open")]

    code, revoked = run(
        server, space.host_token, capsys, "revoke-invite", space.id, made["link"]["id"]
    )
    assert code == 0
    assert revoked["state"] == "revoked"

    code, error = run(server, space.host_token, capsys, "invite", space.id, "--expires", "30d")
    assert code == 1
    assert "The link's lifetime can be at most 7 days." in error

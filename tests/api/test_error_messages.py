"""Refused input is said in people's words, naming the field, never in the validator's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_control_api import guest, signup
from townhall.config import load
from townhall.control_plane import control_plane_app

VALIDATOR_WORDING = re.compile(
    r"String should|Input should|Field required|Extra inputs|Value error|_s\b"
)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(control_plane_app(load({}, data_dir=tmp_path))) as c:
        yield c


def refusal(response: Any) -> tuple[str, str | None]:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    return str(error["message"]), error.get("field")


def test_a_too_short_password_is_named_and_explained(client: TestClient) -> None:
    short = client.post(
        "/api/auth/signup", json={"username": "ana_b", "password": "short", "display_name": "Ana"}
    )
    assert refusal(short) == ("The password must be at least 8 characters long.", "password")


def test_a_mangled_invite_link_says_what_to_do(client: TestClient) -> None:
    host = signup(client, "hana")
    space_id = host.post("/api/spaces", {"title": "Talk"}).json()["space"]["id"]
    cut = guest(client, "Sam").post(f"/api/spaces/{space_id}/stage/join", {"invite": "abc"})
    assert refusal(cut) == ("This invite link is not valid. Ask the host for a new one.", "invite")


def test_no_refusal_uses_the_validators_wording(client: TestClient) -> None:
    host = signup(client, "hana")
    space_id = host.post("/api/spaces", {"title": "Talk"}).json()["space"]["id"]
    wrong: list[tuple[str, str, Any]] = [
        ("post", "/api/spaces", {"title": ""}),
        ("post", "/api/spaces", {"title": "x" * 500}),
        ("post", "/api/spaces", {"title": "ok", "max_speakers": 0}),
        ("post", "/api/spaces", {"title": "ok", "visibility": "secret"}),
        ("post", "/api/spaces", {"title": "ok", "colour": "red"}),
        ("post", "/api/spaces", {"title": "bell\x07"}),
        ("post", "/api/spaces", {}),
        ("put", f"/api/spaces/{space_id}/delay", {"seconds": 45}),
        ("put", f"/api/spaces/{space_id}/delay", {"seconds": "soon"}),
        ("put", f"/api/spaces/{space_id}/pin", {"url": "not a link"}),
        ("post", f"/api/spaces/{space_id}/invite-links", {"role": "king"}),
        ("post", f"/api/spaces/{space_id}/reactions", {"emoji": ""}),
    ]
    said = {}
    for method, path, body in wrong:
        message, field = refusal(getattr(host, method)(path, body))
        assert not VALIDATOR_WORDING.search(message), (path, body, message)
        assert message[0].isupper(), message
        assert message.endswith("."), message
        said[(path, str(body))] = (message, field)
    assert said[(f"/api/spaces/{space_id}/delay", "{'seconds': 45}")] == (
        "The delay can be at most 30 seconds.",
        "seconds",
    )
    assert said[("/api/spaces", "{'title': ''}")] == ("The title cannot be empty.", "title")
    assert said[("/api/spaces", "{'title': 'bell\\x07'}")] == (
        "The title must not contain control characters.",
        "title",
    )


def test_the_frameworks_own_refusals_are_sentences_too(client: TestClient) -> None:
    nowhere = client.get("/api/no-such-thing")
    assert nowhere.status_code == 404
    assert nowhere.json()["error"]["message"] == "There is nothing at this address."
    wrong_method = client.delete("/api/auth/me")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["message"] == (
        "This address does not take that kind of request."
    )

"""Invite links over HTTP: the host makes one with a use limit and an expiry, sees it used, revokes
it; a removed speaker cannot come back with it; refusals are sentences a person can act on."""

from __future__ import annotations

import time
from typing import Any

import jwt
from fastapi.testclient import TestClient

from tests.api.test_control_api import Person, client, code, guest, signup  # noqa: F401

SECRET_FREE = "x" * 40


def new_link(host: Person, space_id: str, **body: object) -> Any:
    made = host.post(f"/api/spaces/{space_id}/invite-links", body)
    assert made.status_code == 201, made.text
    return made.json()


def join(person: Person, space_id: str, invite: object) -> Any:
    return person.post(f"/api/spaces/{space_id}/stage/join", {"invite": invite})


def test_a_link_seats_as_many_as_the_host_allowed_and_the_list_shows_who(
    client: TestClient,  # noqa: F811
) -> None:
    host = signup(client, "hana")
    space_id = host.post("/api/spaces", {"title": "Links"}).json()["space"]["id"]
    made = new_link(host, space_id, max_uses=2, expires_in_s=3600)
    assert made["expires_in"] == 3600
    assert made["link"]["state"] == "open"
    token = made["invite"]
    claims = jwt.decode(str(token), options={"verify_signature": False})
    assert claims["jti"] == made["link"]["id"]
    assert claims["exp"] - time.time() <= 3600
    ann, bob, cat = guest(client, "Ann"), guest(client, "Bob"), guest(client, "Cat")
    assert join(ann, space_id, token).status_code == 200
    assert join(bob, space_id, token).status_code == 200
    full = join(cat, space_id, token)
    assert full.status_code == 403
    assert full.json()["error"] == {
        "code": "invite_link_used_up",
        "message": "This invite link has been used as many times as the host allowed. "
        "Ask the host for a new one.",
    }
    [listed] = host.get(f"/api/spaces/{space_id}/invite-links").json()
    assert (listed["uses"], listed["remaining"], listed["state"]) == (2, 0, "used_up")
    assert [u["display_name"] for u in listed["used_by"]] == ["Ann", "Bob"]
    assert listed["created_by_name"] == "Hana"
    assert code(ann.get(f"/api/spaces/{space_id}/invite-links")) == "not_moderator"


def test_a_revoked_link_and_a_forged_one_are_refused(client: TestClient) -> None:  # noqa: F811
    host = signup(client, "hana")
    space_id = host.post("/api/spaces", {"title": "Links"}).json()["space"]["id"]
    made = new_link(host, space_id, max_uses=5)
    link_id = made["link"]["id"]
    revoked = host.delete(f"/api/spaces/{space_id}/invite-links/{link_id}")
    assert revoked.status_code == 200
    assert revoked.json()["state"] == "revoked"
    ann = guest(client, "Ann")
    assert code(join(ann, space_id, made["invite"])) == "invite_link_revoked"
    assert code(host.delete(f"/api/spaces/{space_id}/invite-links/{'B' * 16}")) == (
        "invite_link_not_found"
    )
    assert code(host.delete(f"/api/spaces/{space_id}/invite-links/nope")) == (
        "invite_link_not_found"
    )
    forged = jwt.encode(
        {"space": space_id, "role": "cohost", "jti": link_id, "aud": "townhall:invite", "exp": 2e9},
        SECRET_FREE,
        algorithm="HS256",
    )
    assert join(ann, space_id, forged).json()["error"] == {
        "code": "token_invalid",
        "message": "This invite link is not valid. Ask the host for a new one.",
    }


def test_a_removed_speaker_cannot_rejoin_with_the_link_but_one_click_on_their_hand_works(
    client: TestClient,  # noqa: F811
) -> None:
    host = signup(client, "hana")
    space_id = host.post("/api/spaces", {"title": "Links"}).json()["space"]["id"]
    token = new_link(host, space_id, max_uses=8)["invite"]
    ann = guest(client, "Ann")
    assert join(ann, space_id, token).status_code == 200
    assert host.post(f"/api/spaces/{space_id}/members/{ann.user_id}/remove").status_code == 204
    again = join(ann, space_id, token)
    assert again.status_code == 403
    assert again.json()["error"]["message"] == (
        "A host took you off this stage, so invite links no longer seat you here. "
        "Raise your hand to ask to come back."
    )
    assert code(join(ann, space_id, new_link(host, space_id)["invite"])) == "invite_link_barred"
    assert ann.post(f"/api/spaces/{space_id}/hand").status_code == 200
    accepted = host.post(f"/api/spaces/{space_id}/hands/{ann.user_id}/accept")
    assert accepted.json()["role"] == "speaker"


def test_out_of_bounds_uses_and_lifetimes_are_said_for_people(
    client: TestClient,  # noqa: F811
) -> None:
    host = signup(client, "hana")
    space_id = host.post("/api/spaces", {"title": "Links"}).json()["space"]["id"]
    cases = [
        ({"max_uses": 0}, "The number of uses must be at least 1.", "max_uses"),
        ({"max_uses": 500}, "The number of uses can be at most 100.", "max_uses"),
        (
            {"expires_in_s": 10},
            "The link's lifetime must be at least 5 minutes.",
            "expires_in_s",
        ),
    ]
    for body, message, field in cases:
        answer = host.post(f"/api/spaces/{space_id}/invite-links", body)
        assert answer.status_code == 422
        assert answer.json()["error"] == {
            "code": "invalid_input",
            "message": message,
            "field": field,
        }

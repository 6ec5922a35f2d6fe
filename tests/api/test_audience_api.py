"""The host's audience list over HTTP: who is present by name, searched and paged, for moderators only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_control_api import Person, code, guest, signup
from tests.conftest import wait_until
from townhall.api.tokens import IdentityKind, IdentityTokens
from townhall.config import load
from townhall.control_plane import control_plane_app
from townhall.spaces.audience import PAGE_SIZE


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def client(data_dir: Path) -> Iterator[TestClient]:
    with TestClient(control_plane_app(load({}, data_dir=data_dir))) as c:
        c.cookies.clear()
        yield c


def audience(person: Person, space_id: str, **params: str) -> Any:
    return person.client.get(
        f"/api/spaces/{space_id}/audience", params=params, headers=person.headers
    )


def names(person: Person, space_id: str, **params: str) -> list[str]:
    response = audience(person, space_id, **params)
    assert response.status_code == 200, response.text
    return [p["display_name"] for p in response.json()["people"]]


def make_space(host: Person) -> str:
    return str(host.post("/api/spaces", {"title": "Town hall"}).json()["space"]["id"])


def test_a_named_listener_s_beacon_puts_them_in_the_host_s_list(client: TestClient) -> None:
    host = signup(client, "hana")
    space_id = make_space(host)
    lee = guest(client, "Lee")
    client.cookies.clear()  # the beacon below carries only Lee's bearer token
    assert (
        lee.post(f"/api/spaces/{space_id}/presence", {"key": "lee-browser-key-01"}).status_code
        == 204
    )
    # Someone without an identity is counted but cannot be named, so is not listed.
    anonymous = client.post(f"/api/spaces/{space_id}/presence", json={"key": "anon-key-00000001"})
    assert anonymous.status_code == 204
    response = audience(host, space_id)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "private, no-store"
    body = response.json()
    assert [(p["user_id"], p["display_name"], p["guest"]) for p in body["people"]] == [
        (lee.user_id, "Lee", True)
    ]  # the host, on stage, is not in the audience list
    assert body["complete"] is True
    assert body["next_cursor"] is None


def test_a_stale_cookie_on_a_beacon_is_counted_not_refused(client: TestClient) -> None:
    host = signup(client, "hana")
    space_id = make_space(host)
    client.cookies.set("th_session", "not-a-token")
    beacon = client.post(f"/api/spaces/{space_id}/presence", json={"key": "stale-key-0000001"})
    assert beacon.status_code == 204
    client.cookies.clear()
    assert names(host, space_id) == []


def test_reacting_or_raising_a_hand_shows_someone_at_once(client: TestClient) -> None:
    host = signup(client, "hana")
    space_id = make_space(host)
    kim, ola = guest(client, "Kim"), guest(client, "Ola")
    assert kim.post(f"/api/spaces/{space_id}/reactions", {"emoji": "👏"}).status_code == 202
    assert ola.post(f"/api/spaces/{space_id}/hand").status_code == 200
    people = {p["display_name"]: p for p in audience(host, space_id).json()["people"]}
    assert set(people) == {"Kim", "Ola"}
    assert people["Ola"]["hand_raised"] is True
    assert people["Kim"]["hand_raised"] is False


def test_search_matches_every_word_of_the_name_ignoring_case_and_accents(
    client: TestClient,
) -> None:
    host = signup(client, "hana")
    space_id = make_space(host)
    for name in ("Zoë Adams", "Zoe Baker", "Adam Smith"):
        guest(client, name).post(f"/api/spaces/{space_id}/reactions", {"emoji": "🔥"})
    assert names(host, space_id, q="zoe") == ["Zoë Adams", "Zoe Baker"]  # by name
    assert names(host, space_id, q="ADA zo") == ["Zoë Adams"]
    assert names(host, space_id, q="adam") == ["Adam Smith", "Zoë Adams"]
    assert names(host, space_id, q="nobody") == []
    too_long = audience(host, space_id, q="x" * 41)
    assert too_long.status_code == 422


def test_the_list_comes_in_pages_that_neither_repeat_nor_skip_anyone(
    client: TestClient, data_dir: Path
) -> None:
    host = signup(client, "hana")
    space_id = make_space(host)
    tokens = IdentityTokens(load({}, data_dir=data_dir).secret, 3600)
    everyone: set[str] = set()
    for n in range(PAGE_SIZE + 12):
        user_id = f"g-page{n:08d}"
        person = Person(client, tokens.mint(user_id, f"Guest {n:03d}", IdentityKind.GUEST), user_id)
        assert person.post(f"/api/spaces/{space_id}/reactions", {"emoji": "👍"}).status_code == 202
        everyone.add(user_id)
    first = audience(host, space_id).json()
    assert len(first["people"]) == PAGE_SIZE
    assert first["matching"] == PAGE_SIZE + 12
    # Someone arriving between two pages lands in their place by name, not on the next page.
    early = Person(
        client, tokens.mint("g-early0000000", "Aaron", IdentityKind.GUEST), "g-early0000000"
    )
    early.post(f"/api/spaces/{space_id}/reactions", {"emoji": "👍"})
    second = audience(host, space_id, cursor=first["next_cursor"]).json()
    assert second["next_cursor"] is None
    shown = [p["user_id"] for p in first["people"] + second["people"]]
    assert len(shown) == len(set(shown)) == len(everyone)
    assert set(shown) == everyone
    names_shown = [p["display_name"] for p in first["people"] + second["people"]]
    assert names_shown == sorted(names_shown)
    bad = audience(host, space_id, cursor="not-a-cursor")
    assert bad.status_code == 400
    assert code(bad) == "bad_cursor"


def test_only_the_host_and_co_hosts_see_who_is_listening(client: TestClient) -> None:
    host = signup(client, "hana")
    space_id = make_space(host)
    listener, stranger = guest(client, "Lee"), signup(client, "sam")
    listener.post(f"/api/spaces/{space_id}/reactions", {"emoji": "👏"})
    speaker, cohost = signup(client, "spe"), signup(client, "coh")
    for person, role in ((speaker, "speaker"), (cohost, "cohost")):
        link = host.post(f"/api/spaces/{space_id}/invite-links", {"role": role}).json()["invite"]
        assert (
            person.post(f"/api/spaces/{space_id}/stage/join", {"invite": link}).status_code == 200
        )
    for refused in (listener, speaker, stranger):
        response = audience(refused, space_id)
        assert response.status_code == 403
        assert code(response) == "not_moderator"
    client.cookies.clear()
    nobody = client.get(f"/api/spaces/{space_id}/audience")
    assert nobody.status_code == 401
    assert names(cohost, space_id) == ["Lee"]
    assert audience(host, "sp_nosuchspace0").status_code == 404


def test_a_ban_from_the_list_is_marked_and_an_invitation_reaches_the_snapshot(
    client: TestClient,
) -> None:
    host = signup(client, "hana")
    space_id = make_space(host)
    kim, ola = guest(client, "Kim"), guest(client, "Ola")
    for person in (kim, ola):
        person.post(f"/api/spaces/{space_id}/reactions", {"emoji": "👏"})
    assert host.post(f"/api/spaces/{space_id}/members/{kim.user_id}/ban").status_code == 204
    assert (
        host.post(f"/api/spaces/{space_id}/invitations", {"user_id": ola.user_id}).status_code
        == 204
    )
    people = {p["display_name"]: p for p in audience(host, space_id).json()["people"]}
    # Still listed: the public stream stays audible to them, and the host sees that.
    assert people["Kim"]["banned"] is True
    assert people["Ola"]["banned"] is False

    def told() -> list[tuple[str, str]]:
        body = client.get(f"/api/spaces/{space_id}/snapshot").json()
        return [(m["user_id"], m["action"]) for m in body["moderation"]]

    wait_until(lambda: len(told()) == 2, 10, "the ban and the invitation in the snapshot")
    assert told() == [(kim.user_id, "banned"), (ola.user_id, "invited")]

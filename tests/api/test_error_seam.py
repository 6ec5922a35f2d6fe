"""One error seam: every refusal and every records error a command lets through answers its 4xx
in the one JSON shape, never a 500; the OpenAPI says so. Each test is a 500 an outside test of
the server found (issue 13), on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.api.test_control_api import Person, code, guest, signup
from townhall.api.errors import records_error
from townhall.app import create_app
from townhall.config import Config, load
from townhall.control_plane import control_plane_app
from townhall.spaces.model import SpaceId, UserId
from townhall.state import errors as records_errors


@pytest.fixture
def client(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    app = control_plane_app(load({}, data_dir=tmp_path, database_url=database_url))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def a_space(host: Person) -> str:
    created = host.post("/api/spaces", {"title": "Launch day", "description": "We ship."})
    assert created.status_code == 201, created.text
    return str(created.json()["space"]["id"])


def test_an_edit_with_a_null_title_or_description_leaves_them_as_they_were(
    client: TestClient,
) -> None:
    host = signup(client, "hana")
    space_id = a_space(host)
    for body in ({"title": None}, {"description": None}, {"title": None, "description": None}):
        r = client.patch(f"/api/spaces/{space_id}", json=body, headers=host.headers)
        assert r.status_code == 200, r.text
        assert r.json()["space"]["title"] == "Launch day"
        assert r.json()["space"]["description"] == "We ship."
    r = client.patch(f"/api/spaces/{space_id}", json={"title": "Day two"}, headers=host.headers)
    assert r.json()["space"]["title"] == "Day two"


def test_inviting_a_banned_listener_to_speak_is_refused_in_words(client: TestClient) -> None:
    host = signup(client, "hana")
    space_id = a_space(host)
    troll = guest(client, "Troll")
    assert host.post(f"/api/spaces/{space_id}/members/{troll.user_id}/ban").status_code == 204
    r = host.post(f"/api/spaces/{space_id}/invitations", {"user_id": troll.user_id})
    assert r.status_code == 403, r.text
    assert code(r) == "banned"
    assert "banned" in r.json()["error"]["message"]
    assert troll.get(f"/api/spaces/{space_id}/me").json()["role"] == "listener"


def test_a_speaker_gone_between_the_check_and_the_write_is_not_found(client: TestClient) -> None:
    """Another process took the speaker off the stage and its event has not reached this one:
    the command's check passes on what this process knows, the write finds nobody (404)."""
    host = signup(client, "hana")
    space_id = a_space(host)
    link = host.post(f"/api/spaces/{space_id}/invite-links", {"role": "speaker"}).json()["invite"]
    ann = signup(client, "ann")
    assert ann.post(f"/api/spaces/{space_id}/stage/join", {"invite": link}).status_code == 200
    assert host.get(f"/api/spaces/{space_id}/stage").status_code == 200  # the roster is kept

    records = client.app.state.plane().records  # type: ignore[attr-defined]
    assert client.portal is not None
    # Straight in the records, with no event: as a change whose event is still on its way.
    assert client.portal.call(records.remove_stage_member, SpaceId(space_id), UserId(ann.user_id))

    r = host.post(f"/api/spaces/{space_id}/members/{ann.user_id}/mute")
    assert r.status_code == 404, r.text
    assert code(r) == "gone_meanwhile"
    assert r.json()["error"]["message"] == "that is no longer there; reload and try again"


@pytest.mark.parametrize("make_app", [create_app, control_plane_app])
def test_the_openapi_documents_the_error_shape_for_every_route(
    tmp_path: Path, make_app: Callable[[Config], FastAPI]
) -> None:
    doc: dict[str, Any] = make_app(load({}, data_dir=tmp_path)).openapi()
    error_schema = {"$ref": "#/components/schemas/ErrorOut"}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            # 413: any call, bodiless ones too, refuses a body declared over its cap (a fuzzer
            # found it undocumented).
            for status in ("401", "404", "413", "422", "429", "503"):
                answer = operation["responses"].get(status)
                assert answer is not None, f"{method.upper()} {path}: no {status} documented"
                schema = answer["content"]["application/json"]["schema"]
                assert schema == error_schema, f"{method.upper()} {path} {status}: {schema}"
            for status in ("429", "503"):  # both always say when to try again
                assert "Retry-After" in operation["responses"][status]["headers"], (path, status)
    body = doc["components"]["schemas"]["ErrorBody"]
    assert {"code", "message"} <= set(body["required"])


@pytest.mark.parametrize(
    ("raised", "status", "error_code"),
    [
        (records_errors.NotFound("no Space x"), 404, "gone_meanwhile"),
        (records_errors.Conflict("compare-and-set lost"), 409, "changed_meanwhile"),
        (records_errors.UsernameTaken("hana"), 409, "username_taken"),
        (records_errors.Banned(), 403, "banned"),
        (records_errors.StageFull(), 409, "stage_full"),
        (records_errors.RecordsError("a new kind"), 409, "changed_meanwhile"),
    ],
)
def test_every_records_error_has_a_4xx_and_a_sentence(
    raised: records_errors.RecordsError, status: int, error_code: str
) -> None:
    answer = records_error(raised)
    assert (answer.status, answer.code) == (status, error_code)
    assert answer.message
    assert not str(raised) or str(raised) not in answer.message  # no internals in the sentence

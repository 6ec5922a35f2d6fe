"""A store that cannot be reached answers 503 + Retry-After with the JSON error body, never 500.

The control plane runs on a real redis-server that the test stops (by PID) and starts again on the
same port; the driver errors themselves come from real drivers, not stand-ins.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.api.test_control_api import Person, code, guest
from tests.conftest import FlakyRedis
from townhall.api.errors import WS_TRY_AGAIN_LATER
from townhall.config import load
from townhall.control_plane import control_plane_app
from townhall.harness import free_port
from townhall.state.unavailable import is_unavailable


@pytest.fixture
def client(tmp_path: Path, flaky_redis: FlakyRedis) -> Iterator[TestClient]:
    flaky_redis.start()
    app = control_plane_app(load({"TOWNHALL_REDIS_URL": flaky_redis.url}, data_dir=tmp_path))
    with TestClient(app) as c:
        yield c


def unavailable(response: object) -> None:
    status = getattr(response, "status_code", None)
    assert status == 503, getattr(response, "text", response)
    assert code(response) == "store_unavailable"
    assert int(getattr(response, "headers", {})["Retry-After"]) >= 1


def test_with_redis_down_every_call_that_needs_it_answers_503_and_recovers_without_a_restart(
    client: TestClient, flaky_redis: FlakyRedis
) -> None:
    host = guest(client, "Hana")
    fan = guest(client, "Fay")
    space_id = str(host.post("/api/spaces", {"title": "Outage"}).json()["space"]["id"])

    flaky_redis.stop()
    calls = {
        "reaction": lambda: fan.post(f"/api/spaces/{space_id}/reactions", {"emoji": "👏"}),
        "hand": lambda: fan.post(f"/api/spaces/{space_id}/hand"),
        "snapshot": lambda: client.get(f"/api/spaces/{space_id}/snapshot"),
        "presence": lambda: client.post(f"/api/spaces/{space_id}/presence", json={"key": "k" * 20}),
        "self-mute": lambda: host.post(f"/api/spaces/{space_id}/members/{host.user_id}/mute"),
        "guest": lambda: client.post("/api/auth/guest", json={"display_name": "Late"}),
    }
    for name, call in calls.items():
        response = call()
        assert response.status_code == 503, (name, response.status_code, response.text)
        unavailable(response)
    me = fan.get(f"/api/spaces/{space_id}/me")  # records only: still answers
    assert me.status_code == 200, me.text
    assert me.json()["hand_raised"] is False, "the refused hand changed nothing"
    stage = host.get(f"/api/spaces/{space_id}/stage").json()
    assert [m["muted"] for m in stage] == [False], "the refused self-mute changed nothing"
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect(f"/api/spaces/{space_id}/events?token={token(host)}") as ws,
    ):
        ws.receive_json()
    assert closed.value.code == WS_TRY_AGAIN_LATER

    flaky_redis.start()
    for name, call in calls.items():
        response = call()
        assert response.status_code < 300, (name, response.status_code, response.text)
    stage = host.get(f"/api/spaces/{space_id}/stage").json()
    assert [m["muted"] for m in stage] == [True]


def token(person: Person) -> str:
    return person.headers["Authorization"].removeprefix("Bearer ")


def test_driver_errors_that_mean_unreachable_are_told_apart_from_bugs(
    tmp_path: Path, flaky_redis: FlakyRedis
) -> None:
    flaky_redis.start()
    with pytest.raises(redis.RedisError) as refused:
        redis.Redis(port=free_port(), socket_connect_timeout=2).ping()
    assert is_unavailable(refused.value)
    with redis.Redis(port=flaky_redis.port) as client:  # a reachable server's "not now"
        client.config_set("maxmemory", 1)
        with pytest.raises(redis.RedisError) as full:
            client.set("key", "value")
        assert is_unavailable(full.value)
        with pytest.raises(redis.RedisError) as wrong:
            client.eval("return redis.call('NOSUCHCOMMAND')", 0)
        assert not is_unavailable(wrong.value), "a script error is a bug, not an outage"

    missing = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")
    with pytest.raises(sqlalchemy.exc.DBAPIError) as down:
        missing.connect()
    assert is_unavailable(down.value)

    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'ok.db'}")
    with engine.begin() as db:
        db.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        db.exec_driver_sql("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlalchemy.exc.DBAPIError) as duplicate, engine.begin() as db:
        db.exec_driver_sql("INSERT INTO t VALUES (1)")
    assert not is_unavailable(duplicate.value), "a constraint is a bug or a conflict, not an outage"
    engine.dispose()
    missing.dispose()

"""The health check and a public Space's current snapshot are answered before the framework
(api/fastpath.py), exactly as the framework answers them, under the same admission rules."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.types import Scope, Send

from tests.api.test_control_api import signup
from townhall.api.admission import RequestClass
from townhall.api.bounds import BoundedApp
from townhall.api.live_routes import Snapshots, _Snapshot
from townhall.app import create_app
from townhall.config import load
from townhall.harness import wait_until

METRICS_TOKEN = "fast-path-test-metrics-token"


class Answered:
    """Wraps the app's real fast path and notes whether it answered each request."""

    def __init__(self, app: BoundedApp) -> None:
        assert app.front is not None
        self.front = app.front
        self.answers: list[bool] = []
        app.front = self

    async def __call__(self, scope: Scope, send: Send) -> bool:
        answered = await self.front(scope, send)
        if scope["type"] == "http":
            self.answers.append(answered)
        return answered

    def last(self) -> bool:
        return self.answers[-1]


@pytest.fixture
def app(tmp_path: Path) -> BoundedApp:
    made = create_app(load({"TOWNHALL_METRICS_TOKEN": METRICS_TOKEN}, data_dir=tmp_path))
    assert isinstance(made, BoundedApp)
    return made


@pytest.fixture
def client(app: BoundedApp) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def same_answer(fast: httpx.Response, framework: httpx.Response) -> None:
    assert fast.status_code == framework.status_code
    assert fast.content == framework.content
    assert sorted(fast.headers.multi_items()) == sorted(framework.headers.multi_items())


def test_the_health_check_is_answered_before_the_framework_as_the_framework_answers_it(
    app: BoundedApp, client: TestClient
) -> None:
    spy = Answered(app)
    fast = client.get("/api/health")
    assert spy.last()
    assert fast.json()["ok"] is True
    assert fast.headers["content-security-policy"]
    framework = client.get("/api/health?probe=1")  # a query string: left to the framework
    assert not spy.last()
    same_answer(fast, framework)
    assert client.post("/api/health").status_code == 405  # other methods: the framework's
    assert not spy.last()


def test_a_public_snapshot_is_answered_before_the_framework_once_built_this_second(
    app: BoundedApp, client: TestClient
) -> None:
    host = signup(client, "hana")
    space_id = host.post("/api/spaces", {"title": "Open"}).json()["space"]["id"]
    spy = Answered(app)
    pair: list[httpx.Response] = []

    def built_then_fast() -> bool:
        """A build by the framework, then the same second's answer from the fast path (a second
        may turn between the two on a busy machine: then try again)."""
        framework = client.get(f"/api/spaces/{space_id}/snapshot")
        if spy.last():
            return False
        fast = client.get(f"/api/spaces/{space_id}/snapshot")
        if not spy.last() or fast.json()["at"] != framework.json()["at"]:
            return False
        pair[:] = [fast, framework]
        return True

    wait_until(built_then_fast, 30, "a snapshot answered by the fast path")
    fast, framework = pair
    same_answer(fast, framework)
    assert fast.headers["cache-control"] == "public, max-age=1"
    assert fast.headers["access-control-allow-origin"] == "*"


def test_a_private_snapshot_is_never_answered_by_the_fast_path(
    app: BoundedApp, client: TestClient
) -> None:
    host = signup(client, "hana")
    created = host.post("/api/spaces", {"title": "Secret", "visibility": "private"}).json()
    space_id = created["space"]["id"]
    spy = Answered(app)
    client.cookies.clear()
    for _ in range(3):  # built by the first: still the stranger gets no such Space
        answer = client.get(f"/api/spaces/{space_id}/snapshot")
        assert answer.status_code == 404
        assert not spy.last()


def test_the_fast_path_keeps_admission_control_and_is_counted(
    app: BoundedApp, client: TestClient
) -> None:
    admission = app.state.admission
    admission.in_flight[RequestClass.CONTROL] = admission.limits.control  # the class is full
    try:
        refused = client.get("/api/health")
    finally:
        admission.in_flight[RequestClass.CONTROL] = 0
    assert refused.status_code == 503
    assert refused.headers["retry-after"].isdigit()
    assert refused.json()["error"]["code"] == "overloaded"
    assert refused.headers["content-security-policy"]
    assert client.get("/api/health").status_code == 200
    metrics = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    counted = [
        line for line in metrics.splitlines() if 'route="/api/health"' in line and "_total" in line
    ]
    assert any('status="503"' in line for line in counted), counted
    assert any('status="200"' in line for line in counted), counted


def test_while_a_snapshot_is_built_the_fast_path_gives_the_second_before() -> None:
    """The audience's requests during a build are not each sent through the framework to wait
    for it: the fast path answers them with the last one built, if recent, and never a private
    Space's."""
    snapshots = Snapshots()
    snapshots.put("open", _Snapshot(100, b'{"at":100}', None))
    snapshots.put("secret", _Snapshot(100, b'{"at":100}', "invite-code"))
    assert snapshots.public("open", 100) == b'{"at":100}'
    assert snapshots.public("open", 101) is None  # nobody is building: the framework builds it
    loop = asyncio.new_event_loop()
    try:
        snapshots.building["open"] = snapshots.building["secret"] = loop.create_future()
        assert snapshots.public("open", 101) == b'{"at":100}'
        assert snapshots.public("open", 100 + Snapshots.STALE_WHILE_BUILDING) == b'{"at":100}'
        stale = 101 + Snapshots.STALE_WHILE_BUILDING
        assert snapshots.public("open", stale) is None  # too old: wait for the build
        assert snapshots.public("secret", 101) is None
        assert snapshots.public("secret", 100) is None
    finally:
        loop.close()

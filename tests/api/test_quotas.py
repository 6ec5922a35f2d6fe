"""Quotas a stranger meets: Space creation per person and per address, open Spaces per host,
guests creating Spaces only where the operator allows it, a creation refused for capacity that
leaves nothing behind, and clips bounded per person, per address and in disk per Space."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_control_api import Person, code, guest, signup
from tests.api.test_recording_api import recording_app, replay_with_a_chirp, root
from tests.conftest import FlakyRedis
from townhall.app import create_app
from townhall.config import load
from townhall.control_plane import control_plane_app
from townhall.delivery.storage import CLIPS_DIR
from townhall.ratelimit.table import SPACE_PER_ADDRESS, SPACE_PER_PERSON, Limit
from townhall.spaces.lifecycle import NOT_OVER
from townhall.spaces.model import SpaceState


def scheduled(title: str = "Later") -> dict[str, Any]:
    """A Space scheduled for tomorrow: it needs no media node, so only the quotas decide."""
    return {"title": title, "scheduled_start": time.time() + 86_400}


@pytest.fixture
def plane(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    """The control plane alone, with quotas as configured by default."""
    config = load({}, data_dir=tmp_path, database_url=database_url, max_open_spaces_per_host=0)
    with TestClient(control_plane_app(config)) as c:
        yield c


def public_titles(client: TestClient) -> list[str]:
    listed = client.get("/api/spaces", params={"state": "live"}).json()
    return sorted(s["space"]["title"] for s in listed)


def test_a_creation_refused_for_capacity_leaves_nothing_in_the_public_listing(
    tmp_path: Path, database_url: str
) -> None:
    config = load({}, data_dir=tmp_path, database_url=database_url, max_live_spaces=1)
    with TestClient(create_app(config)) as client:
        first = guest(client, "Hana")
        assert first.post("/api/spaces", {"title": "Running"}).status_code == 201
        refused = []
        for n in range(3):  # as the attack: guest after guest, each refused
            late = guest(client, f"Late {n}")
            r = late.post("/api/spaces", {"title": f"Refused {n}"})
            assert r.status_code == 503, r.text
            assert code(r) == "capacity"
            assert int(r.headers["retry-after"]) >= 1
            refused.append(late)
        assert public_titles(client) == ["Running"]
        records = client.app.state.node.plane.records  # type: ignore[attr-defined]
        assert client.portal is not None
        everything = client.portal.call(records.list_spaces, list(SpaceState))
        assert [s.title for s in everything] == ["Running"]  # no record at all, not one cancelled
        # A scheduled Space needs no slot until it opens; opening it while every slot is taken
        # is refused the same way and leaves it scheduled. Once the running one ends, it opens.
        soon = refused[0].post(
            "/api/spaces", {"title": "Soon", "scheduled_start": time.time() + 600}
        )
        assert soon.status_code == 201, soon.text
        soon_id = soon.json()["space"]["id"]
        r = refused[0].post(f"/api/spaces/{soon_id}/open")
        assert r.status_code == 503, r.text
        assert code(r) == "capacity"
        assert refused[0].get(f"/api/spaces/{soon_id}").json()["space"]["state"] == "scheduled"
        running = client.get("/api/spaces").json()[0]["space"]["id"]
        assert first.post(f"/api/spaces/{running}/end").status_code == 200
        assert refused[0].post(f"/api/spaces/{soon_id}/open").status_code == 200
        assert public_titles(client) == ["Soon"]


def test_one_person_creating_space_after_space_is_slowed_down(plane: TestClient) -> None:
    eager = signup(plane, "eager")
    for n in range(SPACE_PER_PERSON.burst):
        assert eager.post("/api/spaces", scheduled(f"Talk {n}")).status_code == 201
    r = eager.post("/api/spaces", scheduled("One more"))
    assert r.status_code == 429, r.text
    assert int(r.headers["retry-after"]) >= 1
    assert "wait a minute" in r.json()["error"]["message"]
    assert signup(plane, "calm").post("/api/spaces", scheduled()).status_code == 201  # per person


def created_until_refused(limit: Limit, create: Callable[[int], Any]) -> int:
    """Call `create(n)` until it answers 429; how many Spaces it made. The bucket refills while
    this runs (slowly, but a loaded machine is slow too), so the count is checked against what
    the limit allows in the time taken, not against its burst alone."""
    started = time.monotonic()
    made = 0
    while (r := create(made)).status_code == 201:
        made += 1
        assert made <= limit.burst + (time.monotonic() - started) * limit.per_second + 1, made
    assert r.status_code == 429, r.text
    assert r.json()["error"]["message"] == limit.message
    assert int(r.headers["retry-after"]) >= 1
    return made


def test_fresh_guest_names_from_one_address_do_not_lift_the_creation_limit(
    plane: TestClient,
) -> None:
    def fresh_guest(n: int) -> Any:
        return guest(plane, f"Guest {n}").post("/api/spaces", scheduled(f"Spam {n}"))

    assert created_until_refused(SPACE_PER_ADDRESS, fresh_guest) >= SPACE_PER_ADDRESS.burst


def test_a_host_holds_a_few_open_spaces_at_most(tmp_path: Path, database_url: str) -> None:
    config = load({}, data_dir=tmp_path, database_url=database_url, max_open_spaces_per_host=2)
    with TestClient(control_plane_app(config)) as client:
        host = signup(client, "hana")
        first = host.post("/api/spaces", {"title": "Now"}).json()["space"]["id"]
        assert host.post("/api/spaces", scheduled()).status_code == 201
        r = host.post("/api/spaces", scheduled("Third"))
        assert r.status_code == 409, r.text
        assert code(r) == "too_many_open_spaces"
        assert "end or cancel one" in r.json()["error"]["message"]
        assert host.post(f"/api/spaces/{first}/end").status_code == 200
        assert host.post("/api/spaces", scheduled("Third")).status_code == 201


def test_guests_create_spaces_only_where_the_operator_allows_it(
    tmp_path: Path, database_url: str
) -> None:
    env = {"TOWNHALL_GUESTS_CREATE_SPACES": "false"}
    config = load(env, data_dir=tmp_path, database_url=database_url)
    with TestClient(control_plane_app(config)) as client:
        r = guest(client, "Gus").post("/api/spaces", {"title": "Mine"})
        assert r.status_code == 403, r.text
        assert code(r) == "guests_cannot_create"
        assert "sign in" in r.json()["error"]["message"]
        assert public_titles(client) == []
        assert signup(client, "hana").post("/api/spaces", {"title": "Mine"}).status_code == 201


def test_guests_create_spaces_by_default(plane: TestClient) -> None:
    assert guest(plane, "Gus").post("/api/spaces", {"title": "Mine"}).status_code == 201


@pytest.fixture
def recorder(tmp_path: Path) -> Iterator[TestClient]:
    yield from recording_app(tmp_path, clip_quota_per_space_mb=1)


def test_clips_stop_when_the_space_has_used_its_clip_storage(recorder: TestClient) -> None:
    host = guest(recorder, "Host")
    space_id = replay_with_a_chirp(recorder, host, 5)
    fan = guest(recorder, "Fan")
    assert fan.post(f"/api/spaces/{space_id}/clips").status_code == 201
    # Clips made before (by anyone, under any name) fill the Space's 1 MB.
    (root(recorder) / space_id / CLIPS_DIR / "earlier.m4a").write_bytes(b"\0" * 1_000_000)
    r = guest(recorder, "Other").post(f"/api/spaces/{space_id}/clips")
    assert r.status_code == 507, r.text
    assert code(r) == "clip_quota"
    assert "1 MB" in r.json()["error"]["message"]


def test_creations_racing_for_the_last_slot_leave_one_space_and_no_orphan(
    tmp_path: Path,
) -> None:
    """Hosts press Create at the same moment with one slot left: one gets it, the others a 503,
    and whatever order the checks and writes interleave in, nothing else is listed or left open."""
    config = load({}, data_dir=tmp_path, max_live_spaces=1)
    with TestClient(create_app(config)) as client:
        hosts = [guest(client, f"Host {n}") for n in range(4)]
        start = threading.Barrier(len(hosts))

        def create(host: Person) -> Any:
            start.wait()
            return host.post("/api/spaces", {"title": f"By {host.user_id}"})

        with ThreadPoolExecutor(len(hosts)) as pool:
            answers = list(pool.map(create, hosts))
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [201, 503, 503, 503], [r.text for r in answers]
        winner = next(r.json()["space"]["title"] for r in answers if r.status_code == 201)
        assert public_titles(client) == [winner]
        records = client.app.state.node.plane.records  # type: ignore[attr-defined]
        assert client.portal is not None
        still_open = client.portal.call(records.list_spaces, sorted(NOT_OVER))
        assert [s.title for s in still_open] == [winner]


def test_the_creation_limits_hold_across_the_processes_of_a_deployment(
    tmp_path: Path, flaky_redis: FlakyRedis
) -> None:
    """Two API processes sharing Redis and a database: an address's creations on one count on the
    other, so adding processes adds no Spaces a stranger may start."""
    flaky_redis.start()
    env = {"TOWNHALL_REDIS_URL": flaky_redis.url, "TOWNHALL_MAX_OPEN_SPACES_PER_HOST": "0"}
    config = load(env, data_dir=tmp_path)
    with (
        TestClient(control_plane_app(config)) as one,
        TestClient(control_plane_app(config)) as two,
    ):
        eager = signup(one, "eager")
        token = eager.headers["Authorization"].removeprefix("Bearer ")
        elsewhere = Person(two, token, eager.user_id)  # the same person on the other process
        for n in range(SPACE_PER_PERSON.burst):
            assert (eager if n % 2 else elsewhere).post(
                "/api/spaces", scheduled()
            ).status_code == 201
        assert elsewhere.post("/api/spaces", scheduled()).status_code == 429
        assert eager.post("/api/spaces", scheduled()).status_code == 429

        # The address has spent a token on each of those tries; fresh guests, on either process,
        # get what is left of its bucket and no more.
        def fresh_guest(n: int) -> Any:
            return guest(one if n % 2 else two, f"G{n}").post("/api/spaces", scheduled())

        spent = SPACE_PER_PERSON.burst + 2
        assert created_until_refused(SPACE_PER_ADDRESS, fresh_guest) >= (
            SPACE_PER_ADDRESS.burst - spent
        )

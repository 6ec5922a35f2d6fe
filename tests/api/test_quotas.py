"""Quotas a stranger meets: Space creation per person and per address, open Spaces per host,
guests creating Spaces only where the operator allows it, a creation refused for capacity that
leaves nothing behind, clips bounded per person, per address and in disk per Space, and the disk
clips and recordings take bounded per identity and per address."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.test_control_api import Person, code, guest, signup
from tests.api.test_recording_api import on_air, recording_app, replay_with_a_chirp, root
from tests.conftest import FlakyRedis
from townhall.app import create_app
from townhall.config import load
from townhall.control_plane import control_plane_app
from townhall.delivery.recording import recorded_bytes
from townhall.delivery.storage import CLIPS_DIR
from townhall.ratelimit.storage import StorageQuota
from townhall.ratelimit.table import (
    CLIP_DAILY_PER_ADDRESS,
    SPACE_PER_ADDRESS,
    SPACE_PER_PERSON,
    Limit,
)
from townhall.spaces.lifecycle import NOT_OVER
from townhall.spaces.model import SpaceId, SpaceState


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


# -- storage per identity and per address -------------------------------------------------------
# A recorded Space pays for its first hour at creation (about 32 MB at the default bitrate) and a
# 30 s clip about 0.27 MB: budgets just above the first hour leave room for one clip, not two.


def upcoming_titles(client: TestClient) -> list[str]:
    listed = client.get("/api/spaces", params={"state": "upcoming"}).json()
    return sorted(s["space"]["title"] for s in listed)


def refused_for_quota(r: Any, whose: str) -> None:
    assert r.status_code == 429, r.text
    assert code(r) == "quota_exceeded"
    assert whose in r.json()["error"]["message"]
    assert "storage quota" in r.json()["error"]["message"]
    assert int(r.headers["retry-after"]) >= 1


def test_a_host_whose_storage_is_used_up_cannot_start_a_recorded_space_and_nothing_is_written(
    tmp_path: Path, database_url: str
) -> None:
    config = load(
        {}, data_dir=tmp_path, database_url=database_url, storage_quota_per_identity_mb=40
    )
    with TestClient(control_plane_app(config)) as client:
        host = signup(client, "hana")
        body = scheduled("Recorded") | {"record": True}
        assert host.post("/api/spaces", body).status_code == 201
        r = host.post("/api/spaces", scheduled("Recorded again") | {"record": True})
        refused_for_quota(r, "your clips and recordings")
        assert upcoming_titles(client) == ["Recorded"]  # no record of the refused one
        # Without a recording nothing is stored: the host may still talk.
        assert host.post("/api/spaces", scheduled("Live only")).status_code == 201


def test_fresh_guest_names_from_one_address_cannot_fill_the_disk_with_recordings(
    tmp_path: Path, database_url: str
) -> None:
    env = {
        "TOWNHALL_STORAGE_QUOTA_PER_IDENTITY_MB": "0",
        "TOWNHALL_STORAGE_QUOTA_PER_ADDRESS_MB": "70",
    }
    config = load(env, data_dir=tmp_path, database_url=database_url)
    with TestClient(control_plane_app(config)) as client:
        for n in range(2):
            r = guest(client, f"G{n}").post("/api/spaces", scheduled(f"R{n}") | {"record": True})
            assert r.status_code == 201, r.text
        r = guest(client, "G2").post("/api/spaces", scheduled("R2") | {"record": True})
        refused_for_quota(r, "your address's")
        assert upcoming_titles(client) == ["R0", "R1"]


def clip_files(client: TestClient, space_id: str) -> list[str]:
    return sorted(p.name for p in (root(client) / space_id / CLIPS_DIR).glob("*"))


def spend(client: TestClient, *, identity: str, address: str | None, leaving: int) -> None:
    """Spend a budget of the app's quota down to `leaving` bytes, as earlier clips would have."""
    config = client.app.state.config  # type: ignore[attr-defined]
    quota = config.storage_quota
    live = client.app.state.node.plane.live  # type: ignore[attr-defined]
    mb = config.storage_quota_per_identity_mb or config.storage_quota_per_address_mb
    assert client.portal is not None
    size = mb * 1_000_000 - leaving
    client.portal.call(
        lambda: quota.charge(live, identity=identity, address=address, size=size, now=time.time())
    )


ONE_CLIP_LEFT = 80_000  # the replay has 6 s recorded: a clip of it is about 60 KB


def test_clips_are_paid_from_the_clippers_storage_and_a_refused_clip_writes_no_file(
    tmp_path: Path,
) -> None:
    for client in recording_app(tmp_path, storage_quota_per_identity_mb=40):
        space_id = replay_with_a_chirp(client, guest(client, "Host"), 5)
        fan = guest(client, "Fan")
        spend(client, identity=fan.user_id, address=None, leaving=ONE_CLIP_LEFT)
        assert fan.post(f"/api/spaces/{space_id}/clips").status_code == 201
        made = clip_files(client, space_id)
        refused_for_quota(fan.post(f"/api/spaces/{space_id}/clips"), "your clips")
        assert clip_files(client, space_id) == made
        assert guest(client, "Other").post(f"/api/spaces/{space_id}/clips").status_code == 201


def test_fresh_guest_names_from_one_address_share_its_clip_storage(tmp_path: Path) -> None:
    options = {"storage_quota_per_identity_mb": 0, "storage_quota_per_address_mb": 100}
    for client in recording_app(tmp_path, **options):
        space_id = replay_with_a_chirp(client, guest(client, "Host"), 5)
        reserve = client.app.state.config.recording_reserve_bytes  # type: ignore[attr-defined]
        # The test client's address paid the recording's first hour; earlier clips the rest.
        spend(client, identity="-", address="testclient", leaving=ONE_CLIP_LEFT + reserve)
        assert guest(client, "Fan").post(f"/api/spaces/{space_id}/clips").status_code == 201
        made = clip_files(client, space_id)
        refused_for_quota(
            guest(client, "Another").post(f"/api/spaces/{space_id}/clips"), "your address's"
        )
        assert clip_files(client, space_id) == made


def test_fresh_guest_names_from_one_address_share_its_clips_of_the_day(tmp_path: Path) -> None:
    """The attack made 15 clips in 0.6 s from 5 guest names: however many names, one address
    makes `CLIP_DAILY_PER_ADDRESS` clips a day."""
    for client in recording_app(tmp_path, storage_quota_per_identity_mb=0):
        space_id = replay_with_a_chirp(client, guest(client, "Host"), 5)
        live = client.app.state.node.plane.live  # type: ignore[attr-defined]
        limit = CLIP_DAILY_PER_ADDRESS
        assert client.portal is not None
        # Earlier clips from this address (the test client's) took all but one of the day's.
        client.portal.call(
            functools.partial(
                live.take_token,
                limit.key("testclient"),
                limit.per_second,
                limit.burst,
                time.time(),
                limit.burst - 1,
            )
        )
        assert guest(client, "Fan").post(f"/api/spaces/{space_id}/clips").status_code == 201
        made = clip_files(client, space_id)
        refused = guest(client, "Another").post(f"/api/spaces/{space_id}/clips")
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["message"] == limit.message
        assert int(refused.headers["retry-after"]) >= 1
        assert clip_files(client, space_id) == made


def as_if_written(client: TestClient, space_id: str, past_the_first_hour: int) -> None:
    """Make the Space's recording look `past_the_first_hour` bytes past its first hour, as
    earlier runs on storage would (recording an hour is not a test's business)."""
    reserve = client.app.state.config.recording_reserve_bytes  # type: ignore[attr-defined]
    runtime = client.app.state.node.host.runtime(space_id)  # type: ignore[attr-defined]
    runtime.meter.written_before = reserve + past_the_first_hour


def test_a_recording_stops_when_its_host_can_no_longer_pay_and_the_host_is_told(
    tmp_path: Path,
) -> None:
    """Past its first hour a recording is charged to its host as it grows (node.recording_meter);
    here the first hour is taken as spent, so the next charge finds an empty budget."""
    for client in recording_app(tmp_path):
        host = guest(client, "Host")
        space_id = on_air(client, host)
        media_host = client.app.state.node.host  # type: ignore[attr-defined]
        as_if_written(client, space_id, 10_000_000)
        tiny = StorageQuota.from_config(identity_mb=1, address_mb=0, retention_days=30)
        assert client.portal is not None
        stopped = client.portal.call(media_host.charge_recordings, tiny, time.time())
        assert stopped == [space_id]
        body = host.get(f"/api/spaces/{space_id}/recording").json()
        assert body["recording"] is False
        assert "the host's storage quota is used up" in body["error"]
        assert body["seconds"] > 0  # what was recorded stays
        assert client.get(f"/live/{space_id}/media.m3u8").status_code == 200  # still on air


def test_recordings_of_fresh_guest_names_from_one_address_stop_at_its_storage_quota(
    tmp_path: Path,
) -> None:
    """Past their first hour, recordings are charged to the address that created their Space
    as well as to their host: each guest could pay, their address cannot pay for both."""
    options = {"storage_quota_per_identity_mb": 1000, "storage_quota_per_address_mb": 70}
    for client in recording_app(tmp_path, **options):
        first, second = guest(client, "First"), guest(client, "Second")
        first_space, second_space = on_air(client, first), on_air(client, second)
        media_host = client.app.state.node.host  # type: ignore[attr-defined]
        quota = client.app.state.config.storage_quota  # type: ignore[attr-defined]
        # Two first hours (about 63 MB) are paid; 4 MB more fits in 70 MB once, not twice.
        as_if_written(client, first_space, 4_000_000)
        as_if_written(client, second_space, 4_000_000)
        assert client.portal is not None
        stopped = client.portal.call(media_host.charge_recordings, quota, time.time())
        assert len(stopped) == 1
        body = (
            (first if stopped == [first_space] else second)
            .get(f"/api/spaces/{stopped[0]}/recording")
            .json()
        )
        assert body["recording"] is False
        assert "the address this Space was created from" in body["error"]
        going_on = second_space if stopped == [first_space] else first_space
        assert media_host.runtime(going_on).recorder.recording


def test_a_recording_started_again_counts_what_is_on_storage_and_pays_no_new_first_hour(
    tmp_path: Path,
) -> None:
    """A take-over (another node, or this one after a restart or a lapsed lease) starts a new
    run of the recording: what earlier runs wrote counts as written, so what was paid at
    creation covers the first hour once."""
    for client in recording_app(tmp_path):
        space_id = on_air(client, guest(client, "Host"))
        media_host = client.app.state.node.host  # type: ignore[attr-defined]
        lease = media_host.runtime(space_id).lease
        assert client.portal is not None
        client.portal.call(media_host.stop, SpaceId(space_id))
        on_storage = recorded_bytes(root(client) / space_id)
        assert on_storage > 0
        space = client.portal.call(media_host.control.records.space, SpaceId(space_id))
        again = client.portal.call(media_host.start, space, lease)
        assert again.meter.written_before == on_storage
        # Its host is charged from the account once a chunk is due, not after another hour.
        reserve = client.app.state.config.recording_reserve_bytes  # type: ignore[attr-defined]
        again.meter.written_before = reserve + 3_000_000
        quota = client.app.state.config.storage_quota  # type: ignore[attr-defined]
        assert client.portal.call(media_host.charge_recordings, quota, time.time()) == []
        records = media_host.control.records
        account = client.portal.call(
            functools.partial(records.recording_account, SpaceId(space_id), opened_with=0)
        )
        assert account.paid >= reserve + 3_000_000

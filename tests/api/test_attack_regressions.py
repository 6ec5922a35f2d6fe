"""Attacks from the outside test of the server (issue 13) that no other test reproduces as the
attacker made them: each must stay impossible.

The others have their own homes: quotas (test_quotas), bounded bodies and heads
(e2e/test_request_bounds), cross-site writes and sockets (test_origins, e2e/test_web_origins),
`next` redirects (e2e/test_web_origins), sign-out revocation (test_sessions), the 500s (test_error_seam,
media/test_ingest's offer fuzzer), Redis and PostgreSQL outages (test_store_outage,
test_database_down), forged forwarded addresses for identities (e2e/test_edge_forwarding),
file modes (state/test_records), security headers (test_security_headers); and the OpenAPI fuzzing
(test_openapi_fuzz) finds any new 500.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.test_control_api import code, guest, signup
from townhall.app import create_app
from townhall.config import load
from townhall.control_plane import control_plane_app
from townhall.ratelimit.table import GUEST, HAND, PRESENCE, SIGNIN_PER_ACCOUNT, Limit

PEER = ("127.0.0.1", 50000)  # the process that connects: a local one, as in the attack


def refused_after_its_burst(limit: Limit, allowed: int, started: float) -> bool:
    """Tokens refill while a test runs: at most elapsed × rate more than the burst."""
    return limit.burst <= allowed <= limit.burst + (time.monotonic() - started) * limit.per_second


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(control_plane_app(load({}, data_dir=tmp_path))) as client:
        yield client


def test_raising_and_lowering_a_hand_over_and_over_is_refused_with_retry_after(
    plane: TestClient,
) -> None:
    """Measured before: 300 toggles in 2.6 s, each an event on every stage member's screen."""
    host = guest(plane, "Hana")
    space_id = host.post("/api/spaces", {"title": "Hands"}).json()["space"]["id"]
    fan = guest(plane, "Fan")
    started = time.monotonic()
    toggles = 0
    while True:
        path = f"/api/spaces/{space_id}/hand"
        answer = fan.post(path) if toggles % 2 == 0 else fan.delete(path)
        if answer.status_code == 429:
            break
        assert answer.status_code == 200, answer.text
        toggles += 1
        assert toggles < 100, "a hand toggled 100 times was never slowed down"
    assert refused_after_its_burst(HAND, toggles, started), toggles
    assert code(answer) == "rate_limited"
    assert int(answer.headers["Retry-After"]) >= 1
    queue = host.get(f"/api/spaces/{space_id}/hands").json()
    assert [hand["user_id"] for hand in queue] == ([fan.user_id] if toggles % 2 else [])


def beacons_until_refused(client: TestClient, space_id: str) -> tuple[int, float]:
    """Presence beacons, each with a new listener key and a new claimed X-Forwarded-For address,
    until one is refused: how many counted, and when the first was sent."""
    started = time.monotonic()
    for sent in range(100):
        answer = client.post(
            f"/api/spaces/{space_id}/presence",
            json={"key": f"listener-key-{sent:06d}"},
            headers={"X-Forwarded-For": f"198.51.{sent // 250}.{sent % 250 + 1}"},
        )
        if answer.status_code == 429:
            assert int(answer.headers["Retry-After"]) >= 1
            return sent, started
        assert answer.status_code == 204, answer.text
    pytest.fail("100 beacons under 100 claimed addresses were all counted")


def test_a_local_process_claiming_forwarded_addresses_cannot_inflate_the_listener_count(
    tmp_path: Path,
) -> None:
    """Measured before: 508 listeners counted from one process, one beacon per claimed address.
    Nothing configured: no peer's X-Forwarded-For is believed, not even a local one's."""
    with TestClient(create_app(load({}, data_dir=tmp_path)), client=PEER) as client:
        host = guest(client, "Hana")
        space_id = host.post("/api/spaces", {"title": "Count"}).json()["space"]["id"]
        counted, started = beacons_until_refused(client, space_id)
    assert refused_after_its_burst(PRESENCE, counted, started), counted


def test_a_trusted_proxy_names_each_listener_and_the_limit_is_per_listener(
    tmp_path: Path,
) -> None:
    """The other side of the same setting: behind a listed proxy each claimed address is a client
    of its own (every beacon counts), so the limit above is the one each listener has."""
    config = load({"TOWNHALL_TRUSTED_PROXIES": "127.0.0.1"}, data_dir=tmp_path)
    with TestClient(create_app(config), client=PEER) as client:
        host = guest(client, "Hana")
        space_id = host.post("/api/spaces", {"title": "Count"}).json()["space"]["id"]
        for n in range(3 * PRESENCE.burst):
            answer = client.post(
                f"/api/spaces/{space_id}/presence",
                json={"key": f"listener-key-{n:06d}"},
                headers={"X-Forwarded-For": f"203.0.113.{n + 1}"},
            )
            assert answer.status_code == 204, answer.text


def test_password_guesses_at_one_account_from_many_addresses_are_refused_per_account(
    tmp_path: Path,
) -> None:
    """Each guess from an address of its own (a botnet, as a trusted edge forwards it): the
    per-address limit never trips, the per-account one does. (Every guess costs an argon2 check on
    purpose, so this test takes a few seconds: it makes the fewest guesses that show it.)"""
    config = load({"TOWNHALL_TRUSTED_PROXIES": "127.0.0.1"}, data_dir=tmp_path)
    with TestClient(create_app(config), client=PEER) as client:
        signup(client, "alice")
        started = time.monotonic()
        for guess in range(60):
            answer = client.post(
                "/api/auth/signin",
                json={"username": "alice", "password": f"guess number {guess}"},
                headers={"X-Forwarded-For": f"198.51.100.{guess + 1}"},
            )
            if answer.status_code == 429:
                break
            assert answer.status_code == 401, answer.text
        else:
            pytest.fail("60 guesses at one account from 60 addresses were never refused")
        assert refused_after_its_burst(SIGNIN_PER_ACCOUNT, guess, started), guess
        assert code(answer) == "rate_limited"
        assert int(answer.headers["Retry-After"]) >= 1


def test_fresh_ipv6_addresses_of_one_slash_64_share_the_per_address_limits(
    tmp_path: Path,
) -> None:
    """An IPv6 subscriber picks any of 2^64 source addresses for free: each request from a new
    one (as a trusted edge forwards it) must count against the same per-address limit, while a
    neighbouring /64 and an IPv4 client keep their own."""
    config = load({"TOWNHALL_TRUSTED_PROXIES": "127.0.0.1"}, data_dir=tmp_path)
    with TestClient(create_app(config), client=PEER) as client:

        def guest_from(address: str, name: str) -> int:
            answer = client.post(
                "/api/auth/guest",
                json={"display_name": name},
                headers={"X-Forwarded-For": address},
            )
            if answer.status_code == 429:
                assert code(answer) == "rate_limited"
                assert int(answer.headers["Retry-After"]) >= 1
            return int(answer.status_code)

        started = time.monotonic()
        named = 0
        while guest_from(f"2001:db8:1:2::{named + 1:x}", f"Guest {named}") == 201:
            named += 1
            assert named < 100, "100 guest names from 100 addresses of one /64 were all allowed"
        # Every name came from an address of its own: refused after one address's burst.
        assert refused_after_its_burst(GUEST, named, started), named
        assert guest_from("2001:db8:1:3::1", "Next /64") == 201
        assert guest_from("198.51.100.7", "IPv4") == 201

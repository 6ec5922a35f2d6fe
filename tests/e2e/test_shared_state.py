"""Shared state done right, on real processes: servers on a real redis-server.

* Limits are cluster-wide: password guesses spread over two server processes are refused after
  the same number as against one.
* Redis going away: every call that needs it answers 503 + Retry-After (never 500) and changes
  nothing, the listeners keep hearing the stage, and when Redis is back on the same port the same
  calls succeed without restarting the server.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.audio_analysis import decode_mono, rms_dbfs, tone_strength
from tests.conftest import FlakyRedis, Proc, Server, wait_until
from tests.e2e.test_audio_path import listen_with_ffmpeg, on_stage
from townhall.harness import start_server
from townhall.ratelimit.table import SIGNIN_PER_ACCOUNT, SIGNIN_PER_ADDRESS, Limit

pytestmark = pytest.mark.e2e


@pytest.fixture
def cluster(tmp_path: Path, flaky_redis: FlakyRedis) -> Iterator[list[Server]]:
    """Two server processes sharing one Redis and one records database (the same data dir)."""
    flaky_redis.start()
    # The guesses come "through an edge" on loopback that names each client in X-Forwarded-For.
    env = {"TOWNHALL_REDIS_URL": flaky_redis.url, "TOWNHALL_TRUSTED_PROXIES": "127.0.0.1"}
    servers: list[Server] = []
    try:
        for _ in range(2):
            servers.append(start_server(tmp_path / "data", env=env))
        yield servers
    finally:
        # Every process is stopped before any is judged: one that hangs must not leave the other.
        codes = [server.proc.stop() for server in servers]
        for server, code in zip(servers, codes, strict=True):
            assert code == 0, server.proc.output()


def guesses_until_refused(
    servers: list[Server], username: Callable[[int], str], address: str
) -> tuple[int, float]:
    """Wrong passwords, taking turns over `servers`, from one client `address` (as a trusted proxy
    would forward it): how many were answered 401 before the first 429, and how long that took by
    the servers' clock (the wall clock their buckets refill by: should it be stepped forward while
    the guesses run, they may rightly refill that much more; the monotonic time bounds it below)."""
    started, wall_started = time.monotonic(), time.time()
    for attempt in range(60):
        server = servers[attempt % len(servers)]
        response = httpx.post(
            f"{server.url}/api/auth/signin",
            json={"username": username(attempt), "password": "wrong horse"},
            headers={"X-Forwarded-For": address},
            timeout=15,
        )
        if response.status_code == 429:
            assert response.json()["error"]["code"] == "rate_limited"
            assert int(response.headers["Retry-After"]) >= 1
            return attempt, max(time.monotonic() - started, time.time() - wall_started)
        assert response.status_code == 401, response.text
    raise AssertionError("never refused")


def assert_refused_after_its_burst(limit: Limit, allowed: int, elapsed: float) -> None:
    # Tokens refill while the guesses run: at most elapsed × rate more than the burst.
    assert limit.burst <= allowed <= limit.burst + math.floor(elapsed * limit.per_second), (
        limit.name,
        allowed,
        elapsed,
    )


def test_password_guesses_over_two_processes_are_refused_after_as_many_as_against_one(
    cluster: list[Server],
) -> None:
    one, two = cluster
    one.call(
        "POST",
        "/api/auth/signup",
        json={"username": "alice", "password": "correct horse", "display_name": "Alice"},
    )

    # One account, guessed from one address (per account: the tighter of the two limits).
    alone, took = guesses_until_refused([one], lambda _: "alice", "203.0.113.1")
    assert_refused_after_its_burst(SIGNIN_PER_ACCOUNT, alone, took)
    spread, took = guesses_until_refused([one, two], lambda _: "bob", "203.0.113.2")
    # Shared, not one allowance per process (that would be about twice the burst); the two runs
    # may differ by a token that refilled while a slow machine answered.
    assert_refused_after_its_burst(SIGNIN_PER_ACCOUNT, spread, took)

    # Many accounts from one address: the per-address limit, over both processes too.
    by_address, took = guesses_until_refused([one, two], lambda n: f"carol{n}", "203.0.113.3")
    assert_refused_after_its_burst(SIGNIN_PER_ADDRESS, by_address, took)


def heard(space_playlist: str, out: Path, seconds: float = 2) -> tuple[float, float]:
    audio = decode_mono(listen_with_ffmpeg(space_playlist, out, seconds))
    return rms_dbfs(audio), tone_strength(audio, 440)


def test_redis_down_answers_503_keeps_the_audio_and_recovers_without_a_restart(
    tmp_path: Path, flaky_redis: FlakyRedis, speakers: Callable[..., Proc]
) -> None:
    flaky_redis.start()
    server = start_server(tmp_path / "data", env={"TOWNHALL_REDIS_URL": flaky_redis.url})
    try:
        space = server.create_space("Outage")
        on_stage(speakers(*space.host_bot_args(), "--tone", "440"))
        fan = server.host_identity("Fan")
        base = f"{server.url}/api/spaces/{space.id}"

        def request(
            method: str, url: str, token: str | None, body: object = None
        ) -> httpx.Response:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return httpx.request(method, url, json=body, headers=headers, timeout=15)

        host_id = server.call("GET", "/api/auth/me", space.host_token)["user_id"]
        calls: dict[str, Callable[[], httpx.Response]] = {
            "reaction": lambda: request("POST", f"{base}/reactions", fan, {"emoji": "👏"}),
            "snapshot": lambda: request("GET", f"{base}/snapshot", None),
            "hand": lambda: request("POST", f"{base}/hand", fan),
            "presence": lambda: request("POST", f"{base}/presence", None, {"key": "p" * 20}),
            "self-mute": lambda: request(
                "POST", f"{base}/members/{host_id}/mute", space.host_token
            ),
            "me": lambda: request("GET", f"{base}/me", fan),
            "who am I": lambda: request("GET", f"{server.url}/api/auth/me", fan),
        }

        flaky_redis.stop()
        answered = {name: call() for name, call in calls.items()}
        for name, response in answered.items():
            assert response.status_code in (200, 202, 204, 503), (name, response.text)
            if response.status_code == 503:
                assert response.json()["error"]["code"] == "store_unavailable", name
                assert int(response.headers["Retry-After"]) >= 1, name
        refused = {name for name, r in answered.items() if r.status_code == 503}
        assert {"reaction", "snapshot", "hand", "presence", "self-mute"} <= refused
        assert answered["me"].json()["hand_raised"] is False, "the refused hand changed nothing"
        stage = request("GET", f"{base}/stage", space.host_token).json()
        assert [m["muted"] for m in stage] == [False], "the refused self-mute changed nothing"

        level, tone = heard(space.playlist_url, tmp_path / "outage.wav")
        assert tone > 0.5, f"the listener lost the stage while Redis was down ({level:.1f} dBFS)"

        flaky_redis.start()
        for name, call in calls.items():
            response = call()
            assert response.status_code in (200, 202, 204), (name, response.text)
        # The self-mute now went through the log: the media node applies it, the tone goes quiet.
        wait_until(
            lambda: heard(space.playlist_url, tmp_path / "muted.wav", 1)[0] < -50,
            60,
            "the muted host to fall silent at the listener",
            interval=0.5,
        )
        assert not server.proc.saw("Exception in ASGI application"), server.proc.output()
    finally:
        code = server.proc.stop()
        (tmp_path / "server.log").write_text("\n".join(server.proc.lines))
        assert code == 0, server.proc.output()

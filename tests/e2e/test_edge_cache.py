"""Behind the shipped nginx edge, what reaches the origin does not grow with the audience.

Simulated LL-HLS listeners (blocking playlist reloads + preload-hinted parts, as hls.js does) play
the same Space through nginx for a few seconds; with ten times the listeners, the origin sees about
the same number of requests while the edge answers ten times more.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server
from townhall.harness import Edge, start_edge

pytestmark = pytest.mark.e2e

HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)/p(\d+)\.(\d+)\.m4s"')


async def listener(http: httpx.AsyncClient, media_url: str, until: float) -> int:
    """Follow the live edge like a low-latency player; returns how many requests it made."""
    requests = 1
    text = (await http.get(media_url)).text
    while time.monotonic() < until:
        hint = HINT.search(text)
        assert hint, text
        stream, msn, part = hint.groups()
        base = media_url.rsplit("/", 1)[0]
        part_response, playlist = await asyncio.gather(
            http.get(f"{base}/{stream}/p{msn}.{part}.m4s"),
            http.get(media_url, params={"_HLS_msn": msn, "_HLS_part": part}),
        )
        assert part_response.status_code == 200
        assert playlist.status_code == 200
        text = playlist.text
        requests += 2
    return requests


async def audience(edge: Edge, space_id: str, count: int, seconds: float) -> int:
    media_url = f"{edge.url}/live/{space_id}/media.m3u8"
    limits = httpx.Limits(max_connections=count * 2 + 4)
    async with httpx.AsyncClient(timeout=15, limits=limits) as http:
        until = time.monotonic() + seconds
        return sum(await asyncio.gather(*(listener(http, media_url, until) for _ in range(count))))


def test_origin_requests_stay_flat_as_the_audience_grows(server: Server, tmp_path: Path) -> None:
    space = server.create_space("Cached")
    edge = start_edge(server.url, tmp_path / "edge")
    try:
        seen = {}
        for count in (4, 40):
            before_origin, before_clients = edge.origin_requests(), edge.client_requests()
            made = asyncio.run(audience(edge, space.id, count, seconds=4.0))
            seen[count] = (
                edge.origin_requests() - before_origin,
                edge.client_requests() - before_clients,
                made,
            )
        (small_origin, small_edge, _), (large_origin, large_edge, _) = seen[4], seen[40]
        assert large_edge >= 4 * small_edge, (
            seen
        )  # the audience's load really grew (less than 10x: cache-lock waiters and a busy CPU)
        assert large_origin <= 1.5 * small_origin + 10, (
            f"origin load grew with the audience: {seen}"
        )
        print(f"\nlisteners: (origin requests, edge requests, requests made) = {seen}")
    finally:
        edge.proc.stop()


def test_the_edge_answers_anonymous_space_lookups_but_never_identified_ones(
    server: Server, tmp_path: Path
) -> None:
    """A join storm is mostly anonymous pages asking for the Space; someone signed in must always
    get the origin's own answer for them, never a cached one (nor leave theirs in the cache)."""
    space = server.create_space("Joinable")
    edge = start_edge(server.url, tmp_path / "edge")
    try:
        url = f"{edge.url}/api/spaces/{space.id}"
        before = edge.origin_requests()
        with httpx.Client(timeout=10) as http:
            anonymous = [http.get(url) for _ in range(30)]
        assert all(r.status_code == 200 for r in anonymous)
        assert {r.json()["space"]["title"] for r in anonymous} == {"Joinable"}
        # Fresh for a second: a slow run may cross a couple of second boundaries, not thirty.
        assert edge.origin_requests() - before <= 4, edge.access_log.read_text()
        assert anonymous[-1].headers.get("x-cache-status") in ("HIT", "UPDATING", "STALE")

        before = edge.origin_requests()
        with httpx.Client(timeout=10) as http:
            headers = {"Authorization": f"Bearer {space.host_token}"}
            identified = [http.get(url, headers=headers) for _ in range(5)]
        assert all(r.status_code == 200 for r in identified)
        assert all(r.headers.get("x-cache-status") == "BYPASS" for r in identified)
        assert edge.origin_requests() - before == 5, edge.access_log.read_text()
    finally:
        edge.proc.stop()

"""An operator watches a real node: `/metrics` moves with a live Space, the shipped dashboard's
queries all exist in a real scrape, and the logs are JSON lines when asked."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Proc, Server, wait_until
from tests.telemetry.scrape import Scrape
from townhall.harness import REPO, start_server, wait_connected

pytestmark = pytest.mark.e2e

TOKEN = "e2e-metrics-token-0123456789abcdef"
DASHBOARD = REPO / "deploy" / "grafana" / "townhall.json"
PARTS = "townhall_space_parts_published_total"


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[Server]:
    """A node with metrics on, logging JSON lines and one line per request."""
    env = {
        "TOWNHALL_METRICS_TOKEN": TOKEN,
        "TOWNHALL_LOG_FORMAT": "json",
        "TOWNHALL_ACCESS_LOG": "true",
    }
    server = start_server(tmp_path / "data", env)
    yield server
    assert server.proc.stop() == 0, server.proc.output()


def scrape(server: Server) -> Scrape:
    response = httpx.get(
        f"{server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=15
    )
    assert response.status_code == 200, response.text
    return Scrape(response.text)


def dashboard_metrics() -> set[str]:
    exprs = [
        target["expr"]
        for panel in json.loads(DASHBOARD.read_text())["panels"]
        for target in panel["targets"]
    ]
    assert exprs, "the dashboard queries nothing"
    return {name for expr in exprs for name in re.findall(r"\btownhall_[a-z_]+", expr)}


def test_an_operator_sees_a_live_space_move(watched: Server, speakers: Callable[..., Proc]) -> None:
    space = watched.create_space("Watched", record=True)
    wait_connected(speakers(*space.host_bot_args(), "--tone", "440"), 60)

    first = scrape(watched)
    assert first.value("townhall_node_leases") == 1
    assert (first.value("townhall_space_lease_token", space=space.id) or 0) >= 1
    wait_until(
        lambda: scrape(watched).value("townhall_space_stage_connections", space=space.id) == 1,
        30,
        "the host's bot to show as the Space's stage connection",
    )
    published = first.value(PARTS, space=space.id)
    assert published is not None
    wait_until(
        lambda: (scrape(watched).value(PARTS, space=space.id) or 0) >= published + 3,
        30,
        "three more parts to be published",
    )

    # A listener's presence beacon shows in the listener gauge.
    beacon = httpx.post(
        f"{watched.url}/api/spaces/{space.id}/presence",
        json={"key": "metrics-e2e-listener-0001"},
        timeout=15,
    )
    assert beacon.status_code == 204
    wait_until(
        lambda: scrape(watched).value("townhall_space_listeners", space=space.id) == 1,
        30,
        "the listener gauge to count the beacon",
    )

    # A request counter counts a request, by its route template.
    counted = {"route": "/api/spaces/{space_id}/snapshot", "method": "GET", "status": "200"}
    before = scrape(watched).value("townhall_http_requests_total", **counted) or 0
    snapshot = httpx.get(
        f"{watched.url}/api/spaces/{space.id}/snapshot",
        headers={"X-Request-Id": "e2e-snapshot-1"},
        timeout=15,
    )
    assert snapshot.status_code == 200
    assert snapshot.headers["x-request-id"] == "e2e-snapshot-1"
    now = scrape(watched)
    assert now.value("townhall_http_requests_total", **counted) == before + 1
    assert (now.value("townhall_media_encode_seconds_count") or 0) > 0
    assert (now.value("townhall_media_mix_seconds_sum") or 0) > 0
    assert now.value("townhall_space_ticks_skipped_total", space=space.id) is not None
    assert (now.value("townhall_space_recording_bytes_total", space=space.id) or 0) > 0

    # Every metric the shipped dashboard queries exists in this real scrape.
    missing = dashboard_metrics() - now.names
    assert not missing, f"the dashboard queries metrics the node does not export: {missing}"

    # Without the token: refused, and nothing about the node in the answer.
    refused = httpx.get(f"{watched.url}/metrics", timeout=15)
    assert refused.status_code == 401
    assert "townhall_" not in refused.text

    # The logs: every line a JSON object; the snapshot request's line has its fields.
    lines = [
        line
        for line in watched.proc.output().splitlines()
        if line.strip() and " is live at " not in line
    ]
    records = [json.loads(line) for line in lines]
    mine = [r for r in records if r.get("request_id") == "e2e-snapshot-1"]
    assert len(mine) == 1, mine
    assert mine[0]["method"] == "GET"
    assert mine[0]["route"] == "/api/spaces/{space_id}/snapshot"
    assert mine[0]["status"] == 200
    assert mine[0]["duration_ms"] >= 0
    assert any(r["logger"] == "townhall.node.host" for r in records)  # the existing lines too

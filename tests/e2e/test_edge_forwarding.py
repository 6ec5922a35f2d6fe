"""Behind either shipped edge (nginx, Varnish), the origin knows where its callers are and which
address they used.

The edge forwards the browser's Host and X-Forwarded-For/-Proto; the origin believes the forwarded
ones only from TOWNHALL_TRUSTED_PROXIES (here: the edge, which connects from 127.0.0.1). Clients
with addresses of their own bind to other loopback addresses (all of 127.0.0.0/8 is loopback).
Every test that goes through the edge runs once per edge.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from tests.conftest import Server
from townhall.harness import EDGE_KINDS, Edge, EdgeKind, start_edge, start_server

pytestmark = pytest.mark.e2e

EDGE_ADDRESS = "127.0.0.1"  # where the edge connects to the origin from
LISTENER_A, LISTENER_B = "127.0.0.3", "127.0.0.4"  # two people in the audience
STRANGER = "127.0.0.5"  # someone on the origin's network who is not the edge
METRICS_TOKEN = "edge-test-metrics-token-0123456789"


@dataclass
class Site:
    server: Server
    edge: Edge


@pytest.fixture(scope="module", params=EDGE_KINDS)
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    kind: EdgeKind = request.param
    tmp = tmp_path_factory.mktemp(f"forwarding-{kind}")
    env = {"TOWNHALL_TRUSTED_PROXIES": EDGE_ADDRESS, "TOWNHALL_METRICS_TOKEN": METRICS_TOKEN}
    server = start_server(tmp / "data", env=env)
    try:
        edge = start_edge(server.url, tmp / "edge", kind=kind)
    except BaseException:
        server.proc.stop()
        raise
    yield Site(server, edge)
    edge.proc.stop()
    assert server.proc.stop() == 0, server.proc.output()


def client_at(address: str, base_url: str) -> httpx.Client:
    """An HTTP client whose connections come from `address`."""
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=base_url, transport=transport, timeout=15)


def later_space(http: httpx.Client, title: str) -> tuple[str, dict[str, str]]:
    """A Space scheduled for later (no media to run) and its host's credentials."""
    guest = http.post("/api/auth/guest", json={"display_name": "Host"})
    assert guest.status_code == 201, guest.text
    auth = {"Authorization": f"Bearer {guest.json()['token']}"}
    body = {"title": title, "scheduled_start": time.time() + 3600}
    created = http.post("/api/spaces", json=body, headers=auth)
    assert created.status_code == 201, created.text
    return str(created.json()["space"]["id"]), auth


def test_the_edge_never_hands_out_a_nodes_metrics_even_to_its_operator(site: Site) -> None:
    bearer = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    direct = httpx.get(f"{site.server.url}/metrics", headers=bearer, timeout=15)
    assert direct.status_code == 200, "scraped at the node's own address, it answers"
    for path in ("/metrics", "/metrics?format=x", "//metrics", "/metrics/"):
        answer = httpx.get(f"{site.edge.url}{path}", headers=bearer, timeout=15)
        assert answer.status_code == 404, (path, answer.status_code)
        assert answer.json()["error"]["code"] == "not_found"
        assert "townhall_" not in answer.text


def test_links_the_api_gives_through_the_edge_name_the_edge(site: Site) -> None:
    edge = site.edge.url
    links: list[str] = []
    with httpx.Client(base_url=edge, timeout=15) as http:
        space_id, auth = later_space(http, "Linked")
        links += http.get(f"/api/spaces/{space_id}", headers=auth).json()["links"].values()
        invite = http.post(
            f"/api/spaces/{space_id}/invite-links", json={"role": "speaker"}, headers=auth
        )
        assert invite.status_code == 201, invite.text
        links.append(invite.json()["url"])
        # The anonymous lookup is answered from the edge's cache; its links must name it too,
        # and a client cannot talk the edge into https links for everyone.
        anonymous = http.get(f"/api/spaces/{space_id}", headers={"X-Forwarded-Proto": "https"})
        assert anonymous.status_code == 200
        links += anonymous.json()["links"].values()
    assert len(links) == 5
    assert all(link.startswith(f"{edge}/") for link in links), links


def test_links_take_their_scheme_from_a_trusted_proxy_only(site: Site) -> None:
    """An edge that ends TLS says so with X-Forwarded-Proto: links must be https then; a stranger
    saying the same is not believed."""
    origin = site.server.url
    with httpx.Client(base_url=origin, timeout=15) as http:
        space_id, _ = later_space(http, "Secure")
    https = {"X-Forwarded-Proto": "https"}
    with client_at(EDGE_ADDRESS, origin) as proxy, client_at(STRANGER, origin) as stranger:
        from_proxy = proxy.get(f"/api/spaces/{space_id}", headers=https).json()["links"]
        from_stranger = stranger.get(f"/api/spaces/{space_id}", headers=https).json()["links"]
    host = origin.removeprefix("http://")
    assert from_proxy["listen"] == f"https://{host}/s/{space_id}"
    assert from_stranger["listen"] == f"http://{host}/s/{space_id}"


def requests_until_limited(
    http: httpx.Client, headers: Callable[[int], dict[str, str]] = lambda i: {}
) -> int:
    """Ask for guest identities (a per-address limit) until refused; how many were granted."""
    for granted in range(200):
        response = http.post(
            "/api/auth/guest", json={"display_name": "Guest"}, headers=headers(granted)
        )
        if response.status_code == 429:
            assert response.headers.get("retry-after")
            return granted
        assert response.status_code == 201, response.text
    pytest.fail("200 guest identities in a row from one address were never limited")


def test_through_the_edge_each_listener_has_a_limit_of_their_own(site: Site) -> None:
    edge = site.edge.url
    with client_at(LISTENER_A, edge) as a, client_at(LISTENER_B, edge) as b:
        requests_until_limited(a)
        assert b.post("/api/auth/guest", json={"display_name": "B"}).status_code == 201
        assert a.post("/api/auth/guest", json={"display_name": "A"}).status_code == 429


def test_a_stranger_cannot_be_many_people_by_claiming_forwarded_addresses(site: Site) -> None:
    with client_at(STRANGER, site.server.url) as stranger:
        requests_until_limited(stranger, lambda i: {"X-Forwarded-For": f"198.51.100.{i % 250}"})


def test_by_default_no_peer_is_trusted_not_even_a_local_one(server: Server, tmp_path: Path) -> None:
    """Nothing configured: a process on the same box (the default source address, 127.0.0.1)
    claiming forwarded addresses is still one address."""
    with httpx.Client(base_url=server.url, timeout=15) as local:
        requests_until_limited(local, lambda i: {"X-Forwarded-For": f"198.51.100.{i % 250}"})


def test_the_stage_event_socket_and_its_commands_pass_through_the_edge(site: Site) -> None:
    """The stage's WebSocket (an upgrade the edge pipes through) and the commands it reports
    (POST/PATCH, never cached) work through the edge as they do on the origin."""
    edge = site.edge.url
    with httpx.Client(base_url=edge, timeout=15) as http:
        space_id, auth = later_space(http, "Through the edge")
        token = auth["Authorization"].removeprefix("Bearer ")
        socket_url = (
            f"{edge.replace('http://', 'ws://')}/api/spaces/{space_id}/events?token={token}"
        )
        with connect(socket_url, open_timeout=15) as socket:
            hello = json.loads(socket.recv(timeout=15))
            assert hello["type"] == "hello", hello
            edited = http.patch(f"/api/spaces/{space_id}", json={"title": "Renamed"}, headers=auth)
            assert edited.status_code == 200, edited.text
            seen = [json.loads(socket.recv(timeout=15)) for _ in range(hello["latest_seq"] + 1)]
    assert "Renamed" in json.dumps(seen[-1]), seen  # the edit, after the log so far
